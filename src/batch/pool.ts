import { Worker } from 'node:worker_threads';
import type { KnowledgeSet } from '../knowledge/knowledge-set.ts';
import type { PatientRecord } from '../warehouse/read.ts';
import type { PatientResults } from '../warehouse/results.ts';
import { toTransferable } from './transfer.ts';

export interface WorkerRequest {
  readonly id: number;
  readonly evaluatedAt: string;
  readonly patients: readonly PatientRecord[];
}

export interface WorkerResponse {
  readonly id: number;
  readonly results: readonly PatientResults[];
}

/** An evaluator of patient chunks: a pool of worker threads. */
export interface EvaluationPool {
  evaluate(patients: readonly PatientRecord[], evaluatedAt: string): Promise<readonly PatientResults[]>;
  close(): Promise<void>;
}

/**
 * createEvaluationPool starts `size` worker threads, each preparing the knowledge once, and hands
 * each chunk to the least busy worker. A worker that dies fails the chunks it held (and so the run).
 */
export function createEvaluationPool(knowledge: KnowledgeSet, size: number): EvaluationPool {
  const data = toTransferable(knowledge);
  const pending = new Map<number, { resolve: (r: readonly PatientResults[]) => void; reject: (e: Error) => void; worker: Worker }>();
  const load = new Map<Worker, number>();
  let nextId = 0;
  const workers = Array.from({ length: size }, () => {
    const worker = new Worker(new URL('./worker-entry.js', import.meta.url), { workerData: { knowledge: data } });
    load.set(worker, 0);
    worker.on('message', (response: WorkerResponse) => {
      const job = pending.get(response.id);
      if (!job) return;
      pending.delete(response.id);
      load.set(worker, (load.get(worker) ?? 1) - 1);
      job.resolve(response.results);
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
  return {
    evaluate(patients, evaluatedAt) {
      const worker = [...load.entries()].sort((a, b) => a[1] - b[1])[0]?.[0];
      if (!worker) return Promise.reject(new Error('the evaluation pool has no workers'));
      const id = nextId++;
      load.set(worker, (load.get(worker) ?? 0) + 1);
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject, worker });
        worker.postMessage({ id, evaluatedAt, patients } satisfies WorkerRequest);
      });
    },
    async close() {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
