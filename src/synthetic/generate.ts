/**
 * generatePopulation writes a synthetic population as Bulk Data NDJSON (one file per resource
 * type, `<Type>.ndjson`), streaming patient by patient so memory stays flat in N.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { CairnError } from '../domain/errors.ts';
import { generateDirectory, generatePatient, type PopulationContext, type Resource } from './patient.ts';

/** GenerateOptions; asOf defaults to a fixed date so output depends only on the inputs. */
export interface GenerateOptions {
  readonly patients: number;
  readonly seed: number;
  readonly outDir: string;
  /** asOf is the end of the simulated history; default 2026-01-01 (measurement period 2025 is covered). */
  readonly asOf?: Date;
  readonly years?: number;
  readonly onProgress?: (patientsDone: number, total: number) => void;
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

class TypeWriter {
  private parts: string[] = [];
  private size = 0;
  count = 0;
  bytes = 0;
  constructor(readonly path: string, private readonly stream: WriteStream) {}

  add(json: string): Promise<void> | null {
    this.parts.push(json, '\n');
    this.size += json.length + 1;
    this.count++;
    return this.size >= FLUSH_BYTES ? this.flush() : null;
  }

  async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const chunk = this.parts.join('');
    this.parts = [];
    this.size = 0;
    const buffer = Buffer.from(chunk, 'utf8');
    this.bytes += buffer.length;
    if (!this.stream.write(buffer)) await once(this.stream, 'drain');
  }

  async close(): Promise<void> {
    await this.flush();
    this.stream.end();
    await once(this.stream, 'finish');
  }
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
  const write = async (resource: Resource): Promise<void> => {
    let writer = writers.get(resource.resourceType);
    if (!writer) {
      const path = join(options.outDir, `${resource.resourceType}.ndjson`);
      writer = new TypeWriter(path, createWriteStream(path));
      writers.set(resource.resourceType, writer);
    }
    const pending = writer.add(JSON.stringify(resource));
    if (pending) await pending;
  };
  try {
    for (const resource of directory.resources) await write(resource);
    for (let i = 0; i < options.patients; i++) {
      for (const resource of generatePatient(i, ctx)) await write(resource);
      if (options.onProgress && (i + 1) % 1000 === 0) options.onProgress(i + 1, options.patients);
    }
  } finally {
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
