/**
 * Benchmark: NDJSON ingest into a fresh DuckDB file, then the same data again (idempotent pass).
 * Prints rows/s, MB/s, peak RSS and one JSON line.
 * Usage: node --import tsx bench/ingest.ts [patients=20000] [--data DIR]  (DIR: existing NDJSON)
 * Target (issue 4): at least 50 MB/s of NDJSON.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatePopulation } from '../src/synthetic/generate.ts';
import { withWarehouse } from '../src/warehouse/database.ts';
import { ingestPaths } from '../src/warehouse/ingest.ts';

const args = process.argv.slice(2);
const patients = Number(args.find((a) => /^\d+$/.test(a)) ?? 20_000);
const dataAt = args.indexOf('--data');
const work = await mkdtemp(join(tmpdir(), 'cairn-bench-ingest-'));
try {
  const data = dataAt >= 0 ? args[dataAt + 1]! : join(work, 'ndjson');
  if (dataAt < 0) await generatePopulation({ patients, seed: 1, outDir: data });
  const db = join(work, 'bench.duckdb');
  const now = new Date('2026-01-02T00:00:00Z');
  const time = async () => {
    const started = performance.now();
    const counts = await withWarehouse({ path: db }, (warehouse) => ingestPaths(warehouse, [data], { now }));
    return { counts, seconds: (performance.now() - started) / 1000 };
  };
  const first = await time();
  const second = await time();
  const mb = first.counts.bytes / 1e6;
  const result = {
    bench: 'ingest', files: first.counts.files, rows: first.counts.read, bytes: first.counts.bytes,
    seconds: Number(first.seconds.toFixed(2)), rowsPerSec: Math.round(first.counts.read / first.seconds),
    mbPerSec: Number((mb / first.seconds).toFixed(1)),
    reingestSeconds: Number(second.seconds.toFixed(2)), reingestMbPerSec: Number((mb / second.seconds).toFixed(1)),
    reingestChanged: second.counts.loaded + second.counts.replaced + second.counts.deleted,
    peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024), target: 'mbPerSec >= 50', pass: mb / first.seconds >= 50,
  };
  console.log(`ingest: ${result.rows} rows, ${mb.toFixed(0)} MB in ${result.seconds} s: ${result.rowsPerSec} rows/s, ${result.mbPerSec} MB/s`);
  console.log(`  re-ingest (no changes): ${result.reingestSeconds} s, ${result.reingestMbPerSec} MB/s; peak RSS ${result.peakRssMb} MB`);
  console.log(JSON.stringify(result));
} finally {
  await rm(work, { recursive: true, force: true });
}
