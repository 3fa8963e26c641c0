/**
 * The measure side of the report SQL: lists over the MeasureReports the nightly run stores in
 * batch_measure_report (one `individual` report per patient and measure, one `summary` and one
 * `subject-list` per measure and run) and the measure care gaps in batch_care_gap
 * (`rule_id = 'measure:<id>'`, DEQM DetectedIssue in `detected_issue`). Reports are read with
 * DuckDB's JSON functions, so the stored FHIR JSON stays the single source of every number.
 * A measure is named by its id: the last path segment of its canonical, without `|version`.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { queryRows } from './database.ts';
import { emptyList, tableExists, type ListColumn, type ListQuery, type RunRef, type SqlValue } from './reports.ts';

/** The measure-population codes a report group can carry, in report order. */
export const POPULATIONS = ['initial-population', 'denominator', 'denominator-exclusion', 'denominator-exception', 'numerator', 'numerator-exclusion'] as const;
export type Population = (typeof POPULATIONS)[number];

/** Column name of each population (`denominator-exclusion` -> `denominator_exclusion`). */
export const populationColumn = (code: Population): string => code.replaceAll('-', '_');

const POPULATION_COLUMNS: readonly ListColumn[] = POPULATIONS.map((code) => ({ name: populationColumn(code), kind: 'integer' }));

/** MEASURE_ID is the SQL of a measure's id from its canonical (`…/Measure/<id>|<version>`). */
const MEASURE_ID = (column: string): string => `regexp_extract(${column}, '([^/|]+)(\\|[^|]*)?$', 1)`;

/** Population counts of a report group or stratum (JSON `scope`), one column per population. */
function populationCounts(scope: string): string {
  const codes = `CAST(json_extract_string(${scope}, '$.population[*].code.coding[0].code') AS VARCHAR[])`;
  const counts = `CAST(json_extract(${scope}, '$.population[*].count') AS INTEGER[])`;
  return POPULATIONS.map((code) => `coalesce(${counts}[list_position(${codes}, '${code}')], 0)::INTEGER AS ${populationColumn(code)}`).join(', ');
}

/** SCORE is the proportion score over population columns (sums allowed): null without a scored denominator. */
const score = (sum: (column: string) => string): string => {
  const d = `(${sum('denominator')} - ${sum('denominator_exclusion')} - ${sum('denominator_exception')})`;
  return `CASE WHEN ${d} > 0 THEN (${sum('numerator')} - ${sum('numerator_exclusion')}) / ${d} END`;
};

const iso = (column: string): string => `strftime(${column} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ')`;
const AGE = `date_part('year', age((r.evaluated_at AT TIME ZONE 'UTC')::DATE, p.birth_date))::INTEGER`;

function param(values: SqlValue[], value: SqlValue): string {
  values.push(value);
  return `$${values.length}`;
}

/** hasMeasureReports tells whether the batch has ever stored MeasureReports here. */
export async function hasMeasureReports(c: DuckDBConnection): Promise<boolean> {
  return (await tableExists(c, 'batch_measure_report')) && (await tableExists(c, 'batch_run'));
}

// ---------------------------------------------------------------------------------------------
// Summaries per run (tiles, trends).
// ---------------------------------------------------------------------------------------------

export const MEASURE_SUMMARY_COLUMNS: readonly ListColumn[] = [
  { name: 'run_id', kind: 'string' }, { name: 'evaluated_at', kind: 'timestamp' }, { name: 'measure_id', kind: 'string' }, { name: 'measure', kind: 'string' },
  { name: 'report_id', kind: 'string' }, { name: 'group_id', kind: 'string' }, { name: 'period_start', kind: 'string' }, { name: 'period_end', kind: 'string' },
  { name: 'improvement_notation', kind: 'string' }, ...POPULATION_COLUMNS, { name: 'score', kind: 'number' },
];

/**
 * measureSummaryList flattens the summary MeasureReports of the last `runs` published runs to one
 * row per run, measure and group: population counts, measureScore and improvement notation (the
 * group's cqfm-improvementNotation, else the report's, else `increase`).
 */
