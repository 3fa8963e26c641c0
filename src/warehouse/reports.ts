/**
 * The report side of the warehouse: SQL over the published batch results (batch_run, batch_alert,
 * batch_care_gap, batch_error), the CDS Hooks records (cds_card, cds_feedback) and the resource
 * tables, for the dashboards. Every list is a {@link ListQuery}: SQL text, bound values and typed
 * columns, so one definition serves a JSON page, a count and a streamed export.
 * report-export.ts streams lists; report-audit.ts records patient-level access.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { CairnError } from '../domain/errors.ts';
import { queryRows, type Warehouse } from './database.ts';

/** ColumnKind is how a list column is typed in exports: timestamps travel as ISO-8601 UTC text. */
export type ColumnKind = 'string' | 'integer' | 'number' | 'date' | 'timestamp';

export interface ListColumn {
  readonly name: string;
  readonly kind: ColumnKind;
}

export type SqlValue = string | number | boolean | null;

/** ListQuery is one report list: `sql` selects exactly `columns`; `order` is its stable ORDER BY. */
export interface ListQuery {
  readonly sql: string;
  readonly values: readonly SqlValue[];
  readonly columns: readonly ListColumn[];
  readonly order: string;
  /** patientColumn names the column holding patient ids, for patient-level lists (audited). */
  readonly patientColumn?: string;
}

export interface Page {
  readonly items: Record<string, unknown>[];
  readonly total: number;
  /** Distinct patients over the whole filtered list (patient-level lists only). */
  readonly patients?: number;
}

const iso = (column: string): string => `strftime(${column} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ')`;

/** emptyList is a typed list with no rows, for a warehouse where the batch never ran. */
export function emptyList(columns: readonly ListColumn[], patientColumn?: string): ListQuery {
  const sqlType: Record<ColumnKind, string> = { string: 'VARCHAR', integer: 'INTEGER', number: 'DOUBLE', date: 'DATE', timestamp: 'VARCHAR' };
  const select = columns.map((c) => `NULL::${sqlType[c.kind]} AS ${c.name}`).join(', ');
  return { sql: `SELECT ${select} WHERE false`, values: [], columns, order: '1', ...(patientColumn ? { patientColumn } : {}) };
}

function wrap<T>(what: string, work: () => Promise<T>): Promise<T> {
  return work().catch((error: unknown) => {
    if (error instanceof CairnError) throw error;
    throw new CairnError('WAREHOUSE_FAILED', `${what} failed: ${(error as Error).message}`, { cause: error });
  });
}

// ---------------------------------------------------------------------------------------------
// Patients: demographics and practitioner attribution, derived once per ingest state.
// ---------------------------------------------------------------------------------------------

/**
 * PATIENT_TABLE_SQL derives report_patient: name, gender, birth date and the attributed
 * practitioner, organization and location. Practitioner: the first Practitioner in
 * Patient.generalPractitioner, else a Practitioner participant of the patient's most recent
 * encounter (ties broken by encounter id). Organization: Patient.managingOrganization, else the
 * most recent encounter's serviceProvider. Location: the most recent encounter's first location.
 */
