/**
 * generatePopulation writes a synthetic population as Bulk Data NDJSON (one file per resource
 * type, `<Type>.ndjson`), streaming batch by batch so memory stays flat in N. Batches are built on
 * worker threads and written in patient order, so the files are identical whatever the parallelism.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { CairnError } from '../domain/errors.ts';
import { renderBatch, type BatchRequest, type RenderedBatch } from './batch.ts';
import { generateDirectory, type PopulationContext } from './patient.ts';

/** GenerateOptions; asOf defaults to a fixed date so output depends only on the inputs. */
export interface GenerateOptions {
  readonly patients: number;
  readonly seed: number;
  readonly outDir: string;
  /** asOf is the end of the simulated history; default 2026-01-01 (measurement period 2025 is covered). */
  readonly asOf?: Date;
  readonly years?: number;
  readonly onProgress?: (patientsDone: number, total: number) => void;
  /** workers is how many threads build patients; 0 builds them on this thread. Default: up to 4 for large N. */
  readonly workers?: number;
}

/** GenerateStats counts what was written. */
export interface GenerateStats {
  readonly patients: number;
  readonly resources: number;
  readonly bytes: number;
  readonly byType: Readonly<Record<string, number>>;
  readonly files: readonly string[];
}

/** DEFAULT_AS_OF keeps generated data identical across runs and machines. */
export const DEFAULT_AS_OF = new Date('2026-01-01T00:00:00Z');
const FLUSH_BYTES = 1 << 20;
const BATCH_PATIENTS = 250;
/** The plain-JavaScript entry every worker thread starts from, and the module it loads here. */
const WORKER_ENTRY = new URL('../worker-entry.js', import.meta.url);
const WORKER_MODULE = new URL('./worker.ts', import.meta.url).href;
/** Below this many patients, starting threads costs more than it saves. */
const MIN_PATIENTS_FOR_WORKERS = 5000;

class TypeWriter {
  private parts: Uint8Array[] = [];
  private size = 0;
  count = 0;
  bytes = 0;
  constructor(readonly path: string, private readonly stream: WriteStream) {}

  add(bytes: Uint8Array, count: number): Promise<void> | null {
    this.parts.push(bytes);
    this.size += bytes.byteLength;
    this.count += count;
    return this.size >= FLUSH_BYTES ? this.flush() : null;
  }

  async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const chunk = Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    this.bytes += chunk.length;
    if (!this.stream.write(chunk)) await once(this.stream, 'drain');
  }

  async close(): Promise<void> {
    await this.flush();
    this.stream.end();
    await once(this.stream, 'finish');
  }
}

/** BatchSource renders batches in order, on worker threads or (workers = 0) on this thread. */
interface BatchSource {
  next(): Promise<RenderedBatch | null>;
  close(): Promise<void>;
}

function inlineSource(ctx: PopulationContext, requests: readonly BatchRequest[]): BatchSource {
  let index = 0;
  return {
    next: () => Promise.resolve(index < requests.length ? renderBatch(requests[index++]!, ctx) : null),
    close: () => Promise.resolve(),
  };
}

/**
 * workerSource hands batches round-robin to `size` workers, keeping at most two in flight per worker
 * (memory stays flat), and yields them in batch order.
 */
