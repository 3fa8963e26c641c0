/**
 * Benchmark: synthetic population generation. Prints patients/s, rows/s, MB/s, peak RSS and one
 * JSON line. Usage: node --import tsx bench/generate.ts [patients=100000] [--keep DIR]
 * Target (issue 4): 100,000 patients in under 60 s.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatePopulation } from '../src/synthetic/generate.ts';

const args = process.argv.slice(2);
const patients = Number(args.find((a) => /^\d+$/.test(a)) ?? 100_000);
const keepAt = args.indexOf('--keep');
const outDir = keepAt >= 0 ? args[keepAt + 1]! : await mkdtemp(join(tmpdir(), 'cairn-bench-gen-'));
const started = performance.now();
const stats = await generatePopulation({ patients, seed: 1, outDir });
const seconds = (performance.now() - started) / 1000;
const peakRssMb = process.resourceUsage().maxRSS / 1024;
if (keepAt < 0) await rm(outDir, { recursive: true, force: true });
const result = {
  bench: 'generate', patients, rows: stats.resources, bytes: stats.bytes, seconds: Number(seconds.toFixed(2)),
  patientsPerSec: Math.round(patients / seconds), rowsPerSec: Math.round(stats.resources / seconds),
  mbPerSec: Number((stats.bytes / 1e6 / seconds).toFixed(1)), peakRssMb: Math.round(peakRssMb),
  target: 'patients=100000 in < 60 s', pass: patients >= 100_000 ? seconds < 60 : null,
};
console.log(`generate: ${patients} patients, ${stats.resources} rows, ${(stats.bytes / 1e6).toFixed(0)} MB in ${seconds.toFixed(1)} s`);
console.log(`  ${result.rowsPerSec} rows/s, ${result.mbPerSec} MB/s, peak RSS ${result.peakRssMb} MB`);
console.log(JSON.stringify(result));
