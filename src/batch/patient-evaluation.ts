import type { AlertDecision, CareGapDecision, RuleError } from '../domain/decisions.ts';
import { indexPatient, type FhirPatient, type PatientData } from '../cql-engine/patient-source.ts';
import { evaluatePatient } from '../evaluate/evaluate.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import { careGaps } from '../measures/care-gaps.ts';
import { evaluateMeasurePatient, measurementPeriod } from '../measures/evaluate.ts';
import type { PreparedMeasure } from '../measures/prepare.ts';
import type { PatientResults } from '../warehouse/results.ts';

/** The rule id recorded when a patient could not be evaluated at all (bad data), not one rule. */
export const WHOLE_PATIENT = '(patient)';

/** measureRuleId is how a measure appears where rules do (care gaps, errors): `measure:<id>`. */
export const measureRuleId = (measure: PreparedMeasure): string => `measure:${measure.definition.id}`;

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * evaluateForBatch evaluates one stored patient for the nightly run: the batch rules, then every
 * measure (individual MeasureReport and DEQM care gaps). A patient or measure whose evaluation
 * throws becomes an error row, never a failed run.
 */
export async function evaluateForBatch(prepared: PreparedKnowledge, patientId: string, resources: readonly unknown[], evaluatedAt: string): Promise<PatientResults> {
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
  // Index the patient once for every measure (rules index their own copy, with hook context).
  let patient: FhirPatient | undefined;
  for (const measure of prepared.measures) {
    const { definition } = measure;
    try {
      const period = measurementPeriod(measure);
      patient ??= indexPatient(prepared.model, resources as PatientData);
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
