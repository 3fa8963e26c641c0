/**
 * Impact preview: evaluate a changed knowledge set against the population in the warehouse, next
 * to the serving (baseline) set, and report per rule how many patients, alerts, cards and care
 * gaps each would produce, with sample patients for each difference. Nothing is published.
 *
 * Alerts and care gaps (rules and measures) come from the nightly batch's own per-patient
 * evaluation. Cards come from a patient-view evaluation of each patient (context: the patient and
 * a preview user); rules that run only in order or encounter hooks need a draft order or an
 * encounter no stored patient has, so their cards are reported as not applicable.
 */
import { evaluateForBatch, measureRuleId } from '../batch/patient-evaluation.ts';
import type { HookId } from '../domain/hooks.ts';
import type { PatientData } from '../cql-engine/patient-source.ts';
import { evaluatePatient } from '../evaluate/evaluate.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import type { Warehouse } from '../warehouse/database.ts';
import { streamPatients, type PatientRecord } from '../warehouse/read.ts';

/** The hook whose cards a stored patient alone can produce. */
export const PREVIEW_HOOK: HookId = 'patient-view';
const PREVIEW_USER = 'Practitioner/cairn-preview';

export interface PreviewOptions {
  /** The instant every patient is evaluated at (CQL Now()). */
  readonly evaluatedAt: string;
  /** Evaluate only the first N patients (by id); all when absent. */
  readonly limit?: number;
  /** Sample patient ids kept per difference (default 5). */
  readonly samples?: number;
  /** Also evaluate measures (their care gaps); default true. */
  readonly measures?: boolean;
  readonly onProgress?: (done: number) => void;
}

/** What one knowledge set produced for one rule over the population. */
export interface SideCounts {
  /** Patients with at least one alert, card or care gap of the rule. */
  readonly patients: number;
  readonly alerts: number;
  /** null: the rule's cards cannot be previewed from stored data (see `cardsNote`). */
  readonly cards: number | null;
  readonly careGaps: number;
  readonly errors: number;
}

export interface PatientSample {
  readonly count: number;
  readonly sample: readonly string[];
}

export type RuleChange = 'added' | 'removed' | 'changed' | 'unchanged';

export interface RulePreview {
  /** A rule id, or `measure:<id>` for a measure's care gaps. */
  readonly ruleId: string;
  readonly change: RuleChange;
  readonly baselineVersion?: string;
  readonly candidateVersion?: string;
  /** Why `cards` is null, e.g. `n/a (needs draft orders)`. */
  readonly cardsNote?: string;
  readonly baseline: SideCounts;
  readonly candidate: SideCounts;
  /** Patients the rule fires for with the candidate and not with the baseline. */
  readonly newlyFiring: PatientSample;
  /** Patients the rule fires for with the baseline and no longer with the candidate. */
  readonly noLongerFiring: PatientSample;
}

export interface PreviewReport {
  readonly evaluatedAt: string;
  readonly patients: number;
  readonly baselineVersion: string;
  readonly candidateVersion: string;
  readonly rules: readonly RulePreview[];
}

interface Tally {
  patients: number;
  alerts: number;
  cards: number;
  careGaps: number;
  errors: number;
}

type PatientOutcome = Map<string, { alerts: number; cards: number; careGaps: number; errors: number }>;

/** ruleVersions maps every rule and measure of a set (as `measure:<id>`) to its version. */
function ruleVersions(prepared: PreparedKnowledge): Map<string, string> {
  const out = new Map(prepared.knowledge.rules.filter((r) => r.rule.status === 'active').map((r) => [r.rule.id, r.rule.version]));
  for (const m of prepared.measures) out.set(measureRuleId(m), m.definition.canonical.split('|')[1] ?? '');
  return out;
}

