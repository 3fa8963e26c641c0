import { Worker } from 'node:worker_threads';
import type { KnowledgeSet } from '../knowledge/knowledge-set.ts';
import type { SummaryState } from '../measures/summarize.ts';
import type { PatientJson } from '../warehouse/read.ts';
import type { PatientResults } from '../warehouse/results.ts';
import type { BatchEvaluationOptions } from './patient-evaluation.ts';
import { toTransferable } from './transfer.ts';

/** The plain-JavaScript entry every worker thread starts from, and the module it loads here. */
const WORKER_ENTRY = new URL('../worker-entry.js', import.meta.url);
const WORKER_MODULE = new URL('./worker.ts', import.meta.url).href;

/** What a worker is asked: evaluate patients, or hand over the measure summaries of what it evaluated. */
export type WorkerRequest =
  | {
      readonly kind: 'evaluate';
      readonly id: number;
      readonly evaluatedAt: string;
      readonly options: BatchEvaluationOptions;
      /** Each patient's resources as one JSON array text: parsed in the worker, not cloned as objects. */
      readonly patients: readonly PatientJson[];
    }
  | { readonly kind: 'summaries'; readonly id: number };

/**
 * What a worker answers. Evaluated patients come back ready to write (reports and care-gap issues
 * as JSON text); their reports are summarized in the worker, and the summaries asked for at the end.
 */
export type WorkerResponse = { readonly id: number; readonly results: readonly PatientResults[] } | { readonly id: number; readonly summaries: readonly SummaryState[] };

/** An evaluator of patient chunks: a pool of worker threads, one run long. */
export interface EvaluationPool {
  evaluate(patients: readonly PatientJson[], evaluatedAt: string, options?: BatchEvaluationOptions): Promise<readonly PatientResults[]>;
  /** summaries returns every worker's measure summaries of the patients it evaluated; call once all evaluations are done. */
  summaries(): Promise<readonly SummaryState[]>;
  close(): Promise<void>;
}

type Pending = { resolve: (response: WorkerResponse) => void; reject: (e: Error) => void; worker: Worker };

/**
 * createEvaluationPool starts `size` worker threads, each preparing the knowledge once, and hands
 * each chunk to the least busy worker. A worker that dies fails the chunks it held (and so the run).
 */
export function createEvaluationPool(knowledge: KnowledgeSet, size: number): EvaluationPool {
  const data = toTransferable(knowledge);
  const pending = new Map<number, Pending>();
  const load = new Map<Worker, number>();
  let nextId = 0;
  const workers = Array.from({ length: size }, () => {
    const worker = new Worker(WORKER_ENTRY, { workerData: { module: WORKER_MODULE, knowledge: data } });
    load.set(worker, 0);
    worker.on('message', (response: WorkerResponse) => {
      const job = pending.get(response.id);
      if (!job) return;
      pending.delete(response.id);
      load.set(worker, (load.get(worker) ?? 1) - 1);
      job.resolve(response);
    });
    const fail = (error: Error): void => {
      for (const [id, job] of pending) {
        if (job.worker !== worker) continue;
        pending.delete(id);
        job.reject(error);
      }
    };
    worker.on('error', fail);
    worker.on('exit', (code) => code !== 0 && fail(new Error(`batch worker exited with code ${code}`)));
    return worker;
  });
  const ask = (worker: Worker, request: (id: number) => WorkerRequest): Promise<WorkerResponse> => {
    const id = nextId++;
    load.set(worker, (load.get(worker) ?? 0) + 1);
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject, worker });
      worker.postMessage(request(id));
    });
  };
  return {
    async evaluate(patients, evaluatedAt, options = {}) {
      const worker = [...load.entries()].sort((a, b) => a[1] - b[1])[0]?.[0];
      if (!worker) throw new Error('the evaluation pool has no workers');
      const response = await ask(worker, (id) => ({ kind: 'evaluate', id, evaluatedAt, options, patients }));
      return 'results' in response ? response.results : [];
    },
    async summaries() {
      const responses = await Promise.all(workers.map((worker) => ask(worker, (id) => ({ kind: 'summaries', id }))));
      return responses.flatMap((response) => ('summaries' in response ? response.summaries : []));
    },
    async close() {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
