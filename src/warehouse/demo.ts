/**
 * ensureDemoPopulation gives a fresh clone data to show: when the warehouse has no patients it
 * generates a small synthetic population and ingests it. `npm start` calls this before serving.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatePopulation } from '../synthetic/generate.ts';
import { withWarehouse } from './database.ts';
import { ingestPaths, type IngestCounts } from './ingest.ts';
import { countPatients } from './read.ts';

/** DemoOptions: the database file, the ingest time and the population shape (defaults 1,000, seed 1). */
export interface DemoOptions {
  readonly path: string;
  readonly now: Date;
  readonly patients?: number;
  readonly seed?: number;
}

/** ensureDemoPopulation returns the ingest counts when it loaded data, or null when data was there. */
export async function ensureDemoPopulation(options: DemoOptions): Promise<IngestCounts | null> {
  return withWarehouse({ path: options.path }, async (warehouse) => {
    if ((await countPatients(warehouse)) > 0) return null;
    const dir = await mkdtemp(join(tmpdir(), 'cairn-demo-'));
    try {
      await generatePopulation({ patients: options.patients ?? 1000, seed: options.seed ?? 1, outDir: dir });
      return await ingestPaths(warehouse, [dir], { now: options.now, sources: ['synthetic demo population'] });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