/** cardsNote says why a rule's cards cannot be previewed, or undefined when they can (or it has none). */
function cardsNote(prepared: PreparedKnowledge | undefined, ruleId: string): string | undefined {
  const rule = prepared?.knowledge.rules.find((r) => r.rule.id === ruleId)?.rule;
  const hooks = rule?.runs.hooks ?? [];
  if (!rule?.outcome.card || hooks.length === 0 || hooks.includes(PREVIEW_HOOK)) return undefined;
  if (hooks.some((h) => h.startsWith('order-'))) return 'n/a (needs draft orders)';
  return `n/a (needs ${hooks.join('/')} context)`;
}

async function evaluateSide(prepared: PreparedKnowledge, patient: PatientRecord, evaluatedAt: string): Promise<PatientOutcome> {
  const outcome: PatientOutcome = new Map();
  const at = (ruleId: string): { alerts: number; cards: number; careGaps: number; errors: number } => {
    let entry = outcome.get(ruleId);
    if (!entry) outcome.set(ruleId, (entry = { alerts: 0, cards: 0, careGaps: 0, errors: 0 }));
    return entry;
  };
  const batch = await evaluateForBatch(prepared, patient.patientId, patient.resources, evaluatedAt);
  for (const a of batch.alerts) at(a.ruleId).alerts++;
  for (const g of batch.careGaps) at(g.ruleId).careGaps++;
  for (const e of batch.errors) at(e.ruleId).errors++;
  if (prepared.rulesFor(PREVIEW_HOOK).length > 0) {
    try {
      const view = await evaluatePatient(prepared, patient.resources as unknown as PatientData, {
        evaluatedAt,
        hook: PREVIEW_HOOK,
        context: { userId: PREVIEW_USER, patientId: patient.patientId },
      });
      for (const d of view.decisions) if (d.kind === 'card') at(d.ruleId).cards++;
      for (const e of view.errors) at(e.ruleId).errors++;
    } catch {
      // The batch evaluation above already recorded why this patient cannot be evaluated.
    }
  }
  return outcome;
}

const fired = (o: { alerts: number; cards: number; careGaps: number } | undefined): boolean => !!o && o.alerts + o.cards + o.careGaps > 0;

/**
 * previewImpact streams every patient (or the first `limit`) from the warehouse, evaluates each
 * against both sets at `evaluatedAt`, and tallies per rule. It only reads the warehouse.
 */
export async function previewImpact(warehouse: Warehouse, baseline: PreparedKnowledge, candidate: PreparedKnowledge, options: PreviewOptions): Promise<PreviewReport> {
  const samples = options.samples ?? 5;
  const withMeasures = (p: PreparedKnowledge): PreparedKnowledge => (options.measures === false ? { ...p, measures: [] } : p);
  const sides = [withMeasures(baseline), withMeasures(candidate)] as const;
  const versions = [ruleVersions(sides[0]), ruleVersions(sides[1])] as const;
  const ids = [...new Set([...versions[0].keys(), ...versions[1].keys()])].sort();
  const tallies = sides.map(() => new Map(ids.map((id) => [id, { patients: 0, alerts: 0, cards: 0, careGaps: 0, errors: 0 } as Tally])));
  const newly = new Map(ids.map((id) => [id, { count: 0, sample: [] as string[] }]));
  const gone = new Map(ids.map((id) => [id, { count: 0, sample: [] as string[] }]));
  let patients = 0;
  outer: for await (const chunk of streamPatients(warehouse)) {
    for (const patient of chunk) {
      if (options.limit !== undefined && patients >= options.limit) break outer;
      const outcomes = [await evaluateSide(sides[0], patient, options.evaluatedAt), await evaluateSide(sides[1], patient, options.evaluatedAt)] as const;
      for (const id of ids) {
        const [before, after] = [outcomes[0].get(id), outcomes[1].get(id)];
        outcomes.forEach((o, side) => {
          const entry = o.get(id);
          const tally = tallies[side]!.get(id)!;
          if (!entry) return;
          if (fired(entry)) tally.patients++;
          tally.alerts += entry.alerts;
          tally.cards += entry.cards;
          tally.careGaps += entry.careGaps;
          tally.errors += entry.errors;
        });
        const difference = fired(after) && !fired(before) ? newly.get(id)! : fired(before) && !fired(after) ? gone.get(id)! : undefined;
        if (difference) {
          difference.count++;
          if (difference.sample.length < samples) difference.sample.push(patient.patientId);
        }
      }
      patients++;
      options.onProgress?.(patients);
    }
  }
  const rules = ids.map((ruleId): RulePreview => {
    const [from, to] = [versions[0].get(ruleId), versions[1].get(ruleId)];
    const change: RuleChange = from === undefined ? 'added' : to === undefined ? 'removed' : from !== to ? 'changed' : 'unchanged';
    const note = cardsNote(to === undefined ? baseline : candidate, ruleId);
    const counts = (side: 0 | 1, present: boolean): SideCounts => {
      const t = tallies[side]!.get(ruleId)!;
      const cards = note !== undefined ? null : t.cards;
      return present ? { patients: t.patients, alerts: t.alerts, cards, careGaps: t.careGaps, errors: t.errors } : { patients: 0, alerts: 0, cards: note !== undefined ? null : 0, careGaps: 0, errors: 0 };
    };
    return {
      ruleId,
      change,
      ...(from !== undefined ? { baselineVersion: from } : {}),
      ...(to !== undefined ? { candidateVersion: to } : {}),
      ...(note ? { cardsNote: note } : {}),
      baseline: counts(0, from !== undefined),
      candidate: counts(1, to !== undefined),
      newlyFiring: newly.get(ruleId)!,
      noLongerFiring: gone.get(ruleId)!,
    };
  });
  return { evaluatedAt: options.evaluatedAt, patients, baselineVersion: baseline.knowledge.version, candidateVersion: candidate.knowledge.version, rules };
}