const PATIENT_TABLE_SQL = `
  CREATE OR REPLACE TABLE report_patient AS
  WITH gp AS (
    SELECT id AS patient_id,
      list_filter(CAST(json_extract_string(resource, '$.generalPractitioner[*].reference') AS VARCHAR[]), r -> r LIKE 'Practitioner/%')[1] AS ref
    FROM patient),
  enc AS (
    SELECT patient_id, ref FROM (
      SELECT patient_id,
        list_filter(CAST(json_extract_string(resource, '$.participant[*].individual.reference') AS VARCHAR[]), r -> r LIKE 'Practitioner/%')[1] AS ref,
        row_number() OVER (PARTITION BY patient_id ORDER BY effective_start DESC NULLS LAST, id) AS rn
      FROM encounter
      WHERE patient_id IS NOT NULL AND coalesce(status, '') NOT IN ('entered-in-error', 'cancelled')
        AND json_exists(resource, '$.participant'))
    WHERE rn = 1 AND ref IS NOT NULL),
  pr AS (
    SELECT id, coalesce(resource->>'$.name[0].text',
      concat_ws(' ', resource->>'$.name[0].prefix[0]', resource->>'$.name[0].given[0]', resource->>'$.name[0].family')) AS name
    FROM practitioner),
  last_enc AS (
    SELECT patient_id, org, loc FROM (
      SELECT patient_id, resource->>'$.serviceProvider.reference' AS org, resource->>'$.location[0].location.reference' AS loc,
        row_number() OVER (PARTITION BY patient_id ORDER BY effective_start DESC NULLS LAST, id) AS rn
      FROM encounter
      WHERE patient_id IS NOT NULL AND coalesce(status, '') NOT IN ('entered-in-error', 'cancelled'))
    WHERE rn = 1),
  org AS (SELECT id, resource->>'$.name' AS name FROM organization),
  loc AS (SELECT id, resource->>'$.name' AS name FROM location)
  SELECT p.id AS patient_id,
    nullif(concat_ws(' ', p.resource->>'$.name[0].given[0]', p.resource->>'$.name[0].family'), '') AS name,
    p.gender, p.birth_date,
    split_part(coalesce(gp.ref, enc.ref), '/', 2) AS practitioner_id,
    pr.name AS practitioner_name,
    CASE WHEN gp.ref IS NOT NULL THEN 'general-practitioner' WHEN enc.ref IS NOT NULL THEN 'last-encounter' END AS attribution,
    split_part(coalesce(CASE WHEN p.resource->>'$.managingOrganization.reference' LIKE 'Organization/%' THEN p.resource->>'$.managingOrganization.reference' END,
      CASE WHEN le.org LIKE 'Organization/%' THEN le.org END), '/', 2) AS organization_id,
    org.name AS organization_name,
    split_part(CASE WHEN le.loc LIKE 'Location/%' THEN le.loc END, '/', 2) AS location_id,
    loc.name AS location_name
  FROM patient p
  LEFT JOIN gp ON gp.patient_id = p.id
  LEFT JOIN enc ON enc.patient_id = p.id
  LEFT JOIN pr ON pr.id = split_part(coalesce(gp.ref, enc.ref), '/', 2)
  LEFT JOIN last_enc le ON le.patient_id = p.id
  LEFT JOIN org ON org.id = split_part(coalesce(CASE WHEN p.resource->>'$.managingOrganization.reference' LIKE 'Organization/%' THEN p.resource->>'$.managingOrganization.reference' END,
      CASE WHEN le.org LIKE 'Organization/%' THEN le.org END), '/', 2)
  LEFT JOIN loc ON loc.id = split_part(CASE WHEN le.loc LIKE 'Location/%' THEN le.loc END, '/', 2)`;

/** PATIENT_TABLE_VERSION changes with PATIENT_TABLE_SQL, so a stored report_patient of an older shape is rebuilt. */
const PATIENT_TABLE_VERSION = 'v2:';

/** ReportStore answers report queries; it owns the derived report tables and their refresh. */
export interface ReportStore {
  /** connection runs `work` on a connection of its own (closed afterwards), after refreshing derived tables. */
  withConnection<T>(work: (c: DuckDBConnection) => Promise<T>): Promise<T>;
  readonly warehouse: Warehouse;
}

/** createReportStore prepares the report tables (audit log) and returns the store. */
export async function createReportStore(warehouse: Warehouse): Promise<ReportStore> {
  await wrap('Creating the report tables', async () => {
    await warehouse.connection.run(`CREATE TABLE IF NOT EXISTS report_state (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)`);
    await warehouse.connection.run(`CREATE SEQUENCE IF NOT EXISTS report_access_audit_seq`);
    await warehouse.connection.run(AUDIT_TABLE_SQL);
  });
  let refreshing: Promise<void> | undefined;
  let knownState = '';
  const refresh = async (c: DuckDBConnection): Promise<void> => {
    const state = PATIENT_TABLE_VERSION + String((await queryRows(c, `SELECT (SELECT coalesce(max(run_id), 0) FROM ingest_run)::VARCHAR || ':' || (SELECT count(*) FROM patient)::VARCHAR || ':' || (SELECT count(*) FROM encounter)::VARCHAR AS s`))[0]?.s);
    if (state === knownState) return;
    const stored = await queryRows(c, `SELECT value FROM report_state WHERE key = 'report_patient'`);
    const exists = await tableExists(c, 'report_patient');
    if (!exists || stored[0]?.value !== state) {
      await c.run('BEGIN TRANSACTION');
      try {
        await c.run(PATIENT_TABLE_SQL);
        await c.run(`INSERT OR REPLACE INTO report_state VALUES ('report_patient', $1)`, [state]);
        await c.run('COMMIT');
      } catch (error) {
        await c.run('ROLLBACK');
        throw error;
      }
    }
    knownState = state;
  };
  return {
    warehouse,
    async withConnection(work) {
      const c = await warehouse.connect();
      try {
        // One refresh at a time: concurrent requests wait for the same rebuild.
        refreshing ??= wrap('Refreshing report_patient', () => refresh(c)).finally(() => { refreshing = undefined; });
        await refreshing;
        return await work(c);
      } finally {
        c.closeSync();
      }
    },
  };
}

