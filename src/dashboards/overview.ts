/**
 * The overview: one tile per rule result (alerts or care gaps of a rule) with the latest count
 * and rate, the change against the previous run and the trend over recent runs. Alerts and care
 * gaps are things to reduce, so for rule tiles lower is better; measure tiles (once MeasureReports
 * are stored) carry their own improvement notation.
 */

export interface TrendRow {
  readonly run_id: string;
  readonly evaluated_at: string;
  readonly rule_id: string;
  readonly kind: string;
  readonly count: number;
  readonly patients_flagged: number;
  readonly patients: number;
}

export interface TrendPoint {
  readonly runId: string;
  readonly evaluatedAt: string;
  readonly count: number;
  readonly patientsFlagged: number;
  /** Share of evaluated patients flagged, 0..1. */
  readonly rate: number;
}

export interface Tile {
  readonly id: string;
  readonly ruleId: string;
  readonly title: string;
  readonly kind: 'alert' | 'care-gap';
  /** `decrease`: lower is better (FHIR measure-improvement-notation). */
  readonly improvementNotation: 'increase' | 'decrease';
  readonly latest: TrendPoint;
  readonly previous?: TrendPoint;
  /** Change of the rate against the previous run, in percentage points. */
  readonly change?: number;
  /** `better`, `worse` or `same` given the improvement notation. */
  readonly direction?: 'better' | 'worse' | 'same';
  readonly trend: readonly TrendPoint[];
}

/** buildTiles groups trend rows (ordered by rule, kind, time) into tiles; `title` names rules. */
export function buildTiles(rows: readonly TrendRow[], title: (ruleId: string) => string | undefined): Tile[] {
  const groups = new Map<string, TrendRow[]>();
  for (const row of rows) {
    const key = `${row.rule_id}|${row.kind}`;
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  const tiles: Tile[] = [];
  for (const [key, group] of groups) {
    const trend = group
      .map((r) => ({ runId: r.run_id, evaluatedAt: r.evaluated_at, count: r.count, patientsFlagged: r.patients_flagged, rate: r.patients > 0 ? r.patients_flagged / r.patients : 0 }))
      .sort((a, b) => a.evaluatedAt.localeCompare(b.evaluatedAt) || a.runId.localeCompare(b.runId));
    const latest = trend[trend.length - 1]!;
    const previous = trend.length > 1 ? trend[trend.length - 2] : undefined;
    const change = previous ? Math.round((latest.rate - previous.rate) * 10_000) / 100 : undefined;
    const first = group[0]!;
    const kind = first.kind === 'alert' ? 'alert' : 'care-gap';
    tiles.push({
      id: key, ruleId: first.rule_id, title: title(first.rule_id) ?? first.rule_id, kind, improvementNotation: 'decrease', latest,
      ...(previous ? { previous, change, direction: change === 0 ? 'same' : (change ?? 0) < 0 ? 'better' : 'worse' } : {}),
      trend,
    });
  }
  return tiles.sort((a, b) => a.title.localeCompare(b.title) || a.kind.localeCompare(b.kind));
}
