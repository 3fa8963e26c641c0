import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CairnError } from '../domain/errors.ts';
import { runBulkExport } from './bulk-client.ts';
import { queryRows, type Warehouse } from './database.ts';
import { ingestFiles, ingestPaths, type IngestCounts } from './ingest.ts';

/** Where the nightly job gets new data: files/folders to (re)read, and/or a Bulk Data server. */
export interface IngestSources {
  readonly paths?: readonly string[];
  readonly bulk?: {
    readonly url: string;
    /** A file holding the bearer token (kept out of the config file). */
    readonly tokenFile?: string;
    readonly types?: readonly string[];
  };
}

const sinceKey = (url: string): string => `bulk_since:${url}`;

/**
 * ingestFromSources loads the configured sources into the warehouse, each as one ingest
 * transaction. A Bulk Data export asks only for changes since the previous export's
 * `transactionTime`, remembered in the warehouse once its ingest committed.
 */
export async function ingestFromSources(warehouse: Warehouse, sources: IngestSources, now: Date, log: (event: string, detail: Record<string, unknown>) => void = () => undefined): Promise<IngestCounts[]> {
  const results: IngestCounts[] = [];
  if (sources.paths && sources.paths.length > 0) results.push(await ingestPaths(warehouse, [...sources.paths], { now, sources: [...sources.paths] }));
  if (sources.bulk) {
    const { url, tokenFile, types } = sources.bulk;
    let token: string | undefined;
    if (tokenFile) {
      try {
        token = (await readFile(tokenFile, 'utf8')).trim();
      } catch (error) {
        throw new CairnError('CONFIG_INVALID', `cannot read the Bulk Data token file ${tokenFile}: ${(error as Error).message}`);
      }
    }
    const since = (await queryRows(warehouse.connection, `SELECT value FROM cairn_meta WHERE key = $1`, [sinceKey(url)]))[0]?.value;
    const dir = await mkdtemp(join(tmpdir(), 'cairn-bulk-'));
    try {
      const result = await runBulkExport({
        url, downloadDir: dir, log,
        ...(token ? { token } : {}),
        ...(types ? { types } : {}),
        ...(typeof since === 'string' ? { since } : {}),
      });
      results.push(await ingestFiles(warehouse, result.files, { now, quarantine: result.errors, sources: [url] }));
      await warehouse.connection.run(`INSERT OR REPLACE INTO cairn_meta VALUES ($1, $2)`, [sinceKey(url), result.manifest.transactionTime]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return results;
}
