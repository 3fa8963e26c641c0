import type { AlertDecision, CareGapDecision, RuleError } from '../domain/decisions.ts';
import type { PatientData } from '../cql-engine/patient-source.ts';
import { evaluatePatient } from '../evaluate/evaluate.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import { careGaps } from '../measures/care-gaps.ts';
import { evaluateMeasurePatient, measurePatient, measurementPeriod, type MeasurePatient } from '../measures/evaluate.ts';
import type { MeasurementPeriod } from '../measures/period.ts';
import type { PreparedMeasure } from '../measures/prepare.ts';
import type { PatientResults } from '../warehouse/results.ts';

/** The rule id recorded when a patient could not be evaluated at all (bad data), not one rule. */
export const WHOLE_PATIENT = '(patient)';

/** measureRuleId is how a measure appears where rules do (care gaps, errors): `measure:<id>`. */
export const measureRuleId = (measure: PreparedMeasure): string => `measure:${measure.definition.id}`;

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** How the nightly batch reads patient data. */
export interface BatchEvaluationOptions {
  /**
   * Trust `meta.profile` in measure retrieves (cql-exec-fhir's `requireProfileTagging`): for data
   * that claims its profiles, as QI-Core data does; QI-Core content tells "ordered" from "not
   * ordered" only by profile (docs/measures.md). Rules read base FHIR and are not affected.
   */
  readonly trustMetaProfile?: boolean;
}

/** Each measure's period, resolved once: a pure function of the prepared (immutable) measure. */
const periods = new WeakMap<PreparedMeasure, MeasurementPeriod>();

function periodOf(measure: PreparedMeasure): MeasurementPeriod {
  let period = periods.get(measure);
  if (period === undefined) periods.set(measure, (period = measurementPeriod(measure)));
  return period;
}

/**
 * evaluateForBatch evaluates one stored patient for the nightly run: the batch rules, then every
 * measure (individual MeasureReport and DEQM care gaps). A patient or measure whose evaluation
 * throws becomes an error row, never a failed run.
 */
export async function evaluateForBatch(prepared: PreparedKnowledge, patientId: string, resources: readonly unknown[], evaluatedAt: string, options: BatchEvaluationOptions = {}): Promise<PatientResults> {
  const alerts: AlertDecision[] = [];
  const gaps: (CareGapDecision & { detectedIssue?: unknown })[] = [];
  const errors: RuleError[] = [];
  const measureReports: { measure: string; report: unknown }[] = [];
  try {
    const evaluation = await evaluatePatient(prepared, resources as PatientData, { evaluatedAt });
    for (const d of evaluation.decisions) {
      if (d.kind === 'alert') alerts.push(d);
      else if (d.kind === 'care-gap') gaps.push(d);
    }
    errors.push(...evaluation.errors);
  } catch (error) {
    errors.push({ ruleId: WHOLE_PATIENT, ruleVersion: '', message: message(error) });
  }
  // Index the patient once for every measure, which then share included libraries' results (rules
  // index their own copy, with hook context).
  let patient: MeasurePatient | undefined;
  for (const measure of prepared.measures) {
    const { definition } = measure;
    try {
      const period = periodOf(measure);
      patient ??= measurePatient(prepared.model, resources as PatientData, { requireProfileTagging: options.trustMetaProfile === true });
      const report = await evaluateMeasurePatient(measure, patient, { period });
      measureReports.push({ measure: definition.canonical, report });
      for (const issue of careGaps(measure, report)) {
        gaps.push({
          kind: 'care-gap',
          id: issue.id,
          ruleId: measureRuleId(measure),
          ruleVersion: definition.canonical.split('|')[1] ?? '',
          knowledgeVersion: prepared.knowledge.version,
          measure: definition.canonical,
          missing: `${definition.title ?? definition.name ?? definition.id}: not met in ${period.start.slice(0, 10)}..${period.end.slice(0, 10)}`,
          dueDate: period.end.slice(0, 10),
          detectedIssue: issue,
        });
      }
    } catch (error) {
      errors.push({ ruleId: measureRuleId(measure), ruleVersion: '', message: message(error) });
    }
  }
  return { patientId, alerts, careGaps: gaps, errors, measureReports };
}
