import { setImmediate as nextTurn } from 'node:timers/promises';
import { timestampTZValue, type DuckDBAppender, type DuckDBConnection, type DuckDBTimestampTZValue } from '@duckdb/node-api';
import type { TokenClaim } from '../cds-hooks/auth/index.ts';
import { MAX_SNOOZE_DAYS, type CdsStore, type FeedbackRecord, type FeedbackResult, type InvocationRecord, type IssuedCard, type OfferedReason, type Snooze } from '../cds-hooks/store.ts';
import type { HookId } from '../domain/hooks.ts';
import { closeAppenders, queryRows, type Warehouse } from './database.ts';

// A snooze silences a rule for a patient at one client ('' only in rows migrated without one: every client).
const SNOOZE_TABLE = `CREATE TABLE IF NOT EXISTS cds_snooze (
  client VARCHAR NOT NULL, rule_id VARCHAR NOT NULL, patient_id VARCHAR NOT NULL, until TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (client, rule_id, patient_id, until))`;

/**
 * Feedback items staged for one recordFeedback, by their index `i`: as cds_feedback, but text as
 * given (instants are cast by DuckDB, as a stored item's were, so a repeat matches it to the µs).
 */
const FEEDBACK_PENDING = `CREATE OR REPLACE TEMP TABLE cds_feedback_pending (
  i INTEGER, card_uuid VARCHAR, service_id VARCHAR, outcome VARCHAR, outcome_timestamp VARCHAR, accepted_suggestions VARCHAR,
  override_system VARCHAR, override_code VARCHAR, override_display VARCHAR, user_comment VARCHAR, client VARCHAR, received_at VARCHAR)`;

