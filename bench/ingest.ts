/**
 * Benchmark: NDJSON ingest into a fresh DuckDB file, then the same data again (idempotent pass).
 * Prints rows/s, MB/s, the time of each phase, CPU seconds, peak RSS, the machine's load average
 * (the machine is shared, so say how busy it was) and one JSON line.
 * Usage: node --import tsx bench/ingest.ts [patients=20000] [--data DIR] [--memory 1GiB]
 *   --data DIR: ingest existing NDJSON instead of generating; --memory: DuckDB memory_limit while ingesting.
 * Target (issue 4): at least 50 MB/s of NDJSON, with peak memory that does not grow with the input.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatePopulation } from '../src/synthetic/generate.ts';
import { withWarehouse } from '../src/warehouse/database.ts';
import { INGEST_MEMORY_LIMIT, ingestPaths, type IngestPhase } from '../src/warehouse/ingest.ts';
import { cpuSecondsSince, flag, loadAverage, peakRssMb, positionalNumber, printResult, round } from './support.ts';

const patients = positionalNumber() ?? 20_000;
const given = flag('data');
const memoryLimit = flag('memory') ?? INGEST_MEMORY_LIMIT;
const work = await mkdtemp(join(tmpdir(), 'cairn-bench-ingest-'));
try {
  const data = given ?? join(work, 'ndjson');
  if (given === undefined) await generatePopulation({ patients, seed: 1, outDir: data });
  const db = join(work, 'bench.duckdb');
  const now = new Date('2026-01-02T00:00:00Z');
  const time = async () => {
    const phases: Partial<Record<IngestPhase, [seconds: number, cpuSeconds: number]>> = {};
    const loadBefore = loadAverage();
    const cpu = process.cpuUsage();
    let phaseCpu = process.cpuUsage();
    const started = performance.now();
    const counts = await withWarehouse({ path: db }, (warehouse) => ingestPaths(warehouse, [data], {
      now, memoryLimit, onPhase: (phase, ms) => {
        const used = cpuSecondsSince(phaseCpu);
        phaseCpu = process.cpuUsage();
        phases[phase] = [round(ms / 1000), round(used, 1)];
      },
    }));
    const used = cpuSecondsSince(cpu);
    return {
      counts, seconds: (performance.now() - started) / 1000, phases,
      cpuSeconds: round(used, 1), load: [loadBefore[0], loadAverage()[0]],
    };
  };
  const first = await time();
  const second = await time();
  const mb = first.counts.bytes / 1e6;
  const result = {
    bench: 'ingest', files: first.counts.files, rows: first.counts.read, bytes: first.counts.bytes,
    seconds: round(first.seconds), rowsPerSec: Math.round(first.counts.read / first.seconds),
    mbPerSec: round(mb / first.seconds, 1), phases: first.phases, cpuSeconds: first.cpuSeconds,
    reingestSeconds: round(second.seconds), reingestMbPerSec: round(mb / second.seconds, 1),
    reingestPhases: second.phases, reingestCpuSeconds: second.cpuSeconds,
    reingestChanged: second.counts.loaded + second.counts.replaced + second.counts.deleted,
    peakRssMb: peakRssMb(), duckdbMemoryLimit: memoryLimit,
    load1m: { ingest: first.load, reingest: second.load }, cores: availableParallelism(),
    target: 'mbPerSec >= 50', pass: mb / first.seconds >= 50,
  };
  const phases = (p: typeof first.phases) => Object.entries(p).map(([k, [s, cpu]]) => `${k} ${s} s (CPU ${cpu} s)`).join(', ');
  console.log(`ingest: ${result.rows} rows, ${round(mb, 0)} MB in ${result.seconds} s: ${result.rowsPerSec} rows/s, ${result.mbPerSec} MB/s`);
  console.log(`  phases: ${phases(first.phases)}; CPU ${first.cpuSeconds} s; load ${first.load.join(' -> ')}`);
  console.log(`  re-ingest (no changes): ${result.reingestSeconds} s, ${result.reingestMbPerSec} MB/s`);
  console.log(`  phases: ${phases(second.phases)}; CPU ${second.cpuSeconds} s; load ${second.load.join(' -> ')}`);
  console.log(`  peak RSS ${result.peakRssMb} MB (DuckDB memory_limit ${memoryLimit} while ingesting, ${result.cores} cores)`);
  printResult(console.log, result);
} finally {
  await rm(work, { recursive: true, force: true });
}