export async function measureSummaryList(c: DuckDBConnection, runs: number, filter: { measureId?: string; runId?: string } = {}): Promise<ListQuery> {
  if (!(await hasMeasureReports(c))) return emptyList(MEASURE_SUMMARY_COLUMNS);
  const values: SqlValue[] = [];
  const where = [`m.type = 'summary'`];
  if (filter.measureId) where.push(`${MEASURE_ID('m.measure')} = ${param(values, filter.measureId)}`);
  const runWhere = filter.runId ? `run_id = ${param(values, filter.runId)}` : `status = 'published'`;
  return {
    sql: `WITH runs AS (SELECT run_id, evaluated_at, finished_at FROM batch_run WHERE ${runWhere} ORDER BY finished_at DESC, run_id DESC LIMIT ${Math.max(1, Math.min(366, Math.trunc(runs)))}),
          g AS (SELECT m.run_id, m.measure, m.report, unnest(CAST(json_extract(m.report, '$.group[*]') AS JSON[])) AS g
                FROM batch_measure_report m JOIN runs USING (run_id) WHERE ${where.join(' AND ')})
          SELECT g.run_id, ${iso('r.evaluated_at')} AS evaluated_at, ${MEASURE_ID('g.measure')} AS measure_id, g.measure, g.report->>'$.id' AS report_id,
            g.g->>'$.id' AS group_id, g.report->>'$.period.start' AS period_start, g.report->>'$.period.end' AS period_end,
            coalesce(json_extract_string(list_filter(CAST(json_extract(g.g, '$.extension[*]') AS JSON[]), e -> json_extract_string(e, '$.url') LIKE '%/cqfm-improvementNotation')[1], '$.valueCodeableConcept.coding[0].code'),
              g.report->>'$.improvementNotation.coding[0].code', 'increase') AS improvement_notation,
            ${populationCounts('g.g')}, TRY_CAST(g.g->>'$.measureScore.value' AS DOUBLE) AS score
          FROM g JOIN runs r ON r.run_id = g.run_id`,
    values,
    columns: MEASURE_SUMMARY_COLUMNS,
    order: 'measure_id, group_id, evaluated_at, run_id',
  };
}

/** measureReportRows returns stored population reports (summary or subject-list) of a measure, newest run first. */
export async function measureReportRows(c: DuckDBConnection, measureId: string, options: { type: 'summary' | 'subject-list'; runId?: string; runs: number }): Promise<{ runId: string; evaluatedAt: string; report: unknown }[]> {
  if (!(await hasMeasureReports(c))) return [];
  const values: SqlValue[] = [measureId, options.type];
  const runWhere = options.runId ? `r.run_id = ${param(values, options.runId)}` : `r.status = 'published'`;
  const rows = await queryRows(c, `SELECT r.run_id, ${iso('r.evaluated_at')} AS evaluated_at, m.report::VARCHAR AS report
    FROM batch_measure_report m JOIN batch_run r ON r.run_id = m.run_id
    WHERE ${MEASURE_ID('m.measure')} = $1 AND m.type = $2 AND ${runWhere}
    ORDER BY r.finished_at DESC, r.run_id DESC LIMIT ${Math.max(1, Math.min(366, Math.trunc(options.runs)))}`, values);
  return rows.map((row) => ({ runId: String(row.run_id), evaluatedAt: String(row.evaluated_at), report: JSON.parse(String(row.report)) as unknown }));
}

// ---------------------------------------------------------------------------------------------
// Breakdowns: by stratum (the summary's stratifiers) and by attribution (individual reports).
// ---------------------------------------------------------------------------------------------

export const BREAKDOWNS = ['stratum', 'practitioner', 'organization', 'location'] as const;
export type Breakdown = (typeof BREAKDOWNS)[number];

export const MEASURE_BREAKDOWN_COLUMNS: readonly ListColumn[] = [
  { name: 'run_id', kind: 'string' }, { name: 'measure_id', kind: 'string' }, { name: 'group_id', kind: 'string' }, { name: 'dimension', kind: 'string' },
  { name: 'stratifier_id', kind: 'string' }, { name: 'stratifier', kind: 'string' }, { name: 'key', kind: 'string' }, { name: 'label', kind: 'string' },
  ...POPULATION_COLUMNS, { name: 'score', kind: 'number' },
];

/** A stratum's key: its value's first code, else its text (`true` for boolean stratifiers). */
const STRATUM_KEY = (stratum: string): string => `coalesce(json_extract_string(${stratum}, '$.value.coding[0].code'), json_extract_string(${stratum}, '$.value.text'))`;
const STRATUM_LABEL = (stratum: string): string => `coalesce(json_extract_string(${stratum}, '$.value.coding[0].display'), json_extract_string(${stratum}, '$.value.text'), json_extract_string(${stratum}, '$.value.coding[0].code'))`;

