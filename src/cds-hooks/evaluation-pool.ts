import { Worker } from 'node:worker_threads';
import { toTransferable, type TransferableKnowledge } from '../batch/transfer.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import { evaluateFromPrefetch, type CallBody, type PrefetchOutcome } from './prefetch-evaluation.ts';
import type { CdsService } from './services.ts';

const WORKER_ENTRY = new URL('../worker-entry.js', import.meta.url);
const WORKER_MODULE = new URL('./evaluation-worker.ts', import.meta.url).href;

/** Messages to an evaluation worker: a knowledge version to prepare, or a call to answer with it. */
export type EvaluationWorkerRequest =
  | { readonly type: 'knowledge'; readonly version: string; readonly knowledge: TransferableKnowledge }
  | { readonly type: 'call'; readonly id: number; readonly version: string; readonly serviceId: string; readonly body: CallBody; readonly evaluatedAt: string };

export interface EvaluationWorkerResponse {
  readonly id: number;
  readonly outcome: PrefetchOutcome;
}

/** Evaluates service calls from their body (see prefetch-evaluation.ts), on worker threads or in this one. */
export interface CallEvaluator {
  evaluate(prepared: PreparedKnowledge, service: CdsService, body: CallBody, evaluatedAt: string): Promise<PrefetchOutcome>;
  close(): Promise<void>;
}

/** inThreadEvaluator evaluates on the calling thread (tests, and machines with one core). */
export const inThreadEvaluator: CallEvaluator = {
  evaluate: evaluateFromPrefetch,
  close: async () => undefined,
};

/**
 * Calls a worker holds at most: the one it evaluates and the next, sent ahead. When every worker is
 * busy, a worker that finishes a call starts the next at once, warm, instead of posting its answer
 * and sleeping until this thread (maybe busy verifying a signature) hands it another: on the 2-vCPU
 * VM a worker that sleeps even a millisecond evaluates its next call ~1 ms slower (cold caches),
 * and the hand-over gap idles a worker just when calls queue. More ahead would only queue calls
 * behind one worker that another, freed sooner, could have taken.
 */
const CALLS_PER_WORKER = 2;

interface PooledWorker {
  readonly worker: Worker;
  /** The knowledge version last sent; messages are handled in order, so calls after it use it. */
  version: string | undefined;
  /** Calls sent and not yet answered, in the order sent: the worker answers them one at a time, in that order. */
  readonly jobs: Job[];
}

interface Job {
  readonly id: number;
  readonly prepared: PreparedKnowledge;
  readonly service: CdsService;
  readonly body: CallBody;
  readonly evaluatedAt: string;
  readonly resolve: (outcome: PrefetchOutcome) => void;
}

/**
 * createEvaluationPool starts `threads` worker threads that answer service calls from the body
 * text, so evaluation uses every core while this thread only authenticates, routes and audits.
 * Each worker evaluates one call at a time (interleaving many evaluations on one thread only
 * makes each slower). A call goes to an idle worker; when none is idle, to a busy one holding
 * fewer than CALLS_PER_WORKER; otherwise it waits here, in arrival order. A worker
 * prepares a knowledge version when first sent a call that uses it (the set travels as plain
 * data, as for the nightly batch). A worker that fails answers its calls with `fallback` (the
 * caller's full path answers it) and leaves the pool; with no worker left, calls are evaluated
 * on this thread.
 */
export function createEvaluationPool(threads: number, log: (message: string, error?: unknown) => void = () => undefined): CallEvaluator {
  const workers: PooledWorker[] = [];
  const waiting: Job[] = [];
  const transferable = new WeakMap<PreparedKnowledge, TransferableKnowledge>();
  let nextId = 0;

  const start = (pooled: PooledWorker, job: Job): void => {
    const { version } = job.prepared.knowledge;
    if (pooled.version !== version) {
      let data = transferable.get(job.prepared);
      if (!data) transferable.set(job.prepared, (data = toTransferable(job.prepared.knowledge)));
      pooled.worker.postMessage({ type: 'knowledge', version, knowledge: data } satisfies EvaluationWorkerRequest);
      pooled.version = version;
    }
    pooled.jobs.push(job);
    pooled.worker.ref();
    pooled.worker.postMessage({ type: 'call', id: job.id, version, serviceId: job.service.id, body: job.body, evaluatedAt: job.evaluatedAt } satisfies EvaluationWorkerRequest);
  };

  /** The worker to send a call to now: an idle one, else the least loaded with room; none when all are full. */
  const workerFor = (): PooledWorker | undefined => {
    let best: PooledWorker | undefined;
    for (const pooled of workers) {
      if (pooled.jobs.length === 0) return pooled;
      if (pooled.jobs.length < CALLS_PER_WORKER && (!best || pooled.jobs.length < best.jobs.length)) best = pooled;
    }
    return best;
  };

  const refill = (pooled: PooledWorker): void => {
    while (pooled.jobs.length < CALLS_PER_WORKER) {
      const job = waiting.shift();
      if (!job) break;
      start(pooled, job);
    }
    if (pooled.jobs.length === 0) pooled.worker.unref();
  };

  const retire = (pooled: PooledWorker, error: unknown): void => {
    const at = workers.indexOf(pooled);
    if (at < 0) return;
    workers.splice(at, 1);
    log(`a CDS evaluation worker stopped; ${workers.length} left`, error);
    for (const job of pooled.jobs.splice(0)) job.resolve({ kind: 'fallback' });
    if (workers.length === 0) for (const job of waiting.splice(0)) void evaluateFromPrefetch(job.prepared, job.service, job.body, job.evaluatedAt).then(job.resolve);
  };

  for (let i = 0; i < threads; i++) {
    const worker = new Worker(WORKER_ENTRY, { workerData: { module: WORKER_MODULE } });
    const pooled: PooledWorker = { worker, version: undefined, jobs: [] };
    worker.on('message', (response: EvaluationWorkerResponse) => {
      const job = pooled.jobs[0];
      if (job?.id !== response.id) return;
      pooled.jobs.shift();
      job.resolve(response.outcome);
      refill(pooled);
    });
    worker.on('error', (error) => retire(pooled, error));
    worker.on('exit', (code) => retire(pooled, new Error(`exited with code ${code}`)));
    // An idle pool must not keep the process alive; a worker with a call to answer does.
    worker.unref();
    workers.push(pooled);
  }

  return {
    evaluate(prepared, service, body, evaluatedAt) {
      if (workers.length === 0) return evaluateFromPrefetch(prepared, service, body, evaluatedAt);
      return new Promise((resolve) => {
        const job: Job = { id: nextId++, prepared, service, body, evaluatedAt, resolve };
        const pooled = workerFor();
        if (pooled) start(pooled, job);
        else waiting.push(job);
      });
    },
    async close() {
      const stopping = workers.splice(0);
      for (const job of [...stopping.flatMap((w) => w.jobs.splice(0)), ...waiting.splice(0)]) job.resolve({ kind: 'fallback' });
      await Promise.all(stopping.map((w) => w.worker.terminate()));
    },
  };
}
