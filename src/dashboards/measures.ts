/**
 * eCQM measures on the dashboards: tiles from the summary MeasureReports the nightly run stores
 * per run (rate, numerator/denominator, change against the previous run, trend), with the
 * measure's own improvement notation (`decrease`: lower is better, e.g. CMS122 poor HbA1c
 * control), and the DEQM gaps-in-care Bundle. The SQL lives in warehouse/report-measures.ts.
 */
import { createHash } from 'node:crypto';
import { measureSummaryList, type MeasureGapRow } from '../warehouse/report-measures.ts';
import { readPage, type ReportStore } from '../warehouse/reports.ts';

/** One summary MeasureReport group of one run, flattened. */
export interface MeasureSummary {
  readonly runId: string;
  readonly evaluatedAt: string;
  /** The measure id: the last path segment of its canonical. */
  readonly measureId: string;
  /** The canonical (`url|version`) the reports name. */
  readonly measure: string;
  readonly reportId: string;
  readonly groupId: string;
  readonly periodStart: string;
  readonly periodEnd: string;
  readonly improvementNotation: 'increase' | 'decrease';
  readonly initialPopulation: number;
  readonly denominator: number;
  readonly denominatorExclusion: number;
  readonly denominatorException: number;
  readonly numerator: number;
  readonly numeratorExclusion: number;
  /** measureScore, 0..1 for proportion measures; null without a scored denominator. */
  readonly score: number | null;
}

/** MeasureReportSource reads stored summary MeasureReports (the warehouse's by default). */
export interface MeasureReportSource {
  /** summaries returns summary groups of the last `runs` published runs, oldest first per measure and group. */
  summaries(runs: number): Promise<readonly MeasureSummary[]>;
}

/** warehouseMeasureSource reads the summary reports the nightly run stored in batch_measure_report. */
export function warehouseMeasureSource(store: ReportStore): MeasureReportSource {
  return {
    summaries: (runs) => store.withConnection(async (c) => {
      const page = await readPage(c, await measureSummaryList(c, runs), { limit: 10_000, offset: 0 });
      return page.items.map(summaryOf);
    }),
  };
}

/** summaryOf turns a measure summary list row into a {@link MeasureSummary}. */
export function summaryOf(row: Record<string, unknown>): MeasureSummary {
  const n = (key: string): number => Number(row[key] ?? 0);
  return {
    runId: String(row.run_id), evaluatedAt: String(row.evaluated_at), measureId: String(row.measure_id), measure: String(row.measure),
    reportId: String(row.report_id), groupId: String(row.group_id), periodStart: String(row.period_start ?? ''), periodEnd: String(row.period_end ?? ''),
    improvementNotation: row.improvement_notation === 'decrease' ? 'decrease' : 'increase',
    initialPopulation: n('initial_population'), denominator: n('denominator'), denominatorExclusion: n('denominator_exclusion'),
    denominatorException: n('denominator_exception'), numerator: n('numerator'), numeratorExclusion: n('numerator_exclusion'),
    score: row.score === null || row.score === undefined ? null : Number(row.score),
  };
}

/** A measure as the knowledge names it (titles for tiles). */
export interface MeasureInfo {
  readonly id: string;
  readonly title: string;
}

export interface MeasurePoint {
  readonly runId: string;
  readonly evaluatedAt: string;
  /** Numerator less numerator exclusions. */
  readonly numerator: number;
  /** Denominator less exclusions and exceptions: the patients the rate is over. */
  readonly denominator: number;
  readonly initialPopulation: number;
  /** measureScore, 0..1; null when nobody is in the scored denominator. */
  readonly rate: number | null;
}

export interface MeasureTile {
  /** `<measureId>` or `<measureId>#<groupId>` for measures with several groups. */
  readonly id: string;
  readonly measureId: string;
  readonly measure: string;
  readonly title: string;
  readonly groupId: string;
  readonly periodStart: string;
  readonly periodEnd: string;
  /** `decrease`: lower is better (FHIR measure-improvement-notation). */
  readonly improvementNotation: 'increase' | 'decrease';
  readonly latest: MeasurePoint;
  readonly previous?: MeasurePoint;
  /** Change of the rate against the previous run, in percentage points. */
  readonly change?: number;
  /** `better`, `worse` or `same` given the improvement notation. */
  readonly direction?: 'better' | 'worse' | 'same';
  readonly trend: readonly MeasurePoint[];
}

/** changeDirection reads a change in points given the improvement notation (`decrease`: falling is better). */
export function changeDirection(change: number, notation: 'increase' | 'decrease'): 'better' | 'worse' | 'same' {
  if (change === 0) return 'same';
  return (change > 0) === (notation === 'increase') ? 'better' : 'worse';
}