/** The individual reports of a measure in a run, one row per patient and group (`g`: the group JSON). */
function individualGroups(values: SqlValue[], run: RunRef, measureId: string, groupId: string | undefined): string {
  const groupWhere = groupId ? `WHERE g->>'$.id' = ${param(values, groupId)}` : '';
  return `SELECT * FROM (
      SELECT m.run_id, m.measure, m.patient_id, m.report->>'$.id' AS report_id, unnest(CAST(json_extract(m.report, '$.group[*]') AS JSON[])) AS g
      FROM batch_measure_report m
      WHERE m.run_id = ${param(values, run.runId)} AND m.type = 'individual' AND ${MEASURE_ID('m.measure')} = ${param(values, measureId)}) ${groupWhere}`;
}

const ATTRIBUTION: Readonly<Record<Exclude<Breakdown, 'stratum'>, { id: string; name: string; none: string }>> = {
  practitioner: { id: 'p.practitioner_id', name: 'p.practitioner_name', none: 'Not attributed' },
  organization: { id: 'p.organization_id', name: 'p.organization_name', none: 'No organization' },
  location: { id: 'p.location_id', name: 'p.location_name', none: 'No location' },
};

/**
 * measureBreakdownList gives a measure's populations and rate per stratum (from the run's summary
 * report) or per attributed practitioner, organization or location (the individual reports of the
 * run summed over the patients attributed to each; patients outside the initial population do not
 * count). Unattributed patients form the bar with key `none`.
 */
export async function measureBreakdownList(c: DuckDBConnection, run: RunRef | null, measureId: string, options: { by: Breakdown; groupId?: string }): Promise<ListQuery> {
  if (!run || !(await hasMeasureReports(c))) return emptyList(MEASURE_BREAKDOWN_COLUMNS);
  const values: SqlValue[] = [];
  if (options.by === 'stratum') {
    const runId = param(values, run.runId);
    const id = param(values, measureId);
    const groupWhere = options.groupId ? `WHERE group_id = ${param(values, options.groupId)}` : '';
    return {
      sql: `WITH g AS (SELECT * FROM (SELECT m.run_id, m.measure, unnest(CAST(json_extract(m.report, '$.group[*]') AS JSON[])) AS g FROM batch_measure_report m
                  WHERE m.run_id = ${runId} AND m.type = 'summary' AND ${MEASURE_ID('m.measure')} = ${id})),
            gs AS (SELECT * FROM (SELECT run_id, measure, g->>'$.id' AS group_id, unnest(CAST(json_extract(g, '$.stratifier[*]') AS JSON[])) AS sf FROM g) ${groupWhere}),
            st AS (SELECT run_id, measure, group_id, sf->>'$.id' AS stratifier_id, coalesce(sf->>'$.code[0].text', sf->>'$.id') AS stratifier,
                     unnest(CAST(json_extract(sf, '$.stratum[*]') AS JSON[])) AS s FROM gs)
            SELECT run_id, ${MEASURE_ID('measure')} AS measure_id, group_id, 'stratum' AS dimension, stratifier_id, stratifier,
              ${STRATUM_KEY('s')} AS key,
              -- A boolean stratifier's one stratum ('true') is named by the stratifier itself.
              CASE WHEN ${STRATUM_KEY('s')} = 'true' THEN stratifier ELSE ${STRATUM_LABEL('s')} END AS label, ${populationCounts('s')}, TRY_CAST(s->>'$.measureScore.value' AS DOUBLE) AS score
            FROM st`,
      values,
      columns: MEASURE_BREAKDOWN_COLUMNS,
      order: 'group_id, stratifier_id, label, key',
    };
  }
  const unit = ATTRIBUTION[options.by];
  const groups = individualGroups(values, run, measureId, options.groupId);
  const sum = (column: string): string => `sum(${column})`;
  return {
    sql: `WITH ind AS (${groups}),
          pc AS (SELECT run_id, measure, patient_id, g->>'$.id' AS group_id, ${populationCounts('g')} FROM ind)
          SELECT pc.run_id, ${MEASURE_ID('pc.measure')} AS measure_id, pc.group_id, '${options.by}' AS dimension, NULL::VARCHAR AS stratifier_id, NULL::VARCHAR AS stratifier,
            coalesce(${unit.id}, 'none') AS key, coalesce(any_value(${unit.name}), ${unit.id}, '${unit.none}') AS label,
            ${POPULATIONS.map((code) => `sum(pc.${populationColumn(code)})::INTEGER AS ${populationColumn(code)}`).join(', ')},
            ${score((column) => sum(`pc.${column}`))} AS score
          FROM pc LEFT JOIN report_patient p ON p.patient_id = pc.patient_id
          WHERE pc.initial_population > 0
          GROUP BY pc.run_id, pc.measure, pc.group_id, ${unit.id}`,
    values,
    columns: MEASURE_BREAKDOWN_COLUMNS,
    order: 'group_id, label, key',
  };
}

