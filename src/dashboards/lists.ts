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
import type { Permission } from './access.ts';

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** A list of ids: repeated (`?rule=a&rule=b`) or comma-separated (`?rule=a,b`). */
const idList = (description: string) =>
  z.union([z.string(), z.array(z.string())]).optional().describe(description)
    .transform((v) => (v === undefined ? undefined : (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean)));
const day = (description: string) => z.string().regex(DATE, 'a date YYYY-MM-DD').optional().describe(description);
const int = (min: number, max: number, description: string) => z.coerce.number().int().min(min).max(max).optional().describe(description);
const run = z.string().min(1).max(100).default('latest').describe('run id, or `latest` (the latest published run)');
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
  /** name is the path after `/api/` and the export file name. */
  readonly name: string;
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
    name: 'audit',
    columns: AUDIT_COLUMNS,
    summary: 'The patient-level access audit, newest first (admin).',
    permission: 'audit',
    query: z.object({ user: z.string().min(1).optional().describe('only this user') }),
    build: async (q) => ({ list: auditList({ user: q.user as string | undefined }) }),
  },
];
