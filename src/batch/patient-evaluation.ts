import type { AlertDecision, CareGapDecision } from '../domain/decisions.ts';
import type { PatientData } from '../cql-engine/patient-source.ts';
import { evaluatePatient } from '../evaluate/evaluate.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import type { PatientResults } from '../warehouse/results.ts';

/** The rule id recorded when a patient could not be evaluated at all (bad data), not one rule. */
export const WHOLE_PATIENT = '(patient)';

/**
 * evaluateForBatch evaluates one stored patient for the nightly run. A patient whose evaluation
 * throws becomes an error row, never a failed run.
 */
export async function evaluateForBatch(prepared: PreparedKnowledge, patientId: string, resources: readonly unknown[], evaluatedAt: string): Promise<PatientResults> {
  try {
    const evaluation = await evaluatePatient(prepared, resources as PatientData, { evaluatedAt });
    return {
      patientId,
      alerts: evaluation.decisions.filter((d): d is AlertDecision => d.kind === 'alert'),
      careGaps: evaluation.decisions.filter((d): d is CareGapDecision => d.kind === 'care-gap'),
      errors: evaluation.errors,
    };
  } catch (error) {
    return { patientId, alerts: [], careGaps: [], errors: [{ ruleId: WHOLE_PATIENT, ruleVersion: '', message: error instanceof Error ? error.message : String(error) }] };
  }
}