// ---------------------------------------------------------------------------------------------
// Patients behind a number.
// ---------------------------------------------------------------------------------------------

export const MEASURE_PATIENT_COLUMNS: readonly ListColumn[] = [
  { name: 'run_id', kind: 'string' }, { name: 'measure_id', kind: 'string' }, { name: 'group_id', kind: 'string' }, { name: 'report_id', kind: 'string' },
  { name: 'patient_id', kind: 'string' }, { name: 'patient_name', kind: 'string' }, { name: 'gender', kind: 'string' }, { name: 'birth_date', kind: 'date' },
  { name: 'age', kind: 'integer' }, { name: 'practitioner_id', kind: 'string' }, { name: 'practitioner_name', kind: 'string' },
  { name: 'organization_id', kind: 'string' }, { name: 'organization_name', kind: 'string' }, { name: 'location_id', kind: 'string' }, { name: 'location_name', kind: 'string' },
  ...POPULATION_COLUMNS,
];

export const MEASURE_PATIENT_SORTS = { patient: 'patient_name', age: 'age', practitioner: 'practitioner_name', organization: 'organization_name' } as const;
export type MeasurePatientSort = keyof typeof MEASURE_PATIENT_SORTS;

export interface MeasurePatientFilters {
  readonly groupId?: string;
  /** Only patients counted in this population (count > 0); default: the initial population. */
  readonly population?: Population;
  /** A stratum (stratifier id and stratum key): counts are then the stratum's. */
  readonly stratifierId?: string;
  readonly stratum?: string;
  /** Attributed practitioner, organization or location id; `none` selects unattributed patients. */
  readonly practitionerId?: string;
  readonly organizationId?: string;
  readonly locationId?: string;
}

/**
 * measurePatientList lists the patients behind a number: those of a measure's run counted in a
 * population (in a stratum, or attributed to a practitioner, organization or location), with the
 * population counts of their individual report. Its length equals the number shown for
 * boolean-based measures; for episode-based ones the population columns sum to it.
 */
