import type { DuckDBConnection } from '@duckdb/node-api';
import type { CdsStore, FeedbackRecord, FeedbackResult, InvocationRecord, IssuedCard, Snooze } from '../cds-hooks/store.ts';
import type { HookId } from '../domain/hooks.ts';
import { queryRows, type Warehouse } from './database.ts';

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS cds_invocation (
     service_id VARCHAR NOT NULL, hook VARCHAR NOT NULL, hook_instance VARCHAR NOT NULL, client VARCHAR NOT NULL,
     patient_id VARCHAR NOT NULL, knowledge_version VARCHAR NOT NULL, invoked_at TIMESTAMPTZ NOT NULL, duration_ms INTEGER NOT NULL,
     status INTEGER NOT NULL, cards INTEGER NOT NULL, suppressed INTEGER NOT NULL, rule_errors INTEGER NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS cds_card (
     uuid VARCHAR PRIMARY KEY, service_id VARCHAR NOT NULL, hook VARCHAR NOT NULL, hook_instance VARCHAR NOT NULL,
     patient_id VARCHAR NOT NULL, rule_id VARCHAR NOT NULL, rule_version VARCHAR NOT NULL, knowledge_version VARCHAR NOT NULL,
     indicator VARCHAR NOT NULL, issued_at TIMESTAMPTZ NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS cds_feedback (
     card_uuid VARCHAR NOT NULL, service_id VARCHAR NOT NULL, outcome VARCHAR NOT NULL, outcome_timestamp TIMESTAMPTZ NOT NULL,
     accepted_suggestions JSON NOT NULL, override_system VARCHAR, override_code VARCHAR, override_display VARCHAR,
     user_comment VARCHAR, client VARCHAR NOT NULL, received_at TIMESTAMPTZ NOT NULL,
     PRIMARY KEY (card_uuid, outcome, outcome_timestamp))`,
  `CREATE TABLE IF NOT EXISTS cds_snooze (
     rule_id VARCHAR NOT NULL, patient_id VARCHAR NOT NULL, until TIMESTAMPTZ NOT NULL, PRIMARY KEY (rule_id, patient_id, until))`,
];

/** Rows per INSERT statement (each row's values are bound parameters). */
const ROWS_PER_STATEMENT = 200;

/**
 * insertRows runs `insert` with a VALUES row per entry of `rows`, in chunks; the column at
 * `timestampColumn` is an ISO instant cast to TIMESTAMPTZ.
 */
async function insertRows(c: DuckDBConnection, insert: string, rows: readonly (string | number)[][], timestampColumn: number): Promise<void> {
  for (let start = 0; start < rows.length; start += ROWS_PER_STATEMENT) {
    const chunk = rows.slice(start, start + ROWS_PER_STATEMENT);
    let parameter = 0;
    const values = chunk.map((row) => `(${row.map((_, i) => `$${++parameter}${i === timestampColumn ? '::TIMESTAMPTZ' : ''}`).join(', ')})`);
    await c.run(`${insert} VALUES ${values.join(', ')}`, chunk.flat());
  }
}

/**
 * createCdsStore keeps the CDS Hooks service's durable records in the warehouse. Writes go through
 * one queue so each multi-row write is its own transaction on the shared connection.
 */
export async function createCdsStore(warehouse: Warehouse): Promise<CdsStore> {
  const connection = warehouse.connection;
  for (const statement of SCHEMA) await connection.run(statement);
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(work: (c: DuckDBConnection) => Promise<T>): Promise<T> => {
    const next = queue.then(() => work(connection));
    queue = next.catch(() => undefined);
    return next;
  };
  const transaction = <T>(work: (c: DuckDBConnection) => Promise<T>): Promise<T> =>
    serial(async (c) => {
      await c.run('BEGIN TRANSACTION');
      try {
        const result = await work(c);
        await c.run('COMMIT');
        return result;
      } catch (error) {
        await c.run('ROLLBACK');
        throw error;
      }
    });

  // Invocations are written behind the response, in batches: one transaction per flush instead of
  // one per request keeps DuckDB off the real-time path. Anything that reads cards flushes first.
  let pendingInvocations: InvocationRecord[] = [];
  let flushTimer: NodeJS.Timeout | undefined;
  const flush = (): Promise<void> => {
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = undefined;
    const batch = pendingInvocations;
    pendingInvocations = [];
    if (batch.length === 0) return serial(async () => undefined);
    // One multi-row INSERT per table and chunk: a statement per row cost the service's thread ~0.3 ms a row.
    const invocations = batch.map((record) => [
      record.serviceId, record.hook, record.hookInstance, record.client, record.patientId, record.knowledgeVersion,
      record.at, record.durationMs, record.status, record.cards.length, record.suppressed, record.ruleErrors,
    ]);
    // The first card of a uuid is kept, as a statement per card with INSERT OR IGNORE kept it.
    const firstCards = new Map<string, IssuedCard>();
    for (const card of batch.flatMap((record) => record.cards)) if (!firstCards.has(card.uuid)) firstCards.set(card.uuid, card);
    const cards = [...firstCards.values()].map((card) => [
      card.uuid, card.serviceId, card.hook, card.hookInstance, card.patientId, card.ruleId, card.ruleVersion,
      card.knowledgeVersion, card.indicator, card.issuedAt,
    ]);
    return transaction(async (c) => {
      await insertRows(c, 'INSERT INTO cds_invocation', invocations, 6);
      await insertRows(c, 'INSERT OR IGNORE INTO cds_card', cards, 9);
    });
  };

  // Snoozes are few and read on every request: kept in memory, written through to DuckDB.
  const snoozes = new Map<string, Map<string, string>>();
  const remember = (snooze: Snooze): void => {
    const byRule = snoozes.get(snooze.patientId) ?? new Map<string, string>();
    if ((byRule.get(snooze.ruleId) ?? '') < snooze.until) byRule.set(snooze.ruleId, snooze.until);
    snoozes.set(snooze.patientId, byRule);
  };
  const stored = await queryRows(connection, `SELECT rule_id, patient_id, strftime(until AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ') AS until FROM cds_snooze`);
  for (const row of stored) remember({ ruleId: String(row.rule_id), patientId: String(row.patient_id), until: String(row.until) });

  return {
    async recordInvocation(record: InvocationRecord) {
      pendingInvocations.push(record);
      if (pendingInvocations.length >= 200) void flush().catch(() => undefined);
      else flushTimer ??= setTimeout(() => void flush().catch(() => undefined), 50);
    },

    flush,

    findCards: async (uuids: readonly string[]) => {
      await flush();
      return serial(async (c) => {
        if (uuids.length === 0) return new Map<string, IssuedCard>();
        const placeholders = uuids.map((_, i) => `$${i + 1}`).join(', ');
        const rows = await queryRows(c, `SELECT *, strftime(issued_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ') AS issued FROM cds_card WHERE uuid IN (${placeholders})`, uuids);
        return new Map(rows.map((row) => [String(row.uuid), {
          uuid: String(row.uuid),
          serviceId: String(row.service_id),
          hook: String(row.hook) as HookId,
          hookInstance: String(row.hook_instance),
          patientId: String(row.patient_id),
          ruleId: String(row.rule_id),
          ruleVersion: String(row.rule_version),
          knowledgeVersion: String(row.knowledge_version),
          indicator: String(row.indicator),
          issuedAt: String(row.issued),
        } satisfies IssuedCard]));
      });
    },

    recordFeedback: (items: readonly FeedbackRecord[], newSnoozes: readonly Snooze[]) =>
      transaction(async (c): Promise<FeedbackResult> => {
        let stored = 0;
        for (const item of items) {
          const before = await queryRows(c, `SELECT count(*) AS n FROM cds_feedback WHERE card_uuid = $1 AND outcome = $2 AND outcome_timestamp = $3::TIMESTAMPTZ`, [item.cardUuid, item.outcome, item.outcomeTimestamp]);
          if (Number(before[0]?.n ?? 0) > 0) continue;
          await c.run(`INSERT INTO cds_feedback VALUES ($1, $2, $3, $4::TIMESTAMPTZ, $5::JSON, $6, $7, $8, $9, $10, $11::TIMESTAMPTZ)`, [
            item.cardUuid, item.serviceId, item.outcome, item.outcomeTimestamp, JSON.stringify(item.acceptedSuggestions),
            item.overrideReason?.system ?? null, item.overrideReason?.code ?? null, item.overrideReason?.display ?? null,
            item.userComment ?? null, item.client, item.receivedAt,
          ]);
          stored++;
        }
        for (const snooze of newSnoozes) {
          await c.run(`INSERT OR IGNORE INTO cds_snooze VALUES ($1, $2, $3::TIMESTAMPTZ)`, [snooze.ruleId, snooze.patientId, snooze.until]);
        }
        newSnoozes.forEach(remember);
        return { stored, duplicates: items.length - stored };
      }),

    async snoozedRules(patientId: string, at: string) {
      const byRule = snoozes.get(patientId);
      if (!byRule) return new Set<string>();
      const atMs = Date.parse(at);
      return new Set([...byRule].filter(([, until]) => Date.parse(until) > atMs).map(([ruleId]) => ruleId));
    },
  };
}
