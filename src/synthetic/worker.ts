/**
 * A generation worker: turns batches of patient indexes into NDJSON bytes per resource type. Every
 * patient comes from its own seeded stream, so which worker builds it does not change a byte.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { renderBatch, type BatchRequest } from './batch.ts';
import type { PopulationContext } from './patient.ts';

const { ctx } = workerData as { ctx: PopulationContext };
parentPort!.on('message', (request: BatchRequest) => {
  const batch = renderBatch(request, ctx);
  parentPort!.postMessage(batch, batch.chunks.map((chunk) => chunk.bytes.buffer as ArrayBuffer));
});
