import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { FeedbackRecord, Snooze } from '../../src/cds-hooks/store.ts';
import { queryRows, withWarehouse } from '../../src/warehouse/database.ts';
import { createCdsStore } from '../../src/warehouse/cds-store.ts';
import { tempDir } from './helpers.ts';

/** Snoozes in the CDS store: scoped by the client that asked, added only with the feedback that asks, kept across restarts and schema versions. */
const OVERRIDE = 'http://cairn.health/fhir/CodeSystem/override-reason';

const item = (cardUuid: string, outcomeTimestamp: string, code: string, client = 'ehr-a'): FeedbackRecord => ({
  cardUuid, serviceId: 'svc', outcome: 'overridden', outcomeTimestamp, acceptedSuggestions: [], overrideReason: { system: OVERRIDE, code }, client, receivedAt: outcomeTimestamp,
});

const snooze = (fields: Partial<Snooze> & Pick<Snooze, 'until' | 'item'>): Snooze => ({ ruleId: 'r', patientId: 'p1', client: 'ehr-a', ...fields });

describe('CDS store: snoozes', () => {
  it('silences a rule for a patient only at the client whose feedback asked for it', async () => {
    const dir = await tempDir();
    await withWarehouse({ path: join(dir, 'cairn.duckdb') }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      // Two clients snooze the same rule and patient id until the same instant: both kept.
      await store.recordFeedback([item('c1', '2026-01-01T00:00:00Z', 'snooze-30d'), item('c2', '2026-01-01T00:00:00Z', 'snooze-30d', 'ehr-b')], [
        snooze({ until: '2026-01-31T00:00:00.000Z', item: 0 }),
        snooze({ ruleId: 'r2', client: 'ehr-b', until: '2026-01-31T00:00:00.000Z', item: 1 }),
        snooze({ ruleId: 'r3', client: 'ehr-b', until: '2026-01-31T00:00:00.000Z', item: 1 }),
      ]);
      expect(await store.snoozedRules('ehr-a', 'p1', '2026-01-15T00:00:00Z')).toEqual(new Set(['r']));
      expect(await store.snoozedRules('ehr-b', 'p1', '2026-01-15T00:00:00Z')).toEqual(new Set(['r2', 'r3']));
      expect(await store.snoozedRules('ehr-c', 'p1', '2026-01-15T00:00:00Z')).toEqual(new Set());
      expect(await store.snoozedRules('ehr-a', 'p1', '2026-01-31T00:00:00Z')).toEqual(new Set());
      await store.close();
    });
  });

  it('adds no snooze for an item that is a duplicate, of one stored before or of one earlier in the same call', async () => {
    const dir = await tempDir();
    await withWarehouse({ path: join(dir, 'cairn.duckdb') }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      const at = '2026-01-01T00:00:00Z';
      expect(await store.recordFeedback([item('c1', at, 'patient-aware')], [])).toEqual({ stored: 1, duplicates: 0 });
      // The same item again (the same instant in another offset), now asking for a snooze.
      expect(await store.recordFeedback([item('c1', '2026-01-01T01:00:00+01:00', 'snooze-30d')], [snooze({ until: '2026-01-31T00:00:00.000Z', item: 0 })])).toEqual({ stored: 0, duplicates: 1 });
      // A new item, then a repeat of it in the same call that asks for a snooze the first did not.
      expect(await store.recordFeedback([item('c2', at, 'patient-aware'), item('c2', at, 'snooze-30d')], [snooze({ ruleId: 'r2', until: '2026-01-31T00:00:00.000Z', item: 1 })])).toEqual({ stored: 1, duplicates: 1 });
      expect(await store.snoozedRules('ehr-a', 'p1', '2026-01-15T00:00:00Z')).toEqual(new Set());
      const [count] = await queryRows(warehouse.connection, 'SELECT count(*)::INTEGER AS n FROM cds_snooze');
      expect(count).toEqual({ n: 0 });
      await store.close();
    });
  });

  it('reads the snoozes back, with their client, after a restart', async () => {
    const file = join(await tempDir(), 'cairn.duckdb');
    await withWarehouse({ path: file }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      await store.recordFeedback([item('c1', '2026-01-01T00:00:00Z', 'snooze-30d')], [snooze({ until: '2026-01-31T00:00:00.000Z', item: 0 })]);
      await store.close();
    });
    await withWarehouse({ path: file }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      expect(await store.snoozedRules('ehr-a', 'p1', '2026-01-15T00:00:00Z')).toEqual(new Set(['r']));
      expect(await store.snoozedRules('ehr-b', 'p1', '2026-01-15T00:00:00Z')).toEqual(new Set());
      await store.close();
    });
  });
});

