/** One batch of patients rendered as NDJSON bytes per resource type, in patient order. */
import { generatePatient, type PopulationContext } from './patient.ts';

/** BatchRequest names the patients [from, to) of batch number `id`. */
export interface BatchRequest {
  readonly id: number;
  readonly from: number;
  readonly to: number;
}

/** TypeChunk is the NDJSON of one resource type within a batch. */
export interface TypeChunk {
  readonly type: string;
  readonly count: number;
  readonly bytes: Uint8Array;
}

/** RenderedBatch is what a batch produced; chunks keep first-seen type order. */
export interface RenderedBatch {
  readonly id: number;
  readonly chunks: readonly TypeChunk[];
}

/** renderBatch generates patients [from, to) and serialises them; the same request gives the same bytes. */
export function renderBatch(request: BatchRequest, ctx: PopulationContext): RenderedBatch {
  const parts = new Map<string, { lines: string[] }>();
  for (let i = request.from; i < request.to; i++) {
    for (const resource of generatePatient(i, ctx)) {
      let part = parts.get(resource.resourceType);
      if (!part) {
        part = { lines: [] };
        parts.set(resource.resourceType, part);
      }
      part.lines.push(JSON.stringify(resource));
    }
  }
  const chunks: TypeChunk[] = [];
  for (const [type, { lines }] of parts) {
    const buffer = Buffer.from(`${lines.join('\n')}\n`, 'utf8');
    // A private copy, so the worker can transfer it without touching Node's shared buffer pool.
    chunks.push({ type, count: lines.length, bytes: new Uint8Array(buffer.buffer.byteLength === buffer.length ? buffer.buffer : buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length)) });
  }
  return { id: request.id, chunks };
}
