/**
 * The report lists the API serves: each has a path, a zod query schema (also the OpenAPI
 * parameters), the permission it needs and a builder for its SQL. Every list is served as a JSON
 * page and exported as CSV, Parquet or Arrow from the same definition.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { z } from 'zod';
import {
  alertList, ALERT_SORTS, auditList, careGapList, CARE_GAP_SORTS, overrideReasonList, practitionerList, resolveRun, ruleDailyList,
  ruleStatsList, ruleTrendList, runErrorList, runErrorSummary, runList, type ListColumn, type ListQuery, type RunRef,
  ALERT_COLUMNS, AUDIT_COLUMNS, CARE_GAP_COLUMNS, OVERRIDE_REASON_COLUMNS, PRACTITIONER_COLUMNS, RULE_DAILY_COLUMNS, RULE_STATS_COLUMNS,
  RULE_TREND_COLUMNS, RUN_COLUMNS, RUN_ERROR_COLUMNS, RUN_ERROR_SUMMARY_COLUMNS,
} from '../warehouse/reports.ts';
import {
  BREAKDOWNS, measureBreakdownList, measurePatientList, measureSummaryList, MEASURE_BREAKDOWN_COLUMNS, MEASURE_PATIENT_COLUMNS, MEASURE_PATIENT_SORTS,
  MEASURE_SUMMARY_COLUMNS, POPULATIONS, type Breakdown, type MeasurePatientSort, type Population,
} from '../warehouse/report-measures.ts';
import type { Permission } from './access.ts';

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** A list of ids: repeated (`?rule=a&rule=b`) or comma-separated (`?rule=a,b`). */
const idList = (description: string) =>
  z.union([z.string(), z.array(z.string())]).optional().describe(description)
    .transform((v) => (v === undefined ? undefined : (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean)));
const day = (description: string) => z.string().regex(DATE, 'a date YYYY-MM-DD').optional().describe(description);
const int = (min: number, max: number, description: string) => z.coerce.number().int().min(min).max(max).optional().describe(description);
const run = z.string().min(1).max(100).default('latest').describe('run id, or `latest` (the latest published run)');
/** MEASURE_PARAMS is the `{id}` of `/api/measures/{id}/…`: the last path segment of the Measure's canonical. */
export const MEASURE_PARAMS = z.object({ id: z.string().min(1).max(200).regex(/^[A-Za-z0-9\-.]+$/, 'a FHIR id').describe('measure id (the last path segment of its canonical, e.g. `cairn-cms122-hba1c-poor-control`)') });
const direction = z.enum(['asc', 'desc']).default('asc').describe('sort direction');

/** PAGE_QUERY is accepted by every JSON list (exports ignore it and return the whole list). */
export const PAGE_QUERY = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(50).describe('rows per page (1-1000)'),
  offset: z.coerce.number().int().min(0).default(0).describe('rows to skip, in the list\'s stable order'),
});

const RANGE = {
  from: day('first day (UTC) of the range; default 30 days before `to`'),
  to: day('last day (UTC) of the range; default today'),
};

export interface ListContext {
  readonly c: DuckDBConnection;
  readonly now: Date;
}

export interface BuiltList {
  readonly list: ListQuery;
  readonly run?: RunRef | null;
  readonly range?: { readonly from: string; readonly to: string };
}

export interface ListRoute {
  /** name is the path after `/api/` (`:param` for path parameters) and, parameters filled in, the export file name. */
  readonly name: string;
  /** params validates the path parameters; their values reach `build` with the query's. */
  readonly params?: z.ZodObject;
  /** check rejects combinations a schema cannot express: the offending field and why. */
  check?(query: Record<string, unknown>): { readonly field: string; readonly message: string } | undefined;
  readonly summary: string;
  readonly permission: Permission;
  /** columns of every row, typed as exports carry them. */
  readonly columns: readonly ListColumn[];
  readonly query: z.ZodObject;
  build(query: Record<string, unknown>, context: ListContext): Promise<BuiltList>;
}

function dayRange(query: Record<string, unknown>, now: Date): { from: string; to: string } {
  const to = typeof query.to === 'string' ? query.to : now.toISOString().slice(0, 10);
  const from = typeof query.from === 'string' ? query.from : new Date(Date.parse(`${to}T00:00:00Z`) - 30 * 86_400_000).toISOString().slice(0, 10);
  return { from, to };
}

const patientFilters = {
  rule: idList('rule ids'),
  practitioner: z.string().min(1).optional().describe('attributed practitioner id, or `none` for patients without one'),
  ageMin: int(0, 150, 'youngest age in whole years at the run\'s evaluation time'),
  ageMax: int(0, 150, 'oldest age in whole years'),
};