/** buildMeasureTiles groups summaries into one tile per measure group, trend oldest first. */
export function buildMeasureTiles(summaries: readonly MeasureSummary[], title: (measureId: string) => string | undefined): MeasureTile[] {
  const groups = new Map<string, MeasureSummary[]>();
  for (const s of summaries) groups.set(`${s.measureId}#${s.groupId}`, [...(groups.get(`${s.measureId}#${s.groupId}`) ?? []), s]);
  const groupCount = (measureId: string): number => [...groups.keys()].filter((k) => k.startsWith(`${measureId}#`)).length;
  const tiles: MeasureTile[] = [];
  for (const [key, group] of groups) {
    const sorted = [...group].sort((a, b) => a.evaluatedAt.localeCompare(b.evaluatedAt) || a.runId.localeCompare(b.runId));
    const trend = sorted.map((s): MeasurePoint => ({
      runId: s.runId, evaluatedAt: s.evaluatedAt, initialPopulation: s.initialPopulation,
      numerator: s.numerator - s.numeratorExclusion, denominator: s.denominator - s.denominatorExclusion - s.denominatorException, rate: s.score,
    }));
    const last = sorted[sorted.length - 1]!;
    const latest = trend[trend.length - 1]!;
    const previous = trend.length > 1 ? trend[trend.length - 2] : undefined;
    const change = previous && previous.rate !== null && latest.rate !== null ? Math.round((latest.rate - previous.rate) * 10_000) / 100 : undefined;
    const name = title(last.measureId) ?? last.measureId;
    tiles.push({
      id: groupCount(last.measureId) > 1 ? key : last.measureId, measureId: last.measureId, measure: last.measure,
      title: groupCount(last.measureId) > 1 ? `${name} (${last.groupId})` : name, groupId: last.groupId,
      periodStart: last.periodStart, periodEnd: last.periodEnd, improvementNotation: last.improvementNotation, latest,
      ...(previous ? { previous } : {}),
      ...(change !== undefined ? { change, direction: changeDirection(change, last.improvementNotation) } : {}),
      trend,
    });
  }
  return tiles.sort((a, b) => a.title.localeCompare(b.title) || a.groupId.localeCompare(b.groupId));
}

export interface MeasureStatus {
  readonly available: boolean;
  readonly note?: string;
  readonly tiles: readonly MeasureTile[];
}

/** measureStatus answers the measure tiles of the last `runs` runs (`available: false` before any MeasureReport is stored). */
export async function measureStatus(source: MeasureReportSource, runs: number, title: (measureId: string) => string | undefined): Promise<MeasureStatus> {
  const summaries = await source.summaries(runs);
  if (summaries.length === 0) return { available: false, note: 'No published run has stored MeasureReports yet: measures appear after the next nightly run over knowledge with measures.', tiles: [] };
  return { available: true, tiles: buildMeasureTiles(summaries, title) };
}

// ---------------------------------------------------------------------------------------------
// DEQM gaps in care.
// ---------------------------------------------------------------------------------------------

type Resource = { readonly resourceType: string; readonly id: string };

const isResource = (value: unknown): value is Resource =>
  typeof value === 'object' && value !== null && typeof (value as Resource).resourceType === 'string' && typeof (value as Resource).id === 'string';

/**
 * deqmGapsBundle builds a Da Vinci DEQM-style gaps-in-care Bundle without the Composition: a FHIR
 * R4 `collection` of the DetectedIssues of a page of gaps, then each individual MeasureReport they
 * cite as evidence and each Patient they name, once each. `fullUrl`s are `<base>/<type>/<id>`, so
 * the relative references inside the resources resolve within the Bundle
 * ({@link https://hl7.org/fhir/R4/bundle.html#references}).
 */
export function deqmGapsBundle(rows: readonly MeasureGapRow[], options: { base: string; timestamp: string; runId: string; links: readonly { relation: string; url: string }[] }): Record<string, unknown> {
  const entries: { fullUrl: string; resource: Resource }[] = [];
  const seen = new Set<string>();
  const add = (resource: unknown): void => {
    if (!isResource(resource)) return;
    const key = `${resource.resourceType}/${resource.id}`;
    if (seen.has(key)) return;
    seen.add(key);
    entries.push({ fullUrl: `${options.base}/${key}`, resource });
  };
  for (const row of rows) add(row.detectedIssue);
  for (const row of rows) add(row.report);
  for (const row of rows) add(row.patient);
  const id = createHash('sha256').update([options.runId, ...rows.map((r) => r.gapId)].join('\n')).digest('hex').slice(0, 32);
  return {
    resourceType: 'Bundle',
    id: `gaps-${id}`,
    meta: { tag: [{ system: 'https://cairn.health/batch-run', code: options.runId }] },
    type: 'collection',
    timestamp: options.timestamp,
    link: options.links,
    entry: entries,
  };
}
