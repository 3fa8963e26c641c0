import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import type { Warehouse } from '../warehouse/database.ts';
import type { IngestCounts } from '../warehouse/ingest.ts';
import type { RunSummary } from '../warehouse/results.ts';
import { ingestFromSources, type IngestSources } from '../warehouse/source-ingest.ts';
import { runBatch } from './run-batch.ts';

export interface NightlyOptions {
  readonly sources: IngestSources;
  readonly evaluatedAt: string;
  readonly now: () => Date;
  readonly workers?: number;
  /** Trust `meta.profile` in measure retrieves (runBatch's option; configuration `batch.trustMetaProfile`). */
  readonly trustMetaProfile?: boolean;
  readonly log?: (event: string, detail: Record<string, unknown>) => void;
  readonly onProgress?: (done: number, total: number) => void;
}

/** runNightly is the nightly job: ingest new data from the configured sources, then evaluate and publish. */
export async function runNightly(warehouse: Warehouse, prepared: PreparedKnowledge, options: NightlyOptions): Promise<{ ingests: IngestCounts[]; run: RunSummary }> {
  const ingests = await ingestFromSources(warehouse, options.sources, options.now(), options.log);
  const run = await runBatch(warehouse, prepared, {
    evaluatedAt: options.evaluatedAt,
    now: options.now,
    ...(options.workers ? { workers: options.workers } : {}),
    trustMetaProfile: options.trustMetaProfile === true,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  return { ingests, run };
}
