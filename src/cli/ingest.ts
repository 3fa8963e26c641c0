/**
 * `cairn ingest PATH...` and `cairn ingest --from-fhir URL`: load FHIR R4 Bulk Data NDJSON and
 * Bundles into the analytical database in one transaction, printing what happened.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { CairnError } from '../domain/errors.ts';
import { runBulkExport } from '../warehouse/bulk-client.ts';
import { loadConfig } from '../config/config.ts';
import { withWarehouse } from '../warehouse/database.ts';
import { ingestFiles, ingestPaths, type IngestCounts, type IngestOptions } from '../warehouse/ingest.ts';

interface IngestFlags {
  readonly db: string;
  readonly fromFhir?: string;
  readonly type?: string;
  readonly since?: string;
  readonly tokenFile?: string;
  readonly wait: string;
  readonly progress: boolean;
}

/** formatCounts renders ingest counts as one human line. */
export function formatCounts(counts: IngestCounts): string {
  return `read ${counts.read}, loaded ${counts.loaded}, replaced ${counts.replaced}, unchanged ${counts.unchanged}, ` +
    `skipped ${counts.skipped}, deleted ${counts.deleted}, quarantined ${counts.quarantined} (${counts.files} files, run ${counts.runId})`;
}

function structuredLog(event: string, detail: Record<string, unknown>): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), component: 'ingest', event, ...detail })}\n`);
}

/** progressHooks shows a bar on a terminal and writes JSON log lines otherwise. */
function progressHooks(enabled: boolean): { hooks: Pick<IngestOptions, 'onProgress' | 'onFile'>; stop: () => void } {
  if (enabled && process.stderr.isTTY) {
    const bar = new SingleBar({ format: 'ingest [{bar}] {percentage}% {value}/{total} MB {file}', hideCursor: true, stream: process.stderr });
    let started = false;
    return {
      hooks: {
        onProgress: (done, total, file) => {
          if (!started) bar.start(Math.max(1, Math.round(total / 1e6)), 0, { file: '' });
          started = true;
          bar.update(Math.round(done / 1e6), { file: file.split('/').pop() ?? file });
        },
      },
      stop: () => started && bar.stop(),
    };
  }
  return { hooks: { onFile: (file) => structuredLog('file', { path: file.path, bytes: file.bytes }) }, stop: () => undefined };
}

async function readToken(path: string | undefined): Promise<string | undefined> {
  if (!path) return undefined;
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch (error) {
    throw new CairnError('INPUT_INVALID', `Could not read the bearer token file ${path}: ${(error as Error).message}`);
  }
}

async function runIngest(paths: string[], flags: IngestFlags): Promise<void> {
  if (paths.length === 0 && !flags.fromFhir) throw new CairnError('INPUT_INVALID', 'Give at least one file or folder to ingest, or --from-fhir URL.');
  const now = new Date();
  const started = performance.now();
  const { hooks, stop } = progressHooks(flags.progress);
  let counts: IngestCounts;
  try {
    counts = await withWarehouse({ path: flags.db, waitMs: Number(flags.wait) * 1000 }, async (warehouse) => {
      if (!flags.fromFhir) return ingestPaths(warehouse, paths, { now, ...hooks });
      const dir = await mkdtemp(join(tmpdir(), 'cairn-bulk-'));
      try {
        const token = await readToken(flags.tokenFile);
        const result = await runBulkExport({
          url: flags.fromFhir, token, downloadDir: dir, since: flags.since,
          types: flags.type ? flags.type.split(',') : undefined,
          log: structuredLog,
        });
        for (const error of result.errors) console.error(`warning: ${error.source}:${error.line ?? ''} ${error.reason}`);
        return ingestFiles(warehouse, result.files, { now, ...hooks, quarantine: result.errors, sources: [flags.fromFhir] });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  } finally {
    stop();
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(`${formatCounts(counts)} in ${seconds.toFixed(1)} s`);
  if (counts.quarantined > 0) console.log(`quarantined records are in table quarantine of ${flags.db} (run ${counts.runId})`);
  // Exit non-zero only when nothing at all could be read.
  if (counts.read === 0) process.exitCode = 1;
}

/** registerIngestCommand adds `cairn ingest`. */
export function registerIngestCommand(program: Command): void {
  program
    .command('ingest')
    .description('Load FHIR R4 Bulk Data NDJSON (.ndjson, .ndjson.gz) and Bundles (.json) from files or folders, or run a Bulk Data $export, into the analytical database.')
    .argument('[paths...]', 'files or folders to ingest')
    .option('--db <file>', 'DuckDB database file (default: CAIRN_DATABASE, the config file, or <data-dir>/cairn.duckdb)')
    .option('--from-fhir <url>', 'run a Bulk Data $export against this FHIR base, Group or $export URL and ingest the result')
    .option('--type <types>', 'with --from-fhir: comma-separated _type list')
    .option('--since <instant>', 'with --from-fhir: _since')
    .option('--token-file <file>', 'with --from-fhir: file holding the bearer token')
    .option('--wait <seconds>', 'wait this long for another process to release the database', '0')
    .option('--no-progress', 'no progress bar even on a terminal')
    .action(async (paths: string[], flags: Omit<IngestFlags, 'db'> & { db?: string }) =>
      runIngest(paths, { ...flags, db: flags.db ?? loadConfig({ env: process.env, cwd: process.cwd() }).databasePath }));
}
