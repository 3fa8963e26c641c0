import type { AlertDecision, CareGapDecision } from '../domain/decisions.ts';
import { evaluatePatient } from '../evaluate/evaluate.ts';
import { deterministicUuid } from '../evaluate/ids.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import type { Warehouse } from '../warehouse/database.ts';
import { countPatients, streamPatients } from '../warehouse/read.ts';
import { beginRun, dataSnapshot, type RunSummary } from '../warehouse/results.ts';

export interface BatchOptions {
  /** The instant every patient is evaluated at (CQL Now()). */
  readonly evaluatedAt: string;
  /** Wall clock, for the run's start and end times only. */
  readonly now: () => Date;
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * runBatch evaluates every patient in the warehouse against the knowledge's active batch rules
 * and publishes the alerts, care gaps and per-rule errors of the run atomically: until the run
 * commits, readers see the previous run; a failed run leaves nothing behind.
 */
export async function runBatch(warehouse: Warehouse, prepared: PreparedKnowledge, options: BatchOptions): Promise<RunSummary> {
  const startedAt = options.now().toISOString();
  const snapshot = await dataSnapshot(warehouse);
  const knowledgeVersion = prepared.knowledge.version;
  const runId = `run-${options.evaluatedAt.replace(/[^0-9]/g, '').slice(0, 14)}-${deterministicUuid(knowledgeVersion, snapshot, options.evaluatedAt, startedAt).slice(0, 8)}`;
  const total = await countPatients(warehouse);
  const writer = await beginRun(warehouse, runId);
  let patients = 0;
  let alerts = 0;
  let careGaps = 0;
  let errors = 0;
  try {
    for await (const chunk of streamPatients(warehouse)) {
      for (const patient of chunk) {
        const evaluation = await evaluatePatient(prepared, patient.resources as never, { evaluatedAt: options.evaluatedAt });
        const patientAlerts = evaluation.decisions.filter((d): d is AlertDecision => d.kind === 'alert');
        const patientGaps = evaluation.decisions.filter((d): d is CareGapDecision => d.kind === 'care-gap');
        await writer.add({ patientId: patient.patientId, alerts: patientAlerts, careGaps: patientGaps, errors: evaluation.errors });
        patients++;
        alerts += patientAlerts.length;
        careGaps += patientGaps.length;
        errors += evaluation.errors.length;
      }
      options.onProgress?.(patients, total);
    }
    const summary: RunSummary = {
      runId, startedAt, finishedAt: options.now().toISOString(), evaluatedAt: options.evaluatedAt, knowledgeVersion,
      dataSnapshot: snapshot, patients, alerts, careGaps, errors,
    };
    await writer.publish(summary);
    return summary;
  } catch (error) {
    await writer.abandon();
    throw error;
  }
}