describe('CDS store: a database whose snoozes name no client (written before they were scoped by client)', () => {
  /** The tables as the version before this one made them, with a snooze each override asked for and one no stored override explains. */
  async function oldDatabase(file: string): Promise<void> {
    await withWarehouse({ path: file }, async (warehouse) => {
      const c = warehouse.connection;
      await c.run(`CREATE TABLE cds_card (
        uuid VARCHAR PRIMARY KEY, service_id VARCHAR NOT NULL, hook VARCHAR NOT NULL, hook_instance VARCHAR NOT NULL,
        patient_id VARCHAR NOT NULL, rule_id VARCHAR NOT NULL, rule_version VARCHAR NOT NULL, knowledge_version VARCHAR NOT NULL,
        indicator VARCHAR NOT NULL, issued_at TIMESTAMPTZ NOT NULL, client VARCHAR, suggestions JSON)`);
      await c.run(`CREATE TABLE cds_feedback (
        card_uuid VARCHAR NOT NULL, service_id VARCHAR NOT NULL, outcome VARCHAR NOT NULL, outcome_timestamp TIMESTAMPTZ NOT NULL,
        accepted_suggestions JSON NOT NULL, override_system VARCHAR, override_code VARCHAR, override_display VARCHAR,
        user_comment VARCHAR, client VARCHAR NOT NULL, received_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (card_uuid, outcome, outcome_timestamp))`);
      await c.run(`CREATE TABLE cds_snooze (
        rule_id VARCHAR NOT NULL, patient_id VARCHAR NOT NULL, until TIMESTAMPTZ NOT NULL, PRIMARY KEY (rule_id, patient_id, until))`);
      await c.run(`INSERT INTO cds_card VALUES
        ('k1', 'svc', 'patient-view', 'hi-1', 'p1', 'r', '1', 'k', 'warning', '2026-01-01T00:00:00Z', 'ehr-a', '[]'),
        ('k2', 'svc', 'patient-view', 'hi-2', 'p1', 'r2', '1', 'k', 'warning', '2026-01-01T00:00:00Z', NULL, NULL),
        ('k3', 'svc', 'patient-view', 'hi-3', 'p1', 'r', '1', 'k', 'warning', '2026-01-01T00:00:00Z', 'ehr-b', '[]')`);
      await c.run(`INSERT INTO cds_feedback VALUES
        ('k1', 'svc', 'overridden', '2026-01-01T00:00:05Z', '[]', '${OVERRIDE}', 'snooze-30d', NULL, NULL, 'ehr-a', '2026-01-01T00:00:06Z'),
        -- The unbounded snooze the old version stored: outcomeTimestamp far ahead.
        ('k2', 'svc', 'overridden', '9000-01-01T00:00:00Z', '[]', '${OVERRIDE}', 'snooze-30d', NULL, NULL, 'ehr-a', '2026-01-01T00:00:06Z'),
        -- Another client overrode a card of the same rule and patient with a reason that snoozes nothing.
        ('k3', 'svc', 'overridden', '2026-01-01T00:00:05Z', '[]', '${OVERRIDE}', 'patient-aware', NULL, NULL, 'ehr-b', '2026-01-01T00:00:06Z')`);
      await c.run(`INSERT INTO cds_snooze VALUES ('r', 'p1', '2026-01-31T00:00:05Z'), ('r2', 'p1', '9000-01-31T00:00:00Z'), ('r3', 'p2', '2026-02-01T00:00:00Z')`);
    });
  }

  const expectMigrated = async (store: Awaited<ReturnType<typeof createCdsStore>>) => {
    const mid = '2026-01-15T00:00:00Z';
    expect(await store.snoozedRules('ehr-a', 'p1', mid)).toEqual(new Set(['r', 'r2']));
    expect(await store.snoozedRules('ehr-b', 'p1', mid)).toEqual(new Set());
    // The unbounded one ends a year (MAX_SNOOZE_DAYS) after the override was received.
    expect(await store.snoozedRules('ehr-a', 'p1', '2027-01-02T00:00:05Z')).toEqual(new Set(['r2']));
    expect(await store.snoozedRules('ehr-a', 'p1', '2027-01-02T00:00:07Z')).toEqual(new Set());
    // One no stored override explains keeps its old meaning: every client.
    expect(await store.snoozedRules('ehr-b', 'p2', mid)).toEqual(new Set(['r3']));
    expect(await store.snoozedRules('ehr-a', 'p2', mid)).toEqual(new Set(['r3']));
  };

  it('gives each old snooze the client whose override asked for it, caps it at a year after receipt, and keeps working after', async () => {
    const file = join(await tempDir(), 'cairn.duckdb');
    await oldDatabase(file);
    await withWarehouse({ path: file }, async (warehouse) => {
      const store = await createCdsStore(warehouse, { now: () => Date.parse('2026-01-10T00:00:00Z') });
      await expectMigrated(store);
      // New snoozes name their client; two clients may snooze until the same instant.
      await store.recordFeedback([item('n1', '2026-01-10T00:00:00Z', 'snooze-30d', 'ehr-b'), item('n2', '2026-01-10T00:00:00Z', 'snooze-30d', 'ehr-c')], [
        snooze({ ruleId: 'r4', patientId: 'p3', client: 'ehr-b', until: '2026-02-09T00:00:00.000Z', item: 0 }),
        snooze({ ruleId: 'r4', patientId: 'p3', client: 'ehr-c', until: '2026-02-09T00:00:00.000Z', item: 1 }),
      ]);
      const rows = await queryRows(warehouse.connection, `SELECT client FROM cds_snooze WHERE rule_id = 'r4' ORDER BY client`);
      expect(rows).toEqual([{ client: 'ehr-b' }, { client: 'ehr-c' }]);
      await store.close();
    });
    // Opened again: nothing to migrate, the same snoozes.
    await withWarehouse({ path: file }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      await expectMigrated(store);
      expect(await store.snoozedRules('ehr-c', 'p3', '2026-01-15T00:00:00Z')).toEqual(new Set(['r4']));
      expect(await store.snoozedRules('ehr-a', 'p3', '2026-01-15T00:00:00Z')).toEqual(new Set());
      const [count] = await queryRows(warehouse.connection, 'SELECT count(*)::INTEGER AS n FROM cds_snooze');
      expect(count).toEqual({ n: 5 });
      await store.close();
    });
  });
});