const delta = (a: number | null, b: number | null): string => {
  if (a === null || b === null) return 'n/a';
  const d = b - a;
  return d === 0 ? `${b}` : `${a} → ${b} (${d > 0 ? '+' : ''}${d})`;
};

/** formatPreview renders a report as text: one block per rule, differences first. */
export function formatPreview(report: PreviewReport): string[] {
  const lines = [`impact of knowledge ${report.candidateVersion} against ${report.baselineVersion} over ${report.patients} patient(s) at ${report.evaluatedAt}`];
  const differs = (r: RulePreview): boolean => r.change !== 'unchanged' || r.newlyFiring.count + r.noLongerFiring.count > 0 || JSON.stringify(r.baseline) !== JSON.stringify(r.candidate);
  const ordered = [...report.rules.filter(differs), ...report.rules.filter((r) => !differs(r))];
  for (const r of ordered) {
    const version = r.change === 'changed' ? `${r.baselineVersion} → ${r.candidateVersion}` : (r.candidateVersion ?? r.baselineVersion ?? '');
    lines.push('', `${r.ruleId}  [${r.change}${version ? ` ${version}` : ''}]`);
    lines.push(`  patients ${delta(r.baseline.patients, r.candidate.patients)}   alerts ${delta(r.baseline.alerts, r.candidate.alerts)}   cards ${r.cardsNote ?? delta(r.baseline.cards, r.candidate.cards)}   care gaps ${delta(r.baseline.careGaps, r.candidate.careGaps)}${r.baseline.errors + r.candidate.errors > 0 ? `   errors ${delta(r.baseline.errors, r.candidate.errors)}` : ''}`);
    if (r.newlyFiring.count > 0) lines.push(`  newly firing for ${r.newlyFiring.count}: ${r.newlyFiring.sample.join(', ')}${r.newlyFiring.count > r.newlyFiring.sample.length ? ', …' : ''}`);
    if (r.noLongerFiring.count > 0) lines.push(`  no longer firing for ${r.noLongerFiring.count}: ${r.noLongerFiring.sample.join(', ')}${r.noLongerFiring.count > r.noLongerFiring.sample.length ? ', …' : ''}`);
  }
  return lines;
}