/** LIST_ROUTES are the lists of the report API. */
export const LIST_ROUTES: readonly ListRoute[] = [
  {
    name: 'runs',
    columns: RUN_COLUMNS,
    summary: 'Batch runs, newest first: status, duration, counts of patients, alerts, care gaps and errors.',
    permission: 'aggregate',
    query: z.object({}),
    build: async (_q, { c }) => ({ list: await runList(c) }),
  },
  {
    name: 'runs/error-summary',
    columns: RUN_ERROR_SUMMARY_COLUMNS,
    summary: 'Errors of a run per rule, with one example message (no patient ids).',
    permission: 'aggregate',
    query: z.object({ run }),
    build: async (q, { c }) => {
      const found = await resolveRun(c, q.run as string);
      return { list: runErrorSummary(found), run: found };
    },
  },
  {
    name: 'runs/errors',
    columns: RUN_ERROR_COLUMNS,
    summary: 'Per-patient rule errors of a run (patient-level).',
    permission: 'patients',
    query: z.object({ run, rule: idList('rule ids') }),
    build: async (q, { c }) => {
      const found = await resolveRun(c, q.run as string);
      return { list: runErrorList(found, { ruleId: q.rule as string[] | undefined }), run: found };
    },
  },
  {
    name: 'care-gaps',
    columns: CARE_GAP_COLUMNS,
    summary: 'Open care gaps of a run, with patient, age and attributed practitioner (patient-level): the worklist.',
    permission: 'patients',
    query: z.object({
      run,
      ...patientFilters,
      measure: idList('measure identifiers'),
      dueFrom: day('earliest due date'),
      dueTo: day('latest due date'),
      sort: z.enum(Object.keys(CARE_GAP_SORTS) as [keyof typeof CARE_GAP_SORTS]).default('due_date').describe('sort key; the gap id breaks ties'),
      order: direction,
    }),
    build: async (q, { c }) => {
      const found = await resolveRun(c, q.run as string);
      const list = careGapList(found, {
        ruleId: q.rule as string[] | undefined, measure: q.measure as string[] | undefined, practitionerId: q.practitioner as string | undefined,
        ageMin: q.ageMin as number | undefined, ageMax: q.ageMax as number | undefined, dueFrom: q.dueFrom as string | undefined, dueTo: q.dueTo as string | undefined,
      }, { by: q.sort as keyof typeof CARE_GAP_SORTS, direction: q.order as 'asc' | 'desc' });
      return { list, run: found };
    },
  },
  {
    name: 'alerts',
    columns: ALERT_COLUMNS,
    summary: 'Alerts of a run, with patient, age and attributed practitioner (patient-level).',
    permission: 'patients',
    query: z.object({
      run,
      ...patientFilters,
      severity: idList('severities: info, warning, critical'),
      sort: z.enum(Object.keys(ALERT_SORTS) as [keyof typeof ALERT_SORTS]).default('severity').describe('sort key; the alert id breaks ties'),
      order: direction,
    }),
    build: async (q, { c }) => {
      const found = await resolveRun(c, q.run as string);
      const list = alertList(found, {
        ruleId: q.rule as string[] | undefined, practitionerId: q.practitioner as string | undefined, ageMin: q.ageMin as number | undefined,
        ageMax: q.ageMax as number | undefined, severity: q.severity as string[] | undefined,
      }, { by: q.sort as keyof typeof ALERT_SORTS, direction: q.order as 'asc' | 'desc' });
      return { list, run: found };
    },
  },
  {
    name: 'practitioners',
    columns: PRACTITIONER_COLUMNS,
    summary: 'Practitioners patients are attributed to (Patient.generalPractitioner, else the most recent encounter), with patient counts.',
    permission: 'aggregate',
    query: z.object({}),
    build: async () => ({ list: practitionerList() }),
  },
  {
    name: 'rules/trend',
    columns: RULE_TREND_COLUMNS,
    summary: 'Alerts and care gaps per rule in each of the last runs: count, patients flagged, patients evaluated.',
    permission: 'aggregate',
    query: z.object({ runs: z.coerce.number().int().min(1).max(366).default(12).describe('how many recent runs') }),
    build: async (q, { c }) => ({ list: await ruleTrendList(c, q.runs as number) }),
  },
  {
    name: 'rules/stats',
    columns: RULE_STATS_COLUMNS,
    summary: 'Per rule: cards shown in the range, acceptance and override rates (CDS Hooks feedback), alerts and care gaps of the latest run.',
    permission: 'aggregate',
    query: z.object(RANGE),
    build: async (q, { c, now }) => {
      const range = dayRange(q, now);
      return { list: await ruleStatsList(c, range, await resolveRun(c, 'latest')), range };
    },
  },
  {
    name: 'rules/daily',
    columns: RULE_DAILY_COLUMNS,
    summary: 'Per rule and day: cards shown, accepted and overridden (real time), alerts and care gaps (the day\'s last batch run).',
    permission: 'aggregate',
    query: z.object(RANGE),
    build: async (q, { c, now }) => {
      const range = dayRange(q, now);
      return { list: await ruleDailyList(c, range), range };
    },
  },
  {
    name: 'rules/override-reasons',
    columns: OVERRIDE_REASON_COLUMNS,
    summary: 'Override reasons per rule for cards shown in the range.',
    permission: 'aggregate',
    query: z.object(RANGE),
    build: async (q, { c, now }) => {
      const range = dayRange(q, now);
      return { list: await overrideReasonList(c, range), range };
    },
  },
  {
    name: 'measures/summaries',
    columns: MEASURE_SUMMARY_COLUMNS,
    summary: 'Summary MeasureReports of the last runs, one row per run, measure and group: population counts, score and improvement notation.',
    permission: 'aggregate',
    query: z.object({
      runs: z.coerce.number().int().min(1).max(366).default(12).describe('how many recent runs'),
      measure: z.string().min(1).max(200).optional().describe('only this measure id'),
    }),
    build: async (q, { c }) => ({ list: await measureSummaryList(c, q.runs as number, { measureId: q.measure as string | undefined }) }),
  },
  {
    name: 'measures/:id/breakdown',
    params: MEASURE_PARAMS,
    columns: MEASURE_BREAKDOWN_COLUMNS,
    summary: 'A measure\'s populations and rate per stratum (the run\'s summary MeasureReport) or per attributed practitioner, organization or location (individual reports of the run).',
    permission: 'aggregate',
    query: z.object({
      run,
      group: z.string().min(1).optional().describe('measure group id; default: every group'),
      by: z.enum(BREAKDOWNS).default('stratum').describe('stratum, practitioner, organization or location'),
    }),
    build: async (q, { c }) => {
      const found = await resolveRun(c, q.run as string);
      return { list: await measureBreakdownList(c, found, q.id as string, { by: q.by as Breakdown, groupId: q.group as string | undefined }), run: found };
    },
  },
  {
    name: 'measures/:id/patients',
    params: MEASURE_PARAMS,
    columns: MEASURE_PATIENT_COLUMNS,
    summary: 'The patients behind a measure number: counted in a population of a run, optionally in one stratum or attributed to one practitioner, organization or location (patient-level).',
    permission: 'patients',
    query: z.object({
      run,
      group: z.string().min(1).optional().describe('measure group id; default: every group'),
      population: z.enum(POPULATIONS).default('initial-population').describe('measure population the patients are counted in'),
      stratifier: z.string().min(1).optional().describe('stratifier id (with `stratum`)'),
      stratum: z.string().min(1).optional().describe('stratum key: its value\'s code, else its text (`true` for boolean stratifiers); with `stratifier`'),
      practitioner: z.string().min(1).optional().describe('attributed practitioner id, or `none`'),
      organization: z.string().min(1).optional().describe('attributed organization id, or `none`'),
      location: z.string().min(1).optional().describe('attributed location id, or `none`'),
      sort: z.enum(Object.keys(MEASURE_PATIENT_SORTS) as [MeasurePatientSort]).default('patient').describe('sort key; the patient id breaks ties'),
      order: direction,
    }),
    check: (q) => ((q.stratifier === undefined) !== (q.stratum === undefined) ? { field: q.stratum === undefined ? 'stratum' : 'stratifier', message: 'give both `stratifier` and `stratum`, or neither' } : undefined),
    build: async (q, { c }) => {
      const found = await resolveRun(c, q.run as string);
      const list = await measurePatientList(c, found, q.id as string, {
        groupId: q.group as string | undefined, population: q.population as Population, stratifierId: q.stratifier as string | undefined, stratum: q.stratum as string | undefined,
        practitionerId: q.practitioner as string | undefined, organizationId: q.organization as string | undefined, locationId: q.location as string | undefined,
      }, { by: q.sort as MeasurePatientSort, direction: q.order as 'asc' | 'desc' });
      return { list, run: found };
    },
  },
  {
    name: 'audit',
    columns: AUDIT_COLUMNS,
    summary: 'The patient-level access audit, newest first (admin).',
    permission: 'audit',
    query: z.object({ user: z.string().min(1).optional().describe('only this user') }),
    build: async (q) => ({ list: auditList({ user: q.user as string | undefined }) }),
  },
];