/** tableExists tells whether `name` exists in the main schema. */
export async function tableExists(c: DuckDBConnection, name: string): Promise<boolean> {
  const rows = await queryRows(c, `SELECT count(*)::INTEGER AS n FROM information_schema.tables WHERE table_name = $1`, [name]);
  return Number(rows[0]?.n ?? 0) > 0;
}

// ---------------------------------------------------------------------------------------------
// Pages and counts over any list.
// ---------------------------------------------------------------------------------------------

/** readPage returns one page of `list` in its stable order, with the total (and distinct patients). */
export async function readPage(c: DuckDBConnection, list: ListQuery, page: { limit: number; offset: number }): Promise<Page> {
  return wrap('Reading a report page', async () => {
    const limit = Math.max(0, Math.min(10_000, Math.trunc(page.limit)));
    const offset = Math.max(0, Math.trunc(page.offset));
    const items = await queryRows(c, `SELECT * FROM (${list.sql}) ORDER BY ${list.order} LIMIT ${limit} OFFSET ${offset}`, list.values);
    const patients = list.patientColumn ? `, count(DISTINCT ${list.patientColumn})::INTEGER AS patients` : '';
    const counts = await queryRows(c, `SELECT count(*)::INTEGER AS total${patients} FROM (${list.sql})`, list.values);
    return {
      items: items.map(plain),
      total: Number(counts[0]?.total ?? 0),
      ...(list.patientColumn ? { patients: Number(counts[0]?.patients ?? 0) } : {}),
    };
  });
}

/** countList returns the rows and distinct patients of a whole list (for export audit). */
export async function countList(c: DuckDBConnection, list: ListQuery): Promise<{ rows: number; patients: number }> {
  const patients = list.patientColumn ? `count(DISTINCT ${list.patientColumn})::INTEGER` : '0';
  const rows = await queryRows(c, `SELECT count(*)::INTEGER AS n, ${patients} AS p FROM (${list.sql})`, list.values);
  return { rows: Number(rows[0]?.n ?? 0), patients: Number(rows[0]?.p ?? 0) };
}

