import type { AlertDecision, CareGapDecision, RuleError } from '../domain/decisions.ts';
import { queryRows, type Warehouse } from './database.ts';

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS batch_run (
     run_id VARCHAR PRIMARY KEY, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ NOT NULL,
     evaluated_at TIMESTAMPTZ NOT NULL, knowledge_version VARCHAR NOT NULL, data_snapshot VARCHAR NOT NULL,
     patients INTEGER NOT NULL, alerts INTEGER NOT NULL, care_gaps INTEGER NOT NULL, errors INTEGER NOT NULL,
     status VARCHAR NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS batch_alert (
     run_id VARCHAR NOT NULL, id VARCHAR NOT NULL, patient_id VARCHAR NOT NULL, rule_id VARCHAR NOT NULL,
     rule_version VARCHAR NOT NULL, severity VARCHAR NOT NULL, message VARCHAR NOT NULL, category VARCHAR)`,
  `CREATE TABLE IF NOT EXISTS batch_care_gap (
     run_id VARCHAR NOT NULL, id VARCHAR NOT NULL, patient_id VARCHAR NOT NULL, rule_id VARCHAR NOT NULL,
     rule_version VARCHAR NOT NULL, measure VARCHAR, guideline VARCHAR, missing VARCHAR NOT NULL, due_date DATE NOT NULL,
     detected_issue JSON)`,
  // Databases made before measures ran nightly lack this column.
  `ALTER TABLE batch_care_gap ADD COLUMN IF NOT EXISTS detected_issue JSON`,
  `CREATE TABLE IF NOT EXISTS batch_measure_report (
     run_id VARCHAR NOT NULL, measure VARCHAR NOT NULL, patient_id VARCHAR, type VARCHAR NOT NULL, report JSON NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS batch_error (
     run_id VARCHAR NOT NULL, patient_id VARCHAR NOT NULL, rule_id VARCHAR NOT NULL, message VARCHAR NOT NULL)`,
];

export interface PatientResults {
  readonly patientId: string;
  readonly alerts: readonly AlertDecision[];
  /** Care gaps from rules, and from measures (with their DEQM DetectedIssue). */
  readonly careGaps: readonly (CareGapDecision & { readonly detectedIssue?: unknown })[];
  readonly errors: readonly RuleError[];
  /** Individual MeasureReports, one per measure. */
  readonly measureReports: readonly { readonly measure: string; readonly report: unknown }[];
}

export interface RunSummary {
  readonly runId: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly evaluatedAt: string;
  readonly knowledgeVersion: string;
  readonly dataSnapshot: string;
  readonly patients: number;
  readonly alerts: number;
  readonly careGaps: number;
  readonly errors: number;
}

/** A batch run being written: results accumulate inside one open transaction until publish. */
export interface RunWriter {
  add(results: PatientResults): Promise<void>;
  /** addMeasureReport stores a population report (summary or subject-list) of the run. */
  addMeasureReport(measure: string, type: 'summary' | 'subject-list', report: unknown): Promise<void>;
  /** publish commits every row of the run at once; readers see all of it or none. */
  publish(summary: RunSummary): Promise<void>;
  abandon(): Promise<void>;
}

/** beginRun opens the transaction a batch run writes into (on its own connection). */
export async function beginRun(warehouse: Warehouse, runId: string): Promise<RunWriter> {
  for (const statement of SCHEMA) await warehouse.connection.run(statement);
  const c = await warehouse.connect();
  await c.run('BEGIN TRANSACTION');
  const alerts = await c.prepare(`INSERT INTO batch_alert VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`);
  const gaps = await c.prepare(`INSERT INTO batch_care_gap VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::DATE, $10::JSON)`);
  const reports = await c.prepare(`INSERT INTO batch_measure_report VALUES ($1, $2, $3, $4, $5::JSON)`);
  const errors = await c.prepare(`INSERT INTO batch_error VALUES ($1, $2, $3, $4)`);
  let open = true;
  const close = (): void => {
    open = false;
    c.closeSync();
  };
  return {
    async add(results) {
      for (const a of results.alerts) {
        alerts.bind([runId, a.id, results.patientId, a.ruleId, a.ruleVersion, a.severity, a.message, a.category ?? null]);
        await alerts.run();
      }
      for (const g of results.careGaps) {
        gaps.bind([runId, g.id, results.patientId, g.ruleId, g.ruleVersion, g.measure ?? null, g.guideline ?? null, g.missing, g.dueDate, g.detectedIssue === undefined ? null : JSON.stringify(g.detectedIssue)]);
        await gaps.run();
      }
      for (const m of results.measureReports) {
        reports.bind([runId, m.measure, results.patientId, 'individual', JSON.stringify(m.report)]);
        await reports.run();
      }
      for (const e of results.errors) {
        errors.bind([runId, results.patientId, e.ruleId, e.message]);
        await errors.run();
      }
    },
    async addMeasureReport(measure, type, report) {
      reports.bind([runId, measure, null, type, JSON.stringify(report)]);
      await reports.run();
    },
    async publish(s) {
      await c.run(`INSERT INTO batch_run VALUES ($1, $2::TIMESTAMPTZ, $3::TIMESTAMPTZ, $4::TIMESTAMPTZ, $5, $6, $7, $8, $9, $10, 'published')`, [
        s.runId, s.startedAt, s.finishedAt, s.evaluatedAt, s.knowledgeVersion, s.dataSnapshot, s.patients, s.alerts, s.careGaps, s.errors,
      ]);
      await c.run('COMMIT');
      close();
    },
    async abandon() {
      if (!open) return;
      await c.run('ROLLBACK');
      close();
    },
  };
}

/** ruleCounts returns, for one run, alerts and care gaps per rule. */
export async function ruleCounts(warehouse: Warehouse, runId: string): Promise<{ ruleId: string; alerts: number; careGaps: number; errors: number }[]> {
  const rows = await queryRows(warehouse.connection, `
    SELECT rule_id, sum(alerts)::INTEGER AS alerts, sum(gaps)::INTEGER AS gaps, sum(errors)::INTEGER AS errors FROM (
      SELECT rule_id, 1 AS alerts, 0 AS gaps, 0 AS errors FROM batch_alert WHERE run_id = $1
      UNION ALL SELECT rule_id, 0, 1, 0 FROM batch_care_gap WHERE run_id = $1
      UNION ALL SELECT rule_id, 0, 0, 1 FROM batch_error WHERE run_id = $1)
    GROUP BY rule_id ORDER BY rule_id`, [runId]);
  return rows.map((r) => ({ ruleId: String(r.rule_id), alerts: Number(r.alerts), careGaps: Number(r.gaps), errors: Number(r.errors) }));
}

/** publishedRuns counts the runs published so far (0 before the first). */
export async function publishedRuns(warehouse: Warehouse): Promise<number> {
  for (const statement of SCHEMA) await warehouse.connection.run(statement);
  const rows = await queryRows(warehouse.connection, `SELECT count(*)::INTEGER AS n FROM batch_run`);
  return Number(rows[0]?.n ?? 0);
}

/** dataSnapshot names the data a run read: the latest ingest run and the patient count. */
export async function dataSnapshot(warehouse: Warehouse): Promise<string> {
  const rows = await queryRows(warehouse.connection, `SELECT (SELECT max(run_id) FROM ingest_run)::VARCHAR AS last_ingest, (SELECT count(*) FROM patient)::INTEGER AS patients`);
  return `ingest ${String(rows[0]?.last_ingest ?? 'none')}, ${Number(rows[0]?.patients ?? 0)} patients`;
}

/** measureSummaries returns the summary MeasureReports of one run, one per measure. */
export async function measureSummaries(warehouse: Warehouse, runId: string): Promise<{ measure: string; report: unknown }[]> {
  const rows = await queryRows(warehouse.connection, `SELECT measure, report::VARCHAR AS report FROM batch_measure_report WHERE run_id = $1 AND type = 'summary' ORDER BY measure`, [runId]);
  return rows.map((r) => ({ measure: String(r.measure), report: JSON.parse(String(r.report)) as unknown }));
}