function workerSource(ctx: PopulationContext, requests: readonly BatchRequest[], size: number): BatchSource {
  const workers = Array.from({ length: size }, () => new Worker(WORKER_ENTRY, { workerData: { module: WORKER_MODULE, ctx } }));
  const waiting = new Map<number, { resolve: (batch: RenderedBatch) => void; reject: (error: Error) => void }>();
  const results = new Map<number, Promise<RenderedBatch>>();
  let failure: Error | null = null;
  for (const worker of workers) {
    worker.on('message', (batch: RenderedBatch) => {
      waiting.get(batch.id)?.resolve(batch);
      waiting.delete(batch.id);
    });
    const fail = (error: Error): void => {
      failure ??= error;
      for (const job of waiting.values()) job.reject(error);
      waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => code !== 0 && fail(new Error(`generation worker exited with code ${code}`)));
  }
  let sent = 0;
  let read = 0;
  const send = (): void => {
    while (sent < requests.length && sent < read + 2 * size) {
      const request = requests[sent]!;
      results.set(request.id, new Promise((resolve, reject) => {
        if (failure) return reject(failure);
        waiting.set(request.id, { resolve, reject });
        workers[sent % size]!.postMessage(request);
      }));
      sent++;
    }
  };
  return {
    async next() {
      if (read >= requests.length) return null;
      send();
      const id = requests[read]!.id;
      const batch = await results.get(id)!;
      results.delete(id);
      read++;
      send();
      return batch;
    },
    async close() {
      await Promise.all(workers.map((worker) => worker.terminate()));
    },
  };
}

/** generatePopulation writes N patients for `seed` into `outDir`; same inputs give identical files. */
export async function generatePopulation(options: GenerateOptions): Promise<GenerateStats> {
  if (!Number.isSafeInteger(options.patients) || options.patients < 1) {
    throw new CairnError('INPUT_INVALID', `--patients must be a positive whole number, got ${options.patients}.`);
  }
  if (!Number.isSafeInteger(options.seed)) throw new CairnError('INPUT_INVALID', `--seed must be a whole number, got ${options.seed}.`);
  await mkdir(options.outDir, { recursive: true });
  const asOf = (options.asOf ?? DEFAULT_AS_OF).getTime();
  const seed = options.seed >>> 0;
  const directory = generateDirectory({ seed, asOf }, Math.max(2, Math.ceil(options.patients / 400)), Math.max(1, Math.ceil(options.patients / 5000)));
  const ctx: PopulationContext = { seed, asOf, years: options.years ?? 5, practitionerIds: directory.practitionerIds, organizationIds: directory.organizationIds };
  const writers = new Map<string, TypeWriter>();
  const write = async (type: string, bytes: Uint8Array, count: number): Promise<void> => {
    let writer = writers.get(type);
    if (!writer) {
      const path = join(options.outDir, `${type}.ndjson`);
      writer = new TypeWriter(path, createWriteStream(path));
      writers.set(type, writer);
    }
    const pending = writer.add(bytes, count);
    if (pending) await pending;
  };
  const requests: BatchRequest[] = [];
  for (let from = 0, id = 0; from < options.patients; from += BATCH_PATIENTS, id++) {
    requests.push({ id, from, to: Math.min(from + BATCH_PATIENTS, options.patients) });
  }
  const threads = options.workers ?? (options.patients >= MIN_PATIENTS_FOR_WORKERS ? Math.min(4, availableParallelism()) : 0);
  const source = threads > 0 ? workerSource(ctx, requests, Math.min(threads, requests.length)) : inlineSource(ctx, requests);
  try {
    for (const resource of directory.resources) await write(resource.resourceType, Buffer.from(`${JSON.stringify(resource)}\n`, 'utf8'), 1);
    let done = 0;
    for (let batch = await source.next(); batch !== null; batch = await source.next()) {
      for (const chunk of batch.chunks) await write(chunk.type, chunk.bytes, chunk.count);
      const before = done;
      done = requests[batch.id]!.to;
      if (options.onProgress && Math.floor(done / 1000) > Math.floor(before / 1000)) options.onProgress(done, options.patients);
    }
  } finally {
    await source.close();
    for (const writer of writers.values()) await writer.close();
  }
  options.onProgress?.(options.patients, options.patients);
  const byType: Record<string, number> = {};
  let resources = 0;
  let bytes = 0;
  for (const [type, writer] of [...writers.entries()].sort()) {
    byType[type] = writer.count;
    resources += writer.count;
    bytes += writer.bytes;
  }
  return { patients: options.patients, resources, bytes, byType, files: [...writers.values()].map((w) => w.path).sort() };
}
