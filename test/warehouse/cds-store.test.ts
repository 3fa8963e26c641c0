import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import type { IssuedCard } from '../../src/cds-hooks/store.ts';
import { queryRows, withWarehouse } from '../../src/warehouse/database.ts';
import { createCdsStore } from '../../src/warehouse/cds-store.ts';

let dir: string | undefined;

/** V8's collector, reached without starting node with --expose-gc. */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

afterEach(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('CDS store: invocations written behind responses', () => {
  it('writes a burst of invocations in multi-row statements: every invocation once, every card once, timestamps kept', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'cairn-cds-store-'));
    await withWarehouse({ path: path.join(dir, 'cairn.duckdb') }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      const total = 450; // more than one statement's rows, and more than one automatic flush
      for (let i = 0; i < total; i++) {
        const at = new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString();
        // Every tenth call repeats the previous card (same uuid): stored once, as INSERT OR IGNORE did.
        const uuid = `00000000-0000-4000-8000-${String(i % 10 === 9 ? i - 1 : i).padStart(12, '0')}`;
        const card: IssuedCard = { uuid, serviceId: 'svc', hook: 'order-sign', hookInstance: `hi-${i}`, patientId: `p${i % 7}`, ruleId: 'r', ruleVersion: '1', knowledgeVersion: 'k', indicator: 'warning', issuedAt: at, client: 'ehr', suggestions: [] };
        await store.recordInvocation({ serviceId: 'svc', hook: 'order-sign', hookInstance: `hi-${i}`, client: 'ehr', patientId: card.patientId, knowledgeVersion: 'k', at, durationMs: i % 50, status: 200, cards: [card], suppressed: 0, ruleErrors: 0 });
      }
      await store.flush();
      const [counts] = await queryRows(warehouse.connection, `SELECT (SELECT count(*) FROM cds_invocation)::INTEGER AS invocations,
        (SELECT count(DISTINCT hook_instance) FROM cds_invocation)::INTEGER AS instances, (SELECT count(*) FROM cds_card)::INTEGER AS cards`);
      expect(counts).toEqual({ invocations: total, instances: total, cards: total - total / 10 });
      const [last] = await queryRows(warehouse.connection, `SELECT strftime(invoked_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S') AS at, duration_ms FROM cds_invocation WHERE hook_instance = 'hi-449'`);
      expect(last).toEqual({ at: '2026-01-01T00:07:29', duration_ms: 449 % 50 });
      const found = await store.findCards(['00000000-0000-4000-8000-000000000008']);
      expect(found.get('00000000-0000-4000-8000-000000000008')?.hookInstance).toBe('hi-8');
    });
  });

  it('stores any text exactly and instants in any offset (rows travel to DuckDB as JSON text)', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'cairn-cds-store-'));
    await withWarehouse({ path: path.join(dir, 'cairn.duckdb') }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      const awkward = `it's "quoted" \\ back\\slash, new\nline, tab\t, é, 💊, \u0000 NUL, $1 '${'x'.repeat(300)}`;
      const card: IssuedCard = { uuid: 'u-1', serviceId: 'svc', hook: 'order-sign', hookInstance: awkward, patientId: awkward, ruleId: 'r', ruleVersion: '1', knowledgeVersion: 'k', indicator: 'warning', issuedAt: '2026-01-01T01:00:00.250+01:00', client: 'ehr', suggestions: [] };
      await store.recordInvocation({ serviceId: 'svc', hook: 'order-sign', hookInstance: awkward, client: awkward, patientId: awkward, knowledgeVersion: 'k', at: '2026-01-01T01:00:00.250+01:00', durationMs: 7, status: 200, cards: [card], suppressed: 1, ruleErrors: 2 });
      await store.flush();
      const [invocation] = await queryRows(warehouse.connection, `SELECT hook_instance, client, patient_id, strftime(invoked_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%g') AS at, duration_ms, status, cards, suppressed, rule_errors FROM cds_invocation`);
      expect(invocation).toEqual({ hook_instance: awkward, client: awkward, patient_id: awkward, at: '2026-01-01T00:00:00.250', duration_ms: 7, status: 200, cards: 1, suppressed: 1, rule_errors: 2 });
      const [stored] = await queryRows(warehouse.connection, `SELECT hook_instance, patient_id, strftime(issued_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%g') AS at FROM cds_card`);
      expect(stored).toEqual({ hook_instance: awkward, patient_id: awkward, at: '2026-01-01T00:00:00.250' });
    });
  });

  it('keeps a card first written in an earlier flush when a later call repeats its uuid, and loses none of that flush', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'cairn-cds-store-'));
    await withWarehouse({ path: path.join(dir, 'cairn.duckdb') }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      const call = (hookInstance: string, uuid: string, at: string) => {
        const card: IssuedCard = { uuid, serviceId: 'svc', hook: 'order-sign', hookInstance, patientId: 'p1', ruleId: 'r', ruleVersion: '1', knowledgeVersion: 'k', indicator: 'warning', issuedAt: at, client: 'ehr', suggestions: [] };
        return store.recordInvocation({ serviceId: 'svc', hook: 'order-sign', hookInstance, client: 'ehr', patientId: 'p1', knowledgeVersion: 'k', at, durationMs: 1, status: 200, cards: [card], suppressed: 0, ruleErrors: 0 });
      };
      const repeated = '00000000-0000-4000-8000-00000000000a';
      await call('first', repeated, '2026-01-01T00:00:00Z');
      await store.flush();
      // The retried call (same card uuid) and a new one, in one later flush.
      await call('retry', repeated, '2026-01-01T00:01:00Z');
      await call('other', '00000000-0000-4000-8000-00000000000b', '2026-01-01T00:02:00Z');
      await store.flush();
      const rows = await queryRows(warehouse.connection, 'SELECT uuid, hook_instance FROM cds_card ORDER BY uuid');
      expect(rows).toEqual([{ uuid: repeated, hook_instance: 'first' }, { uuid: '00000000-0000-4000-8000-00000000000b', hook_instance: 'other' }]);
      const [invocations] = await queryRows(warehouse.connection, 'SELECT count(*)::INTEGER AS n FROM cds_invocation');
      expect(invocations).toEqual({ n: 3 });
    });
  });

  it('leaves later transactions whole after a flush that repeats a stored card, when the collector runs inside them', async () => {
    // A failed appender wrote its rows again when collected, aborting whatever transaction was open then.
    dir = await mkdtemp(path.join(tmpdir(), 'cairn-cds-store-'));
    await withWarehouse({ path: path.join(dir, 'cairn.duckdb') }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      const gc = collector();
      const call = (hookInstance: string, uuid: string) => {
        const card: IssuedCard = { uuid, serviceId: 'svc', hook: 'order-sign', hookInstance, patientId: 'p1', ruleId: 'r', ruleVersion: '1', knowledgeVersion: 'k', indicator: 'warning', issuedAt: '2026-01-01T00:00:00Z', client: 'ehr', suggestions: [] };
        return store.recordInvocation({ serviceId: 'svc', hook: 'order-sign', hookInstance, client: 'ehr', patientId: 'p1', knowledgeVersion: 'k', at: '2026-01-01T00:00:00Z', durationMs: 1, status: 200, cards: [card], suppressed: 0, ruleErrors: 0 });
      };
      await call('first', 'repeated');
      await store.flush();
      for (let round = 0; round < 3; round++) {
        await call(`retry-${round}`, 'repeated');
        await store.flush();
        // Feedback is a transaction of several statements: collect between them.
        const feedback = Array.from({ length: 10 }, (_, i) => ({ cardUuid: 'repeated', serviceId: 'svc', outcome: 'accepted' as const, outcomeTimestamp: new Date(Date.UTC(2026, 0, 1, round, i)).toISOString(), acceptedSuggestions: [], client: 'ehr', receivedAt: '2026-01-02T00:00:00Z' }));
        let recording = true;
        const recorded = store.recordFeedback(feedback, []).finally(() => {
          recording = false;
        });
        while (recording) {
          gc();
          await nextTurn();
        }
        await expect(recorded).resolves.toEqual({ stored: 10, duplicates: 0 });
      }
      const [counts] = await queryRows(warehouse.connection, `SELECT (SELECT count(*) FROM cds_invocation)::INTEGER AS invocations, (SELECT count(*) FROM cds_card)::INTEGER AS cards, (SELECT hook_instance FROM cds_card WHERE uuid = 'repeated') AS kept`);
      expect(counts).toEqual({ invocations: 4, cards: 1, kept: 'first' });
    });
  });

  it('writes on a connection of its own: a transaction others open on the warehouse neither takes nor blocks its writes', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'cairn-cds-store-'));
    await withWarehouse({ path: path.join(dir, 'cairn.duckdb') }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      const card: IssuedCard = { uuid: 'c-1', serviceId: 'svc', hook: 'order-sign', hookInstance: 'hi-1', patientId: 'p1', ruleId: 'r', ruleVersion: '1', knowledgeVersion: 'k', indicator: 'warning', issuedAt: '2026-01-01T00:00:00Z', client: 'ehr', suggestions: [] };
      await store.recordInvocation({ serviceId: 'svc', hook: 'order-sign', hookInstance: 'hi-1', client: 'ehr', patientId: 'p1', knowledgeVersion: 'k', at: '2026-01-01T00:00:00Z', durationMs: 1, status: 200, cards: [card], suppressed: 0, ruleErrors: 0 });
      await warehouse.connection.run('BEGIN TRANSACTION');
      await store.flush();
      await warehouse.connection.run('ROLLBACK');
      expect([...(await store.findCards(['c-1'])).keys()]).toEqual(['c-1']);
      const [counts] = await queryRows(warehouse.connection, 'SELECT (SELECT count(*) FROM cds_invocation)::INTEGER AS invocations, (SELECT count(*) FROM cds_card)::INTEGER AS cards');
      expect(counts).toEqual({ invocations: 1, cards: 1 });
    });
  });

  it('keeps a batch it could not write for the next flush, and says so', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'cairn-cds-store-'));
    await withWarehouse({ path: path.join(dir, 'cairn.duckdb') }, async (warehouse) => {
      const failures: { message: string; givenUp: number }[] = [];
      const store = await createCdsStore(warehouse, { onFlushError: (error, givenUp) => failures.push({ message: (error as Error).message, givenUp }) });
      const call = (i: number) => {
        const card: IssuedCard = { uuid: `c-${i}`, serviceId: 'svc', hook: 'order-sign', hookInstance: `hi-${i}`, patientId: 'p1', ruleId: 'r', ruleVersion: '1', knowledgeVersion: 'k', indicator: 'warning', issuedAt: '2026-01-01T00:00:00Z', client: 'ehr', suggestions: [] };
        return store.recordInvocation({ serviceId: 'svc', hook: 'order-sign', hookInstance: `hi-${i}`, client: 'ehr', patientId: 'p1', knowledgeVersion: 'k', at: '2026-01-01T00:00:00Z', durationMs: 1, status: 200, cards: [card], suppressed: 0, ruleErrors: 0 });
      };
      // The invocation table goes away for a while (as a full disk would refuse it).
      await warehouse.connection.run('ALTER TABLE cds_invocation RENAME TO cds_invocation_away');
      await call(1);
      await expect(store.flush()).rejects.toThrow();
      await call(2);
      await warehouse.connection.run('ALTER TABLE cds_invocation_away RENAME TO cds_invocation');
      await store.flush();
      expect(failures).toEqual([{ message: expect.stringContaining('cds_invocation') as unknown as string, givenUp: 0 }]);
      const rows = await queryRows(warehouse.connection, 'SELECT hook_instance FROM cds_invocation ORDER BY 1');
      expect(rows).toEqual([{ hook_instance: 'hi-1' }, { hook_instance: 'hi-2' }]);
      expect([...(await store.findCards(['c-1', 'c-2'])).keys()].sort()).toEqual(['c-1', 'c-2']);
    });
  });

  it('loses and repeats nothing when calls are recorded while a flush is appending (it yields between slices of rows)', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'cairn-cds-store-'));
    await withWarehouse({ path: path.join(dir, 'cairn.duckdb') }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      const call = (i: number) => {
        const at = new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString();
        const card: IssuedCard = { uuid: `card-${i}`, serviceId: 'svc', hook: 'order-sign', hookInstance: `hi-${i}`, patientId: 'p1', ruleId: 'r', ruleVersion: '1', knowledgeVersion: 'k', indicator: 'warning', issuedAt: at, client: 'ehr', suggestions: [] };
        return store.recordInvocation({ serviceId: 'svc', hook: 'order-sign', hookInstance: `hi-${i}`, client: 'ehr', patientId: 'p1', knowledgeVersion: 'k', at, durationMs: 1, status: 200, cards: [card], suppressed: 0, ruleErrors: 0 });
      };
      for (let i = 0; i < 200; i++) await call(i);
      let flushing = true;
      const flushed = store.flush().finally(() => {
        flushing = false;
      });
      // A call on every turn of the event loop until the first flush is done.
      let next = 200;
      while (flushing) {
        await call(next++);
        await nextTurn();
      }
      await flushed;
      expect(next).toBeGreaterThan(201);
      const [first] = await queryRows(warehouse.connection, 'SELECT (SELECT count(*) FROM cds_invocation)::INTEGER AS invocations, (SELECT count(*) FROM cds_card)::INTEGER AS cards');
      expect(first).toEqual({ invocations: 200, cards: 200 });
      await store.flush();
      const [all] = await queryRows(warehouse.connection, 'SELECT count(*)::INTEGER AS invocations, count(DISTINCT hook_instance)::INTEGER AS instances, max(duration_ms)::INTEGER AS d FROM cds_invocation');
      expect(all).toEqual({ invocations: next, instances: next, d: 1 });
    });
  });
});