/** plain turns DuckDB JS values into JSON-ready ones (bigint -> number, Date -> ISO date). */
function plain(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) {
    if (typeof value === 'bigint') out[key] = Number(value);
    else if (value instanceof Date) out[key] = value.toISOString().slice(0, 10);
    else out[key] = value;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Runs.
// ---------------------------------------------------------------------------------------------

export interface RunRef {
  readonly runId: string;
  readonly evaluatedAt: string;
  readonly patients: number;
}

/** resolveRun returns the named run, or the latest published one for `latest`; null when none. */
export async function resolveRun(c: DuckDBConnection, runId: string | undefined): Promise<RunRef | null> {
  if (!(await tableExists(c, 'batch_run'))) return null;
  const where = runId && runId !== 'latest' ? `run_id = $1` : `status = 'published'`;
  const rows = await queryRows(c, `SELECT run_id, ${iso('evaluated_at')} AS evaluated_at, patients FROM batch_run WHERE ${where} ORDER BY finished_at DESC, run_id DESC LIMIT 1`, runId && runId !== 'latest' ? [runId] : []);
  const row = rows[0];
  return row ? { runId: String(row.run_id), evaluatedAt: String(row.evaluated_at), patients: Number(row.patients) } : null;
}

export const RUN_COLUMNS: readonly ListColumn[] = [
  { name: 'run_id', kind: 'string' }, { name: 'status', kind: 'string' }, { name: 'started_at', kind: 'timestamp' },
  { name: 'finished_at', kind: 'timestamp' }, { name: 'duration_ms', kind: 'integer' }, { name: 'evaluated_at', kind: 'timestamp' },
  { name: 'knowledge_version', kind: 'string' }, { name: 'data_snapshot', kind: 'string' }, { name: 'patients', kind: 'integer' },
  { name: 'alerts', kind: 'integer' }, { name: 'care_gaps', kind: 'integer' }, { name: 'errors', kind: 'integer' },
];

/** runList lists batch runs, newest first. */
export async function runList(c: DuckDBConnection): Promise<ListQuery> {
  if (!(await tableExists(c, 'batch_run'))) return emptyList(RUN_COLUMNS);
  return {
    sql: `SELECT run_id, status, ${iso('started_at')} AS started_at, ${iso('finished_at')} AS finished_at,
            (epoch_ms(finished_at) - epoch_ms(started_at))::INTEGER AS duration_ms, ${iso('evaluated_at')} AS evaluated_at,
            knowledge_version, data_snapshot, patients, alerts, care_gaps, errors
          FROM batch_run`,
    values: [],
    columns: RUN_COLUMNS,
    order: 'finished_at DESC, run_id DESC',
  };
}

export const RUN_ERROR_COLUMNS: readonly ListColumn[] = [
  { name: 'run_id', kind: 'string' }, { name: 'rule_id', kind: 'string' }, { name: 'patient_id', kind: 'string' }, { name: 'message', kind: 'string' },
];

/** runErrorList lists a run's per-patient rule errors (patient-level). */
export function runErrorList(run: RunRef | null, filters: { ruleId?: readonly string[] }): ListQuery {
  if (!run) return emptyList(RUN_ERROR_COLUMNS, 'patient_id');
  const values: SqlValue[] = [run.runId];
  const where = [`run_id = $1`, ...inList('rule_id', filters.ruleId, values)];
  return { sql: `SELECT run_id, rule_id, patient_id, message FROM batch_error WHERE ${where.join(' AND ')}`, values, columns: RUN_ERROR_COLUMNS, order: 'rule_id, patient_id, message', patientColumn: 'patient_id' };
}

export const RUN_ERROR_SUMMARY_COLUMNS: readonly ListColumn[] = [
  { name: 'rule_id', kind: 'string' }, { name: 'errors', kind: 'integer' }, { name: 'patients', kind: 'integer' }, { name: 'example', kind: 'string' },
];

/** runErrorSummary counts a run's errors per rule with one example message (no patient ids). */
export function runErrorSummary(run: RunRef | null): ListQuery {
  if (!run) return emptyList(RUN_ERROR_SUMMARY_COLUMNS);
  return {
    sql: `SELECT rule_id, count(*)::INTEGER AS errors, count(DISTINCT patient_id)::INTEGER AS patients, min(message) AS example FROM batch_error WHERE run_id = $1 GROUP BY rule_id`,
    values: [run.runId], columns: RUN_ERROR_SUMMARY_COLUMNS, order: 'errors DESC, rule_id',
  };
}

function inList(column: string, items: readonly string[] | undefined, values: SqlValue[]): string[] {
  if (!items || items.length === 0) return [];
  const placeholders = items.map((item) => {
    values.push(item);
    return `$${values.length}`;
  });
  return [`${column} IN (${placeholders.join(', ')})`];
}

function param(values: SqlValue[], value: SqlValue): string {
  values.push(value);
  return `$${values.length}`;
}

// ---------------------------------------------------------------------------------------------
// Care gaps and alerts of a run.
// ---------------------------------------------------------------------------------------------

export interface PatientFilters {
  readonly ruleId?: readonly string[];
  /** practitionerId filters by attributed practitioner; `none` selects unattributed patients. */
  readonly practitionerId?: string;
  readonly ageMin?: number;
  readonly ageMax?: number;
}

export interface CareGapFilters extends PatientFilters {
  readonly measure?: readonly string[];
  readonly dueFrom?: string;
  readonly dueTo?: string;
}

export type SortDirection = 'asc' | 'desc';

export const CARE_GAP_COLUMNS: readonly ListColumn[] = [
  { name: 'gap_id', kind: 'string' }, { name: 'run_id', kind: 'string' }, { name: 'rule_id', kind: 'string' }, { name: 'rule_version', kind: 'string' },
  { name: 'measure', kind: 'string' }, { name: 'guideline', kind: 'string' }, { name: 'missing', kind: 'string' }, { name: 'due_date', kind: 'date' },
  { name: 'patient_id', kind: 'string' }, { name: 'patient_name', kind: 'string' }, { name: 'gender', kind: 'string' }, { name: 'birth_date', kind: 'date' },
  { name: 'age', kind: 'integer' }, { name: 'practitioner_id', kind: 'string' }, { name: 'practitioner_name', kind: 'string' }, { name: 'attribution', kind: 'string' },
];

/** CARE_GAP_SORTS maps the sort keys the API accepts to columns; gap_id always breaks ties. */
export const CARE_GAP_SORTS = { due_date: 'due_date', rule: 'rule_id', measure: 'measure', age: 'age', practitioner: 'practitioner_name', patient: 'patient_name' } as const;
export type CareGapSort = keyof typeof CARE_GAP_SORTS;

const AGE = `date_part('year', age((r.evaluated_at AT TIME ZONE 'UTC')::DATE, p.birth_date))::INTEGER`;

function patientWhere(filters: PatientFilters, values: SqlValue[], prefix: string): string[] {
  const where = inList(`${prefix}.rule_id`, filters.ruleId, values);
  if (filters.practitionerId === 'none') where.push(`p.practitioner_id IS NULL`);
  else if (filters.practitionerId) where.push(`p.practitioner_id = ${param(values, filters.practitionerId)}`);
  if (filters.ageMin !== undefined) where.push(`${AGE} >= ${param(values, filters.ageMin)}`);
  if (filters.ageMax !== undefined) where.push(`${AGE} <= ${param(values, filters.ageMax)}`);
  return where;
}

/** careGapList lists a run's open care gaps with patient, age at evaluation and attributed practitioner. */
export function careGapList(run: RunRef | null, filters: CareGapFilters, sort: { by: CareGapSort; direction: SortDirection }): ListQuery {
  if (!run) return emptyList(CARE_GAP_COLUMNS, 'patient_id');
  const values: SqlValue[] = [run.runId];
  const where = [`g.run_id = $1`, ...patientWhere(filters, values, 'g'), ...inList('g.measure', filters.measure, values)];
  if (filters.dueFrom) where.push(`g.due_date >= ${param(values, filters.dueFrom)}::DATE`);
  if (filters.dueTo) where.push(`g.due_date <= ${param(values, filters.dueTo)}::DATE`);
  return {
    sql: `SELECT g.id AS gap_id, g.run_id, g.rule_id, g.rule_version, g.measure, g.guideline, g.missing, g.due_date, g.patient_id,
            p.name AS patient_name, p.gender, p.birth_date, ${AGE} AS age, p.practitioner_id, p.practitioner_name, p.attribution
          FROM batch_care_gap g JOIN batch_run r ON r.run_id = g.run_id LEFT JOIN report_patient p ON p.patient_id = g.patient_id
          WHERE ${where.join(' AND ')}`,
    values,
    columns: CARE_GAP_COLUMNS,
    order: `${CARE_GAP_SORTS[sort.by]} ${sort.direction === 'desc' ? 'DESC' : 'ASC'} NULLS LAST, gap_id`,
    patientColumn: 'patient_id',
  };
}

export const ALERT_COLUMNS: readonly ListColumn[] = [
  { name: 'alert_id', kind: 'string' }, { name: 'run_id', kind: 'string' }, { name: 'rule_id', kind: 'string' }, { name: 'rule_version', kind: 'string' },
  { name: 'severity', kind: 'string' }, { name: 'message', kind: 'string' }, { name: 'category', kind: 'string' },
  { name: 'patient_id', kind: 'string' }, { name: 'patient_name', kind: 'string' }, { name: 'age', kind: 'integer' },
  { name: 'practitioner_id', kind: 'string' }, { name: 'practitioner_name', kind: 'string' },
];

export const ALERT_SORTS = { severity: `CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END`, rule: 'rule_id', age: 'age', practitioner: 'practitioner_name', patient: 'patient_name' } as const;
export type AlertSort = keyof typeof ALERT_SORTS;

/** alertList lists a run's alerts with patient and attributed practitioner. */
export function alertList(run: RunRef | null, filters: PatientFilters & { severity?: readonly string[] }, sort: { by: AlertSort; direction: SortDirection }): ListQuery {
  if (!run) return emptyList(ALERT_COLUMNS, 'patient_id');
  const values: SqlValue[] = [run.runId];
  const where = [`a.run_id = $1`, ...patientWhere(filters, values, 'a'), ...inList('a.severity', filters.severity, values)];
  return {
    sql: `SELECT a.id AS alert_id, a.run_id, a.rule_id, a.rule_version, a.severity, a.message, a.category, a.patient_id,
            p.name AS patient_name, ${AGE} AS age, p.practitioner_id, p.practitioner_name
          FROM batch_alert a JOIN batch_run r ON r.run_id = a.run_id LEFT JOIN report_patient p ON p.patient_id = a.patient_id
          WHERE ${where.join(' AND ')}`,
    values,
    columns: ALERT_COLUMNS,
    order: `${ALERT_SORTS[sort.by]} ${sort.direction === 'desc' ? 'DESC' : 'ASC'} NULLS LAST, alert_id`,
    patientColumn: 'patient_id',
  };
}

export const PRACTITIONER_COLUMNS: readonly ListColumn[] = [
  { name: 'practitioner_id', kind: 'string' }, { name: 'practitioner_name', kind: 'string' }, { name: 'patients', kind: 'integer' },
];

/** practitionerList lists attributed practitioners with their patient counts (for filters). */
export function practitionerList(): ListQuery {
  return {
    sql: `SELECT practitioner_id, any_value(practitioner_name) AS practitioner_name, count(*)::INTEGER AS patients
          FROM report_patient WHERE practitioner_id IS NOT NULL GROUP BY practitioner_id`,
    values: [], columns: PRACTITIONER_COLUMNS, order: 'practitioner_name, practitioner_id',
  };
}

// ---------------------------------------------------------------------------------------------
// Trends over runs (overview tiles) and rule statistics.
// ---------------------------------------------------------------------------------------------

export const RULE_TREND_COLUMNS: readonly ListColumn[] = [
  { name: 'run_id', kind: 'string' }, { name: 'evaluated_at', kind: 'timestamp' }, { name: 'rule_id', kind: 'string' },
  { name: 'kind', kind: 'string' }, { name: 'count', kind: 'integer' }, { name: 'patients_flagged', kind: 'integer' }, { name: 'patients', kind: 'integer' },
];

/** ruleTrendList counts alerts and care gaps per rule in each of the last `runs` published runs. */
export async function ruleTrendList(c: DuckDBConnection, runs: number): Promise<ListQuery> {
  if (!(await tableExists(c, 'batch_run'))) return emptyList(RULE_TREND_COLUMNS);
  return {
    sql: `WITH runs AS (SELECT run_id, evaluated_at, finished_at, patients FROM batch_run WHERE status = 'published' ORDER BY finished_at DESC LIMIT ${Math.max(1, Math.min(366, Math.trunc(runs)))}),
          results AS (
            SELECT run_id, rule_id, 'alert' AS kind, patient_id FROM batch_alert WHERE run_id IN (SELECT run_id FROM runs)
            UNION ALL SELECT run_id, rule_id, 'care-gap', patient_id FROM batch_care_gap WHERE run_id IN (SELECT run_id FROM runs)),
          rules AS (SELECT DISTINCT rule_id, kind FROM results)
          SELECT r.run_id, ${iso('r.evaluated_at')} AS evaluated_at, k.rule_id, k.kind,
            count(x.patient_id)::INTEGER AS count, count(DISTINCT x.patient_id)::INTEGER AS patients_flagged, any_value(r.patients)::INTEGER AS patients
          FROM runs r CROSS JOIN rules k LEFT JOIN results x ON x.run_id = r.run_id AND x.rule_id = k.rule_id AND x.kind = k.kind
          GROUP BY r.run_id, r.evaluated_at, k.rule_id, k.kind`,
    values: [],
    columns: RULE_TREND_COLUMNS,
    order: 'rule_id, kind, evaluated_at, run_id',
  };
}

export interface DayRange {
  readonly from: string;
  readonly to: string;
}

export const RULE_STATS_COLUMNS: readonly ListColumn[] = [
  { name: 'rule_id', kind: 'string' }, { name: 'cards_shown', kind: 'integer' }, { name: 'cards_with_feedback', kind: 'integer' },
  { name: 'accepted', kind: 'integer' }, { name: 'overridden', kind: 'integer' }, { name: 'acceptance_rate', kind: 'number' },
  { name: 'override_rate', kind: 'number' }, { name: 'alerts_latest_run', kind: 'integer' }, { name: 'care_gaps_latest_run', kind: 'integer' },
];

/**
 * ruleStatsList summarises each rule over a day range: cards shown (cds_card), feedback on them
 * (cds_feedback: a card's latest outcome counts once), and its alerts and gaps in the latest run.
 * Rates are over cards shown, so cards nobody answered lower both.
 */
export async function ruleStatsList(c: DuckDBConnection, range: DayRange, latest: RunRef | null): Promise<ListQuery> {
  const hasCards = await tableExists(c, 'cds_card');
  const hasFeedback = hasCards && (await tableExists(c, 'cds_feedback'));
  const values: SqlValue[] = [range.from, range.to];
  const cards = hasCards
    ? `SELECT rule_id, uuid FROM cds_card WHERE (issued_at AT TIME ZONE 'UTC')::DATE BETWEEN $1::DATE AND $2::DATE`
    : `SELECT NULL::VARCHAR AS rule_id, NULL::VARCHAR AS uuid WHERE false`;
  const outcomes = hasFeedback
    ? `SELECT card_uuid, arg_max(outcome, outcome_timestamp) AS outcome FROM cds_feedback GROUP BY card_uuid`
    : `SELECT NULL::VARCHAR AS card_uuid, NULL::VARCHAR AS outcome WHERE false`;
  const batch = latest
    ? `SELECT rule_id, sum(a)::INTEGER AS alerts, sum(g)::INTEGER AS gaps FROM (
         SELECT rule_id, 1 AS a, 0 AS g FROM batch_alert WHERE run_id = ${param(values, latest.runId)}
         UNION ALL SELECT rule_id, 0, 1 FROM batch_care_gap WHERE run_id = $${values.length}) GROUP BY rule_id`
    : `SELECT NULL::VARCHAR AS rule_id, 0 AS alerts, 0 AS gaps WHERE false`;
  return {
    sql: `WITH cards AS (${cards}), outcomes AS (${outcomes}), batch AS (${batch}),
          shown AS (
            SELECT k.rule_id, count(*)::INTEGER AS cards_shown, count(o.outcome)::INTEGER AS cards_with_feedback,
              count(*) FILTER (WHERE o.outcome = 'accepted')::INTEGER AS accepted,
              count(*) FILTER (WHERE o.outcome = 'overridden')::INTEGER AS overridden
            FROM cards k LEFT JOIN outcomes o ON o.card_uuid = k.uuid GROUP BY k.rule_id)
          SELECT coalesce(s.rule_id, b.rule_id) AS rule_id, coalesce(s.cards_shown, 0) AS cards_shown,
            coalesce(s.cards_with_feedback, 0) AS cards_with_feedback, coalesce(s.accepted, 0) AS accepted, coalesce(s.overridden, 0) AS overridden,
            CASE WHEN s.cards_shown > 0 THEN round(s.accepted / s.cards_shown, 4) END AS acceptance_rate,
            CASE WHEN s.cards_shown > 0 THEN round(s.overridden / s.cards_shown, 4) END AS override_rate,
            coalesce(b.alerts, 0) AS alerts_latest_run, coalesce(b.gaps, 0) AS care_gaps_latest_run
          FROM shown s FULL JOIN batch b ON b.rule_id = s.rule_id`,
    values,
    columns: RULE_STATS_COLUMNS,
    order: 'rule_id',
  };
}

export const RULE_DAILY_COLUMNS: readonly ListColumn[] = [
  { name: 'rule_id', kind: 'string' }, { name: 'day', kind: 'date' }, { name: 'cards_shown', kind: 'integer' },
  { name: 'accepted', kind: 'integer' }, { name: 'overridden', kind: 'integer' }, { name: 'alerts', kind: 'integer' }, { name: 'care_gaps', kind: 'integer' },
];

/**
 * ruleDailyList gives per rule and day: cards shown and the feedback on them (by the day the card
 * was shown), and batch alerts and care gaps of the last published run evaluated that day.
 */
export async function ruleDailyList(c: DuckDBConnection, range: DayRange): Promise<ListQuery> {
  const hasCards = await tableExists(c, 'cds_card');
  const hasFeedback = hasCards && (await tableExists(c, 'cds_feedback'));
  const hasRuns = await tableExists(c, 'batch_run');
  const cards = hasCards
    ? `SELECT k.rule_id, (k.issued_at AT TIME ZONE 'UTC')::DATE AS day, count(*)::INTEGER AS cards_shown,
         count(*) FILTER (WHERE o.outcome = 'accepted')::INTEGER AS accepted, count(*) FILTER (WHERE o.outcome = 'overridden')::INTEGER AS overridden
       FROM cds_card k LEFT JOIN (${hasFeedback ? `SELECT card_uuid, arg_max(outcome, outcome_timestamp) AS outcome FROM cds_feedback GROUP BY card_uuid` : `SELECT NULL::VARCHAR AS card_uuid, NULL::VARCHAR AS outcome WHERE false`}) o ON o.card_uuid = k.uuid
       WHERE (k.issued_at AT TIME ZONE 'UTC')::DATE BETWEEN $1::DATE AND $2::DATE GROUP BY ALL`
    : `SELECT NULL::VARCHAR AS rule_id, NULL::DATE AS day, 0 AS cards_shown, 0 AS accepted, 0 AS overridden WHERE false`;
  const batch = hasRuns
    ? `WITH runs AS (
         SELECT run_id, day FROM (SELECT run_id, (evaluated_at AT TIME ZONE 'UTC')::DATE AS day,
           row_number() OVER (PARTITION BY (evaluated_at AT TIME ZONE 'UTC')::DATE ORDER BY finished_at DESC, run_id DESC) AS rn
           FROM batch_run WHERE status = 'published') WHERE rn = 1 AND day BETWEEN $1::DATE AND $2::DATE)
       SELECT rule_id, day, sum(a)::INTEGER AS alerts, sum(g)::INTEGER AS care_gaps FROM (
         SELECT x.rule_id, r.day, 1 AS a, 0 AS g FROM batch_alert x JOIN runs r USING (run_id)
         UNION ALL SELECT x.rule_id, r.day, 0, 1 FROM batch_care_gap x JOIN runs r USING (run_id)) GROUP BY ALL`
    : `SELECT NULL::VARCHAR AS rule_id, NULL::DATE AS day, 0 AS alerts, 0 AS care_gaps WHERE false`;
  return {
    sql: `SELECT coalesce(k.rule_id, b.rule_id) AS rule_id, coalesce(k.day, b.day) AS day, coalesce(k.cards_shown, 0)::INTEGER AS cards_shown,
            coalesce(k.accepted, 0)::INTEGER AS accepted, coalesce(k.overridden, 0)::INTEGER AS overridden,
            coalesce(b.alerts, 0)::INTEGER AS alerts, coalesce(b.care_gaps, 0)::INTEGER AS care_gaps
          FROM (${cards}) k FULL JOIN (${batch}) b ON b.rule_id = k.rule_id AND b.day = k.day`,
    values: [range.from, range.to],
    columns: RULE_DAILY_COLUMNS,
    order: 'rule_id, day',
  };
}

export const OVERRIDE_REASON_COLUMNS: readonly ListColumn[] = [
  { name: 'rule_id', kind: 'string' }, { name: 'override_system', kind: 'string' }, { name: 'override_code', kind: 'string' },
  { name: 'override_display', kind: 'string' }, { name: 'count', kind: 'integer' },
];

/** overrideReasonList counts override reasons per rule for cards shown in the range. */
export async function overrideReasonList(c: DuckDBConnection, range: DayRange): Promise<ListQuery> {
  if (!(await tableExists(c, 'cds_feedback')) || !(await tableExists(c, 'cds_card'))) return emptyList(OVERRIDE_REASON_COLUMNS);
  return {
    sql: `SELECT k.rule_id, f.override_system, coalesce(f.override_code, '(none given)') AS override_code, any_value(f.override_display) AS override_display, count(*)::INTEGER AS count
          FROM cds_feedback f JOIN cds_card k ON k.uuid = f.card_uuid
          WHERE f.outcome = 'overridden' AND (k.issued_at AT TIME ZONE 'UTC')::DATE BETWEEN $1::DATE AND $2::DATE
          GROUP BY k.rule_id, f.override_system, coalesce(f.override_code, '(none given)')`,
    values: [range.from, range.to],
    columns: OVERRIDE_REASON_COLUMNS,
    order: 'rule_id, count DESC, override_code',
  };
}

// ---------------------------------------------------------------------------------------------
// Access audit.
// ---------------------------------------------------------------------------------------------

const AUDIT_TABLE_SQL = `CREATE TABLE IF NOT EXISTS report_access_audit (
  seq BIGINT NOT NULL DEFAULT nextval('report_access_audit_seq'), accessed_at TIMESTAMPTZ NOT NULL, user_name VARCHAR NOT NULL, role VARCHAR NOT NULL, action VARCHAR NOT NULL,
  resource VARCHAR NOT NULL, query JSON NOT NULL, rows INTEGER NOT NULL, patients INTEGER NOT NULL, remote VARCHAR)`;

export interface AccessRecord {
  readonly at: string;
  readonly user: string;
  readonly role: string;
  /** action is `list` (a JSON page) or `export.csv` / `export.parquet` / `export.arrow`. */
  readonly action: string;
  /** resource is the list read, e.g. `care-gaps`. */
  readonly resource: string;
  readonly query: Readonly<Record<string, unknown>>;
  readonly rows: number;
  readonly patients: number;
  readonly remote?: string;
}

/** recordAccess appends one patient-level access to report_access_audit (before the data leaves). */
export async function recordAccess(c: DuckDBConnection, record: AccessRecord): Promise<void> {
  await wrap('Recording report access', async () => {
    await c.run(`INSERT INTO report_access_audit (accessed_at, user_name, role, action, resource, query, rows, patients, remote)
      VALUES ($1::TIMESTAMPTZ, $2, $3, $4, $5, $6::JSON, $7, $8, $9)`, [
      record.at, record.user, record.role, record.action, record.resource, JSON.stringify(record.query), record.rows, record.patients, record.remote ?? null,
    ]);
  });
}

export const AUDIT_COLUMNS: readonly ListColumn[] = [
  { name: 'seq', kind: 'integer' }, { name: 'accessed_at', kind: 'timestamp' }, { name: 'user_name', kind: 'string' }, { name: 'role', kind: 'string' }, { name: 'action', kind: 'string' },
  { name: 'resource', kind: 'string' }, { name: 'query', kind: 'string' }, { name: 'rows', kind: 'integer' }, { name: 'patients', kind: 'integer' },
  { name: 'remote', kind: 'string' },
];

/** auditList lists the access audit, newest first. */
export function auditList(filters: { user?: string }): ListQuery {
  const values: SqlValue[] = [];
  const where = filters.user ? `WHERE user_name = ${param(values, filters.user)}` : '';
  return {
    sql: `SELECT seq::INTEGER AS seq, ${iso('accessed_at')} AS accessed_at, user_name, role, action, resource, query::VARCHAR AS query, rows, patients, remote FROM report_access_audit ${where}`,
    values, columns: AUDIT_COLUMNS, order: 'seq DESC',
  };
}