export async function measurePatientList(c: DuckDBConnection, run: RunRef | null, measureId: string, filters: MeasurePatientFilters, sort: { by: MeasurePatientSort; direction: 'asc' | 'desc' }): Promise<ListQuery> {
  if (!run || !(await hasMeasureReports(c))) return emptyList(MEASURE_PATIENT_COLUMNS, 'patient_id');
  const values: SqlValue[] = [];
  const groups = individualGroups(values, run, measureId, filters.groupId);
  // With a stratum, a patient's counts are those of their stratum entry (absent: not in the stratum).
  const scoped = filters.stratifierId !== undefined && filters.stratum !== undefined
    ? `SELECT * FROM (
         SELECT run_id, measure, patient_id, report_id, group_id, unnest(CAST(json_extract(sf, '$.stratum[*]') AS JSON[])) AS scope FROM (
           SELECT run_id, measure, patient_id, report_id, g->>'$.id' AS group_id, unnest(CAST(json_extract(g, '$.stratifier[*]') AS JSON[])) AS sf FROM ind)
         WHERE sf->>'$.id' = ${param(values, filters.stratifierId)})
       WHERE ${STRATUM_KEY('scope')} = ${param(values, filters.stratum)}`
    : `SELECT run_id, measure, patient_id, report_id, g->>'$.id' AS group_id, g AS scope FROM ind`;
  const where = [`x.${populationColumn(filters.population ?? 'initial-population')} > 0`];
  for (const [unit, id] of [['practitioner', filters.practitionerId], ['organization', filters.organizationId], ['location', filters.locationId]] as const) {
    if (id === 'none') where.push(`p.${unit}_id IS NULL`);
    else if (id) where.push(`p.${unit}_id = ${param(values, id)}`);
  }
  return {
    sql: `WITH ind AS (${groups}), sc AS (${scoped}),
          x AS (SELECT run_id, measure, patient_id, report_id, group_id, ${populationCounts('scope')} FROM sc)
          SELECT x.run_id, ${MEASURE_ID('x.measure')} AS measure_id, x.group_id, x.report_id, x.patient_id, p.name AS patient_name, p.gender, p.birth_date, ${AGE} AS age,
            p.practitioner_id, p.practitioner_name, p.organization_id, p.organization_name, p.location_id, p.location_name,
            ${POPULATIONS.map((code) => `x.${populationColumn(code)}`).join(', ')}
          FROM x JOIN batch_run r ON r.run_id = x.run_id LEFT JOIN report_patient p ON p.patient_id = x.patient_id
          WHERE ${where.join(' AND ')}`,
    values,
    columns: MEASURE_PATIENT_COLUMNS,
    order: `${MEASURE_PATIENT_SORTS[sort.by]} ${sort.direction === 'desc' ? 'DESC' : 'ASC'} NULLS LAST, patient_id, group_id`,
    patientColumn: 'patient_id',
  };
}

// ---------------------------------------------------------------------------------------------
// DEQM gaps in care.
// ---------------------------------------------------------------------------------------------

export interface MeasureGapRow {
  readonly gapId: string;
  readonly patientId: string;
  readonly measure: string;
  readonly detectedIssue: unknown;
  /** The individual MeasureReport the DetectedIssue cites as evidence. */
  readonly report: unknown;
  readonly patient: unknown;
}

/**
 * measureGapRows returns a run's measure care gaps (DEQM DetectedIssues) for a patient and/or
 * measure, a page at a time in (patient, measure, gap id) order, with the individual report and
 * the Patient resource each refers to, and the total.
 */
export async function measureGapRows(c: DuckDBConnection, run: RunRef | null, filters: { patientId?: string; measureId?: string }, page: { limit: number; offset: number }): Promise<{ total: number; rows: MeasureGapRow[] }> {
  if (!run || !(await hasMeasureReports(c))) return { total: 0, rows: [] };
  const values: SqlValue[] = [run.runId];
  const where = [`g.run_id = $1`, `g.rule_id LIKE 'measure:%'`, `g.detected_issue IS NOT NULL`];
  if (filters.patientId) where.push(`g.patient_id = ${param(values, filters.patientId)}`);
  if (filters.measureId) where.push(`${MEASURE_ID('g.measure')} = ${param(values, filters.measureId)}`);
  const from = `FROM batch_care_gap g WHERE ${where.join(' AND ')}`;
  const total = Number((await queryRows(c, `SELECT count(*)::INTEGER AS n ${from}`, values))[0]?.n ?? 0);
  const limit = Math.max(0, Math.min(1000, Math.trunc(page.limit)));
  const offset = Math.max(0, Math.trunc(page.offset));
  const rows = await queryRows(c, `WITH gaps AS (SELECT g.id, g.patient_id, g.measure, g.detected_issue ${from} ORDER BY g.patient_id, g.measure, g.id LIMIT ${limit} OFFSET ${offset})
    SELECT gaps.id, gaps.patient_id, gaps.measure, gaps.detected_issue::VARCHAR AS issue, m.report::VARCHAR AS report, p.resource::VARCHAR AS patient
    FROM gaps
    LEFT JOIN batch_measure_report m ON m.run_id = $1 AND m.type = 'individual' AND m.patient_id = gaps.patient_id AND m.measure = gaps.measure
    LEFT JOIN patient p ON p.id = gaps.patient_id
    ORDER BY gaps.patient_id, gaps.measure, gaps.id`, values);
  const json = (text: unknown): unknown => (text === null || text === undefined ? null : JSON.parse(String(text)));
  return {
    total,
    rows: rows.map((row) => ({ gapId: String(row.id), patientId: String(row.patient_id), measure: String(row.measure), detectedIssue: json(row.issue), report: json(row.report), patient: json(row.patient) })),
  };
}
