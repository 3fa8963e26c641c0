import { Worker } from 'node:worker_threads';
import { toTransferable, type TransferableKnowledge } from '../batch/transfer.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import { evaluateFromPrefetch, type PrefetchOutcome } from './prefetch-evaluation.ts';
import type { CdsService } from './services.ts';

const WORKER_ENTRY = new URL('../worker-entry.js', import.meta.url);
const WORKER_MODULE = new URL('./evaluation-worker.ts', import.meta.url).href;

/** Messages to an evaluation worker: a knowledge version to prepare, or a call to answer with it. */
export type EvaluationWorkerRequest =
  | { readonly type: 'knowledge'; readonly version: string; readonly knowledge: TransferableKnowledge }
  | { readonly type: 'call'; readonly id: number; readonly version: string; readonly serviceId: string; readonly body: string; readonly evaluatedAt: string };

export interface EvaluationWorkerResponse {
  readonly id: number;
  readonly outcome: PrefetchOutcome;
}

/** Evaluates service calls from their body (see prefetch-evaluation.ts), on worker threads or in this one. */
export interface CallEvaluator {
  evaluate(prepared: PreparedKnowledge, service: CdsService, body: string, evaluatedAt: string): Promise<PrefetchOutcome>;
  close(): Promise<void>;
}

/** inThreadEvaluator evaluates on the calling thread (tests, and machines with one core). */
export const inThreadEvaluator: CallEvaluator = {
  evaluate: evaluateFromPrefetch,
  close: async () => undefined,
};

interface PooledWorker {
  readonly worker: Worker;
  /** The knowledge version last sent; messages are handled in order, so calls after it use it. */
  version: string | undefined;
  busy: number;
}

/**
 * createEvaluationPool starts `threads` worker threads that answer service calls from the body
 * text, so evaluation uses every core while this thread only authenticates, routes and audits.
 * Each worker prepares a knowledge version when first asked to use it (the set travels as plain
 * data, as for the nightly batch); a call goes to the least busy worker. A worker that fails
 * answers its calls with `fallback` (the caller's full path answers them) and leaves the pool;
 * with no worker left, calls are evaluated on this thread.
 */
export function createEvaluationPool(threads: number, log: (message: string, error?: unknown) => void = () => undefined): CallEvaluator {
  const pending = new Map<number, { readonly resolve: (outcome: PrefetchOutcome) => void; readonly worker: PooledWorker }>();
  const workers: PooledWorker[] = [];
  const transferable = new WeakMap<PreparedKnowledge, TransferableKnowledge>();
  let nextId = 0;

  const retire = (pooled: PooledWorker, error: unknown): void => {
    const at = workers.indexOf(pooled);
    if (at < 0) return;
    workers.splice(at, 1);
    log(`a CDS evaluation worker stopped; ${workers.length} left`, error);
    for (const [id, job] of pending) {
      if (job.worker !== pooled) continue;
      pending.delete(id);
      job.resolve({ kind: 'fallback' });
    }
  };

  for (let i = 0; i < threads; i++) {
    const worker = new Worker(WORKER_ENTRY, { workerData: { module: WORKER_MODULE } });
    const pooled: PooledWorker = { worker, version: undefined, busy: 0 };
    worker.on('message', (response: EvaluationWorkerResponse) => {
      const job = pending.get(response.id);
      if (!job) return;
      pending.delete(response.id);
      pooled.busy--;
      job.resolve(response.outcome);
    });
    worker.on('error', (error) => retire(pooled, error));
    worker.on('exit', (code) => retire(pooled, new Error(`exited with code ${code}`)));
    // An idle pool must not keep the process alive.
    worker.unref();
    workers.push(pooled);
  }

  return {
    evaluate(prepared, service, body, evaluatedAt) {
      const pooled = workers.reduce<PooledWorker | undefined>((best, w) => (best === undefined || w.busy < best.busy ? w : best), undefined);
      if (!pooled) return evaluateFromPrefetch(prepared, service, body, evaluatedAt);
      const { version } = prepared.knowledge;
      if (pooled.version !== version) {
        let data = transferable.get(prepared);
        if (!data) transferable.set(prepared, (data = toTransferable(prepared.knowledge)));
        pooled.worker.postMessage({ type: 'knowledge', version, knowledge: data } satisfies EvaluationWorkerRequest);
        pooled.version = version;
      }
      const id = nextId++;
      pooled.busy++;
      return new Promise((resolve) => {
        pending.set(id, { resolve, worker: pooled });
        pooled.worker.postMessage({ type: 'call', id, version, serviceId: service.id, body, evaluatedAt } satisfies EvaluationWorkerRequest);
      });
    },
    async close() {
      const stopping = workers.splice(0);
      for (const job of pending.values()) job.resolve({ kind: 'fallback' });
      pending.clear();
      await Promise.all(stopping.map((w) => w.worker.terminate()));
    },
  };
}