describe('CDS store: a database written before cards kept their client and suggestions', () => {
  it('adds the columns, reads old cards as from no client with suggestions unknown, and keeps both for new ones', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'cairn-cds-store-'));
    await withWarehouse({ path: path.join(dir, 'cairn.duckdb') }, async (warehouse) => {
      await warehouse.connection.run(`CREATE TABLE cds_card (
        uuid VARCHAR PRIMARY KEY, service_id VARCHAR NOT NULL, hook VARCHAR NOT NULL, hook_instance VARCHAR NOT NULL,
        patient_id VARCHAR NOT NULL, rule_id VARCHAR NOT NULL, rule_version VARCHAR NOT NULL, knowledge_version VARCHAR NOT NULL,
        indicator VARCHAR NOT NULL, issued_at TIMESTAMPTZ NOT NULL)`);
      await warehouse.connection.run(`INSERT INTO cds_card VALUES ('old', 'svc', 'order-sign', 'hi-0', 'p1', 'r', '1', 'k', 'warning', '2026-01-01T00:00:00Z')`);
      const store = await createCdsStore(warehouse);
      const at = '2026-01-02T00:00:00.000Z';
      const card: IssuedCard = { uuid: 'new', serviceId: 'svc', hook: 'order-sign', hookInstance: 'hi-1', patientId: 'p1', ruleId: 'r', ruleVersion: '1', knowledgeVersion: 'k', indicator: 'warning', issuedAt: at, client: 'ehr', suggestions: ['s-1'] };
      await store.recordInvocation({ serviceId: 'svc', hook: 'order-sign', hookInstance: 'hi-1', client: 'ehr', patientId: 'p1', knowledgeVersion: 'k', at, durationMs: 1, status: 200, cards: [card], suppressed: 0, ruleErrors: 0 });
      const found = await store.findCards(['old', 'new']);
      expect(found.get('old')).toMatchObject({ client: '', suggestions: undefined });
      expect(found.get('new')).toMatchObject({ client: 'ehr', suggestions: ['s-1'] });
    });
  });
});

describe('CDS store: token claims', () => {
  it('keeps the jtis accepted until they expire, across a restart, and prunes expired ones', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'cairn-cds-store-'));
    const file = path.join(dir, 'cairn.duckdb');
    const nowSeconds = Date.now() / 1000;
    await withWarehouse({ path: file }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      store.recordClaim({ iss: 'https://ehr.test', jti: 'live', until: nowSeconds + 300 });
      store.recordClaim({ iss: 'https://ehr.test', jti: 'expired', until: nowSeconds - 1 });
      await store.close();
    });
    await withWarehouse({ path: file }, async (warehouse) => {
      const store = await createCdsStore(warehouse);
      expect(await store.liveClaims(nowSeconds)).toEqual([{ iss: 'https://ehr.test', jti: 'live', until: nowSeconds + 300 }]);
      // The first flush deleted the expired claim rather than keeping it forever.
      const [stored] = await queryRows(warehouse.connection, 'SELECT count(*)::INTEGER AS n FROM cds_token_claim');
      expect(stored).toEqual({ n: 1 });
    });
  });
});
