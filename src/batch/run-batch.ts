import { deterministicUuid } from '../evaluate/ids.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import { capMemory, type Warehouse } from '../warehouse/database.ts';
import { countPatients, streamPatientJson, type PatientJson } from '../warehouse/read.ts';
import { BATCH_MEMORY_LIMIT, beginRun, dataSnapshot, publishedRuns, type PatientResults, type RunSummary } from '../warehouse/results.ts';
import { measurementPeriod } from '../measures/evaluate.ts';
import type { IndividualReport } from '../measures/measure-report.ts';
import { createSummarizer } from '../measures/summarize.ts';
import { evaluateForBatch, type BatchEvaluationOptions } from './patient-evaluation.ts';
import { createEvaluationPool } from './pool.ts';

export interface BatchOptions {
  /** The instant every patient is evaluated at (CQL Now()). */
  readonly evaluatedAt: string;
  /** Wall clock, for the run's start and end times only. */
  readonly now: () => Date;
  /** Worker threads evaluating patients; 0 evaluates on this thread. */
  readonly workers?: number;
  readonly onProgress?: (done: number, total: number) => void;
  /** Trust `meta.profile` in measure retrieves (see {@link BatchEvaluationOptions}); default off. */
  readonly trustMetaProfile?: boolean;
}

/** Patients per message to a worker: small enough to balance, large enough to amortise messaging. */
const SLICE = 25;

/**
 * runBatch evaluates every patient in the warehouse against the knowledge's active batch rules
 * and measures, and publishes the alerts, care gaps, MeasureReports (individual, summary,
 * subject-list) and errors of the run atomically: until the run commits,
 * readers see the previous run; a run that fails or is killed leaves nothing behind, and the next
 * run starts over, so no patient is ever counted twice. A patient that cannot be evaluated is an
 * error row, never a failed run.
 */
export async function runBatch(warehouse: Warehouse, prepared: PreparedKnowledge, options: BatchOptions): Promise<RunSummary> {
  if (Number.isNaN(Date.parse(options.evaluatedAt))) throw new Error(`evaluatedAt "${options.evaluatedAt}" is not an ISO 8601 instant`);
  const startedAt = options.now().toISOString();
  const snapshot = await dataSnapshot(warehouse);
  const knowledgeVersion = prepared.knowledge.version;
  // Derived from its inputs, and from how many runs came before, so even a rerun of the same instant gets its own id.
  const sequence = await publishedRuns(warehouse);
  const runId = `run-${options.evaluatedAt.replace(/[^0-9]/g, '').slice(0, 14)}-${deterministicUuid(knowledgeVersion, snapshot, options.evaluatedAt, startedAt, String(sequence)).slice(0, 8)}`;
  const total = await countPatients(warehouse);
  const uncapMemory = await capMemory(warehouse, BATCH_MEMORY_LIMIT);
  const writer = await beginRun(warehouse, runId).catch(async (error: unknown) => {
    await uncapMemory();
    throw error;
  });
  const pool = options.workers ? createEvaluationPool(prepared.knowledge, options.workers) : undefined;
  const counts = { patients: 0, alerts: 0, careGaps: 0, errors: 0 };
  const reading: BatchEvaluationOptions = { trustMetaProfile: options.trustMetaProfile === true };
  const summarizers = new Map(prepared.measures.map((m) => [m.definition.canonical, createSummarizer(m, { period: measurementPeriod(m) })]));
  let writes: Promise<void> = Promise.resolve();
  const record = (results: readonly PatientResults[]): Promise<void> => {
    writes = writes.then(async () => {
      for (const r of results) {
        await writer.add(r);
        // Reports evaluated in worker threads are summarized there (merged below); these only when evaluated here.
        for (const { measure, report } of r.measureReports) if (report !== undefined) summarizers.get(measure)?.add(report as IndividualReport);
        counts.patients++;
        counts.alerts += r.alerts.length;
        counts.careGaps += r.careGaps.length;
        counts.errors += r.errors.length;
      }
      options.onProgress?.(counts.patients, total);
    });
    return writes;
  };
  const evaluate = async (slice: readonly PatientJson[]): Promise<readonly PatientResults[]> => {
    if (pool) return pool.evaluate(slice, options.evaluatedAt, reading);
    const out: PatientResults[] = [];
    for (const p of slice) out.push(await evaluateForBatch(prepared, p.patientId, JSON.parse(p.resourcesJson) as unknown[], options.evaluatedAt, reading));
    return out;
  };
  const inFlight = new Set<Promise<void>>();
  try {
    const limit = Math.max(1, (options.workers ?? 0) * 2);
    for await (const chunk of streamPatientJson(warehouse)) {
      for (let i = 0; i < chunk.length; i += SLICE) {
        const job: Promise<void> = evaluate(chunk.slice(i, i + SLICE)).then(record).finally(() => inFlight.delete(job));
        inFlight.add(job);
        if (inFlight.size >= limit) await Promise.race(inFlight);
      }
    }
    await Promise.all(inFlight);
    await writes;
    for (const state of (await pool?.summaries()) ?? []) summarizers.get(state.measure)?.merge(state);
    for (const [measure, summarizer] of summarizers) {
      await writer.addMeasureReport(measure, 'summary', summarizer.finish('summary'));
      await writer.addMeasureReport(measure, 'subject-list', summarizer.finish('subject-list'));
    }
    const summary: RunSummary = { runId, startedAt, finishedAt: options.now().toISOString(), evaluatedAt: options.evaluatedAt, knowledgeVersion, dataSnapshot: snapshot, ...counts };
    await writer.publish(summary);
    return summary;
  } catch (error) {
    await Promise.allSettled(inFlight);
    await writes.catch(() => undefined);
    await writer.abandon();
    throw error;
  } finally {
    await pool?.close();
    await uncapMemory();
  }
}