/** The staged items that are new: the first of their key (card, outcome, instant) in the call, and none stored before. */
const FEEDBACK_NEW = `CREATE OR REPLACE TEMP TABLE cds_feedback_new AS
  SELECT i FROM (
    SELECT i, card_uuid, outcome, outcome_timestamp::TIMESTAMPTZ AS at,
      row_number() OVER (PARTITION BY card_uuid, outcome, outcome_timestamp::TIMESTAMPTZ ORDER BY i) AS n
    FROM cds_feedback_pending) p
  WHERE n = 1 AND NOT EXISTS (SELECT 1 FROM cds_feedback f WHERE f.card_uuid = p.card_uuid AND f.outcome = p.outcome AND f.outcome_timestamp = p.at)`;

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS cds_invocation (
     service_id VARCHAR NOT NULL, hook VARCHAR NOT NULL, hook_instance VARCHAR NOT NULL, client VARCHAR NOT NULL,
     patient_id VARCHAR NOT NULL, knowledge_version VARCHAR NOT NULL, invoked_at TIMESTAMPTZ NOT NULL, duration_ms INTEGER NOT NULL,
     status INTEGER NOT NULL, cards INTEGER NOT NULL, suppressed INTEGER NOT NULL, rule_errors INTEGER NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS cds_card (
     uuid VARCHAR PRIMARY KEY, service_id VARCHAR NOT NULL, hook VARCHAR NOT NULL, hook_instance VARCHAR NOT NULL,
     patient_id VARCHAR NOT NULL, rule_id VARCHAR NOT NULL, rule_version VARCHAR NOT NULL, knowledge_version VARCHAR NOT NULL,
     indicator VARCHAR NOT NULL, issued_at TIMESTAMPTZ NOT NULL, client VARCHAR, suggestions JSON, override_reasons JSON)`,
  // Cards stored before feedback was checked against the issuing client and the suggestions offered.
  `ALTER TABLE cds_card ADD COLUMN IF NOT EXISTS client VARCHAR`,
  `ALTER TABLE cds_card ADD COLUMN IF NOT EXISTS suggestions JSON`,
  // Cards stored before the override reasons each offered were kept (their rule's are used).
  `ALTER TABLE cds_card ADD COLUMN IF NOT EXISTS override_reasons JSON`,
  `CREATE TABLE IF NOT EXISTS cds_feedback (
     card_uuid VARCHAR NOT NULL, service_id VARCHAR NOT NULL, outcome VARCHAR NOT NULL, outcome_timestamp TIMESTAMPTZ NOT NULL,
     accepted_suggestions JSON NOT NULL, override_system VARCHAR, override_code VARCHAR, override_display VARCHAR,
     user_comment VARCHAR, client VARCHAR NOT NULL, received_at TIMESTAMPTZ NOT NULL,
     PRIMARY KEY (card_uuid, outcome, outcome_timestamp))`,
  // The jtis accepted, until they expire (epoch seconds): a restart must not accept a token twice either.
  `CREATE TABLE IF NOT EXISTS cds_token_claim (iss VARCHAR NOT NULL, jti VARCHAR NOT NULL, until DOUBLE NOT NULL)`,
  SNOOZE_TABLE,
];

/**
 * migrateSnoozes gives a cds_snooze written before snoozes were scoped by client (no client column,
 * keyed by rule, patient and until) its client: rebuilt, since a new column cannot join the key and
 * two clients snoozing until one instant need two rows. Each old snooze goes to the client(s) whose
 * stored snoozing override of a card of that rule and patient could have made it, and ends at most
 * MAX_SNOOZE_DAYS after that override was received (earlier versions took the end from an unbounded
 * outcomeTimestamp); one no override explains keeps its old meaning, every client (''), and ends at
 * most MAX_SNOOZE_DAYS after `now`.
 */
async function migrateSnoozes(c: DuckDBConnection, now: string): Promise<void> {
  const [scoped] = await queryRows(c, `SELECT count(*)::INTEGER AS n FROM duckdb_columns()
    WHERE database_name = current_database() AND schema_name = current_schema() AND table_name = 'cds_snooze' AND column_name = 'client'`);
  if (Number(scoped?.n ?? 0) > 0) return;
  const year = `INTERVAL ${MAX_SNOOZE_DAYS} DAY`;
  await c.run('BEGIN TRANSACTION');
  try {
    await c.run('ALTER TABLE cds_snooze RENAME TO cds_snooze_unscoped');
    await c.run(SNOOZE_TABLE);
    await c.run(`INSERT OR IGNORE INTO cds_snooze
      SELECT coalesce(a.client, '') AS client, s.rule_id, s.patient_id,
        least(s.until, coalesce(max(a.received_at), $1::TIMESTAMPTZ) + ${year}) AS until
      FROM cds_snooze_unscoped s LEFT JOIN (
        SELECT k.rule_id, k.patient_id, f.client, f.outcome_timestamp, f.received_at
        FROM cds_feedback f JOIN cds_card k ON k.uuid = f.card_uuid
        WHERE f.outcome = 'overridden' AND f.override_code ILIKE '%snooze%') a ON a.rule_id = s.rule_id AND a.patient_id = s.patient_id
        AND s.until > a.outcome_timestamp AND s.until <= a.outcome_timestamp + ${year}
      GROUP BY a.client, s.rule_id, s.patient_id, s.until`, [now]);
    await c.run('DROP TABLE cds_snooze_unscoped');
    await c.run('COMMIT');
  } catch (error) {
    await c.run('ROLLBACK');
    throw error;
  }
}

/**
 * Invocations wait at most FLUSH_AFTER_MS (or until FLUSH_AT_RECORDS are pending) before they are
 * written: a DuckDB transaction costs several ms of CPU whatever it holds (a flush of 100 calls,
 * ~10 ms; a flush every 50 ms cost 3.6 ms per call at 60 calls/s), and the service's CPU is for
 * answering calls. A read of cards (feedback) and closing the service write what is pending first.
 */
const FLUSH_AFTER_MS = 1000;
const FLUSH_AT_RECORDS = 1000;

/**
 * Rows appended per turn of the event loop. Appends run on the HTTP thread (~2 µs a value), and
 * every call arriving meanwhile waits them out: a flush of 200 calls held it 9-19 ms at once,
 * appended 25 rows a turn 4-7 ms (the appender's close, ~3 ms for 200 cards, is one piece).
 */
const ROWS_PER_TURN = 25;

/** An ISO instant as DuckDB's TIMESTAMPTZ (microseconds since the epoch). */
function instant(iso: string): DuckDBTimestampTZValue {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`not an instant: ${iso}`);
  return timestampTZValue(BigInt(ms) * 1000n);
}

/** Invocations (and token claims) kept for a later flush while DuckDB cannot take them (~100 s at 1000 calls/s). */
const MAX_PENDING_RECORDS = 100_000;

/** How often expired token claims are deleted. */
const CLAIM_PRUNE_INTERVAL_MS = 60_000;

export interface CdsStoreOptions {
  /** Told when a flush fails, with how many invocation records it had to give up (the rest wait for the next flush). */
  readonly onFlushError?: (error: unknown, givenUp: number) => void;
  /** The clock expired token claims are pruned by, in epoch ms (the service's own clock; default Date.now). */
  readonly now?: () => number;
}

/**
 * appendRows writes rows through an appender (column chunks directly: no statement to plan per row
 * or per flush), yielding every ROWS_PER_TURN rows. On any failure the appender's rows are dropped
 * (see closeAppenders).
 */
async function appendRows<T>(c: DuckDBConnection, table: string, rows: readonly T[], fill: (appender: DuckDBAppender, row: T) => void): Promise<void> {
  const appender = await c.createAppender(table);
  try {
    for (const [i, row] of rows.entries()) {
      if (i > 0 && i % ROWS_PER_TURN === 0) await nextTurn();
      fill(appender, row);
      appender.endRow();
    }
  } catch (error) {
    appender.clear();
    throw error;
  }
  closeAppenders(appender);
}

/**
 * createCdsStore keeps the CDS Hooks service's durable records in the warehouse. It writes on a
 * connection of its own (a flush's transaction spans turns of the event loop, and other readers and
 * writers of the warehouse must not land inside it), through one queue so each multi-row write is
 * its own transaction.
 */
export async function createCdsStore(warehouse: Warehouse, options: CdsStoreOptions = {}): Promise<CdsStore & { close(): Promise<void> }> {
  const connection = await warehouse.connect();
  for (const statement of SCHEMA) await connection.run(statement);
  await migrateSnoozes(connection, new Date((options.now ?? Date.now)()).toISOString());
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(work: (c: DuckDBConnection) => Promise<T>): Promise<T> => {
    const next = queue.then(() => work(connection));
    queue = next.catch(() => undefined);
    return next;
  };
  const inTransaction = async <T>(c: DuckDBConnection, work: (c: DuckDBConnection) => Promise<T>): Promise<T> => {
    await c.run('BEGIN TRANSACTION');
    try {
      const result = await work(c);
      await c.run('COMMIT');
      return result;
    } catch (error) {
      await c.run('ROLLBACK');
      throw error;
    }
  };
  const transaction = <T>(work: (c: DuckDBConnection) => Promise<T>): Promise<T> => serial((c) => inTransaction(c, work));

  // Invocations are written behind the response, in batches: one transaction per flush instead of
  // one per request keeps DuckDB off the real-time path. Anything that reads cards flushes first.
  let pendingInvocations: InvocationRecord[] = [];
  let pendingClaims: TokenClaim[] = [];
  let flushTimer: NodeJS.Timeout | undefined;
  let claimsPrunedAt = 0;
  const appendInvocations = (c: DuckDBConnection, batch: readonly InvocationRecord[]): Promise<void> =>
    appendRows(c, 'cds_invocation', batch, (appender, record) => {
      for (const text of [record.serviceId, record.hook, record.hookInstance, record.client, record.patientId, record.knowledgeVersion]) appender.appendVarchar(text);
      appender.appendTimestampTZ(instant(record.at));
      for (const count of [record.durationMs, record.status, record.cards.length, record.suppressed, record.ruleErrors]) appender.appendInteger(count);
    });
  const appendCards = (c: DuckDBConnection, table: string, cards: readonly IssuedCard[]): Promise<void> =>
    appendRows(c, table, cards, (appender, card) => {
      for (const text of [card.uuid, card.serviceId, card.hook, card.hookInstance, card.patientId, card.ruleId, card.ruleVersion, card.knowledgeVersion, card.indicator]) appender.appendVarchar(text);
      appender.appendTimestampTZ(instant(card.issuedAt));
      appender.appendVarchar(card.client);
      for (const list of [card.suggestions, card.overrideReasons]) {
        if (list) appender.appendVarchar(JSON.stringify(list));
        else appender.appendNull();
      }
    });
  /** Invocations and claims, and the claims that expired pruned (at most once a minute: a DELETE is planned and scans). */
  const appendBatch = async (c: DuckDBConnection, batch: readonly InvocationRecord[], claims: readonly TokenClaim[]): Promise<void> => {
    await appendInvocations(c, batch);
    await appendRows(c, 'cds_token_claim', claims, (appender, claim) => {
      appender.appendVarchar(claim.iss);
      appender.appendVarchar(claim.jti);
      appender.appendDouble(claim.until);
    });
    const nowMs = (options.now ?? Date.now)();
    if (Math.abs(nowMs - claimsPrunedAt) >= CLAIM_PRUNE_INTERVAL_MS) {
      await c.run('DELETE FROM cds_token_claim WHERE until <= $1', [nowMs / 1000]);
      claimsPrunedAt = nowMs;
    }
  };
  const flush = (): Promise<void> => {
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = undefined;
    const batch = pendingInvocations;
    const claims = pendingClaims;
    pendingInvocations = [];
    pendingClaims = [];
    if (batch.length === 0 && claims.length === 0) return serial(async () => undefined);
    const cards = batch.flatMap((record) => record.cards);
    // Both attempts in one turn of the queue, so no other write lands between them.
    return serial(async (c) => {
      try {
        // Usually every card is new: appended straight into cds_card (its key rejects the batch otherwise).
        await inTransaction(c, async () => {
          await appendBatch(c, batch, claims);
          await appendCards(c, 'cds_card', cards);
        });
      } catch {
        // A card uuid repeated (a retried hookInstance): through a staging table, so the uuid keeps
        // what was first written (~2.5x the CPU: a planned INSERT OR IGNORE with a window).
        await inTransaction(c, async () => {
          await appendBatch(c, batch, claims);
          await c.run('CREATE OR REPLACE TEMP TABLE cds_card_pending AS SELECT * FROM cds_card LIMIT 0');
          await appendCards(c, 'cds_card_pending', cards);
          await c.run(`INSERT OR IGNORE INTO cds_card SELECT * EXCLUDE (n) FROM (
            SELECT *, row_number() OVER (PARTITION BY uuid ORDER BY rowid) AS n FROM cds_card_pending) WHERE n = 1`);
          await c.run('DROP TABLE cds_card_pending');
        });
      }
    }).catch((error: unknown) => {
      // The batch waits for the next flush (a full disk may be freed); past MAX_PENDING_RECORDS the oldest are given up.
      pendingInvocations = [...batch, ...pendingInvocations];
      pendingClaims = [...claims, ...pendingClaims];
      const givenUp = pendingInvocations.splice(0, Math.max(0, pendingInvocations.length - MAX_PENDING_RECORDS)).length;
      pendingClaims.splice(0, Math.max(0, pendingClaims.length - MAX_PENDING_RECORDS));
      flushTimer ??= setTimeout(flushBehind, FLUSH_AFTER_MS);
      options.onFlushError?.(error, givenUp);
      throw error;
    });
  };
  /** A flush nobody awaits: its failure reaches onFlushError. */
  const flushBehind = (): void => void flush().catch(() => undefined);

  // Snoozes are few and read on every request: kept in memory (latest end, by client and patient,
  // then rule), written through to DuckDB.
  const snoozes = new Map<string, Map<string, number>>();
  const snoozeKey = (client: string, patientId: string): string => JSON.stringify([client, patientId]);
  const remember = (snooze: Pick<Snooze, 'client' | 'patientId' | 'ruleId' | 'until'>): void => {
    const key = snoozeKey(snooze.client, snooze.patientId);
    const byRule = snoozes.get(key) ?? new Map<string, number>();
    const until = Date.parse(snooze.until);
    if ((byRule.get(snooze.ruleId) ?? -Infinity) < until) byRule.set(snooze.ruleId, until);
    snoozes.set(key, byRule);
  };
  const stored = await queryRows(connection, `SELECT client, rule_id, patient_id, strftime(until AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ') AS until FROM cds_snooze`);
  for (const row of stored) remember({ client: String(row.client), ruleId: String(row.rule_id), patientId: String(row.patient_id), until: String(row.until) });

  return {
    async recordInvocation(record: InvocationRecord) {
      pendingInvocations.push(record);
      if (pendingInvocations.length >= FLUSH_AT_RECORDS) flushBehind();
      else flushTimer ??= setTimeout(flushBehind, FLUSH_AFTER_MS);
    },

    flush,

    recordClaim(claim: TokenClaim) {
      pendingClaims.push(claim);
      flushTimer ??= setTimeout(flushBehind, FLUSH_AFTER_MS);
    },

    async liveClaims(nowSeconds: number) {
      await flush();
      const rows = await serial((c) => queryRows(c, 'SELECT iss, jti, until FROM cds_token_claim WHERE until > $1', [nowSeconds]));
      return rows.map((row) => ({ iss: String(row.iss), jti: String(row.jti), until: Number(row.until) }));
    },

    /** Writes what is pending and closes the store's connection. */
    async close() {
      await flush();
      connection.closeSync();
    },

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
          // Cards from before the client was kept name none: any client allowed the service may answer them.
          client: row.client === null ? '' : String(row.client),
          suggestions: row.suggestions === null ? undefined : (JSON.parse(String(row.suggestions)) as string[]),
          ...(row.override_reasons === null || row.override_reasons === undefined ? {} : { overrideReasons: JSON.parse(String(row.override_reasons)) as OfferedReason[] }),
        } satisfies IssuedCard]));
      });
    },

    async recordFeedback(items: readonly FeedbackRecord[], newSnoozes: readonly Snooze[]): Promise<FeedbackResult> {
      if (items.length === 0) return { stored: 0, duplicates: 0 };
      // Staged and compared in a few statements, not two per item: 1000 items took 4 s item by item.
      const { result, added } = await transaction(async (c) => {
        await c.run(FEEDBACK_PENDING);
        await appendRows(c, 'cds_feedback_pending', [...items.entries()], (appender, [i, item]) => {
          appender.appendInteger(i);
          for (const text of [item.cardUuid, item.serviceId, item.outcome, item.outcomeTimestamp, JSON.stringify(item.acceptedSuggestions),
            item.overrideReason?.system, item.overrideReason?.code, item.overrideReason?.display, item.userComment, item.client, item.receivedAt]) {
            if (text === undefined) appender.appendNull();
            else appender.appendVarchar(text);
          }
        });
        await c.run(FEEDBACK_NEW);
        await c.run(`INSERT INTO cds_feedback SELECT card_uuid, service_id, outcome, outcome_timestamp::TIMESTAMPTZ, accepted_suggestions::JSON,
          override_system, override_code, override_display, user_comment, client, received_at::TIMESTAMPTZ
          FROM cds_feedback_pending WHERE i IN (SELECT i FROM cds_feedback_new)`);
        // The items stored now (by index): a duplicate adds neither a row nor the snooze it asks for.
        const stored = new Set((await queryRows(c, 'SELECT i FROM cds_feedback_new')).map((row) => Number(row.i)));
        await c.run('DROP TABLE cds_feedback_pending');
        await c.run('DROP TABLE cds_feedback_new');
        const added = newSnoozes.filter((snooze) => stored.has(snooze.item));
        if (added.length > 0) {
          await c.run('CREATE OR REPLACE TEMP TABLE cds_snooze_pending AS SELECT * FROM cds_snooze LIMIT 0');
          await appendRows(c, 'cds_snooze_pending', added, (appender, snooze) => {
            for (const text of [snooze.client, snooze.ruleId, snooze.patientId]) appender.appendVarchar(text);
            appender.appendTimestampTZ(instant(snooze.until));
          });
          await c.run('INSERT OR IGNORE INTO cds_snooze SELECT * FROM cds_snooze_pending');
          await c.run('DROP TABLE cds_snooze_pending');
        }
        return { result: { stored: stored.size, duplicates: items.length - stored.size }, added };
      });
      // Only once committed: a rolled-back snooze silences nothing.
      added.forEach(remember);
      return result;
    },

    async snoozedRules(client: string, patientId: string, at: string) {
      const atMs = Date.parse(at);
      // The client's own snoozes, and those migrated without a client (every client's).
      const byRule = [snoozes.get(snoozeKey(client, patientId)), client === '' ? undefined : snoozes.get(snoozeKey('', patientId))];
      return new Set(byRule.flatMap((rules) => [...(rules ?? [])].filter(([, until]) => until > atMs).map(([ruleId]) => ruleId)));
    },
  };
}
