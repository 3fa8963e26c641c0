/**
 * EXTENSION POINT — eCQM measures. The measure engine (src/measures/) produces FHIR MeasureReports;
 * once the nightly run stores them per run (see docs/dashboards.md, "Measures", for the proposed
 * `measure_report` table), a {@link MeasureReportSource} over that table plugs in here and the
 * overview gains one tile per measure (rate, numerator/denominator, change, trend; improvement
 * notation from the Measure), plus the measure page (strata, breakdowns, patient lists).
 * Until then `/api/measures` and the overview answer `available: false`.
 */

/** One summary MeasureReport group, flattened for tiles. */
export interface MeasureSummary {
  readonly runId: string;
  readonly measure: string;
  readonly title: string;
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
  /** measureScore, 0..1 for proportion measures. */
  readonly score: number | null;
}

/** MeasureReportSource reads stored MeasureReports; the lead wires one once they are stored. */
export interface MeasureReportSource {
  /** summaries returns summary groups of the last `runs` runs, oldest first per measure. */
  summaries(runs: number): Promise<readonly MeasureSummary[]>;
}

export interface MeasureStatus {
  readonly available: boolean;
  readonly note?: string;
  readonly summaries: readonly MeasureSummary[];
}

/** measureStatus answers what the dashboards can show about measures now. */
export async function measureStatus(source: MeasureReportSource | undefined, runs = 12): Promise<MeasureStatus> {
  if (!source) return { available: false, note: 'eCQM MeasureReports are not stored per run yet; measure tiles and pages appear once they are.', summaries: [] };
  return { available: true, summaries: await source.summaries(runs) };
}
