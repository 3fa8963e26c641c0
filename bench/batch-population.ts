/**
 * Benchmark: the nightly batch over a generated population in DuckDB — every batch rule of the
 * sample knowledge (rules/, cql/, measures/) plus the five published QI-Core 2024 eCQMs, loaded
 * alongside it from ../shared (laid out in a temporary knowledge folder at run time, never copied
 * into the repository). Prints wall time, patients/s, peak RSS and the machine's load, then one
 * JSON line. Issue 5's target: 100,000 patients in under 10 minutes with peak RSS under 4 GB.
 *
 * Usage: node --import tsx bench/batch-population.ts [patients=100000] [--workers N]
 *        [--db FILE]  reuse (or create and keep) the warehouse file; generation and ingest run only when it is empty
 *
 * The generated population claims QI-Core profiles (meta.profile), so the batch trusts them, as
 * the eCQM conformance test does. Generation and ingest are timed, but apart from the batch.
 */
import { fork } from 'node:child_process';
import { copyFile, cp, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBatch } from '../src/batch/run-batch.ts';
import { createCqlCompiler } from '../src/cql-engine/compiler.ts';
import { loadFhirR4Model } from '../src/cql-engine/fhir-model.ts';
import { loadPreparedKnowledge } from '../src/evaluate/knowledge-service.ts';
import { generatePopulation } from '../src/synthetic/generate.ts';
import { withWarehouse, type Warehouse } from '../src/warehouse/database.ts';
import { ingestPaths } from '../src/warehouse/ingest.ts';
import { countPatients } from '../src/warehouse/read.ts';
import { measureSummaries, ruleCounts, type RunSummary } from '../src/warehouse/results.ts';
import { cpuSecondsSince, flag, isMain, loadAverage, numberFlag, peakRssMb, positionalNumber, printResult, round, sharedFixture } from './support.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CACHE_DIR = fileURLToPath(new URL('../.cache/bench-elm/', import.meta.url));
const ECQM = 'population/ecqm-content-qicore-2024';
/**
 * History up to 2027-01-01, evaluated then: every eCQM has data in its period (CMS104's
 * effectivePeriod is 2026, the others' 2025), and no data lies after the evaluation instant.
 */
const HISTORY_ENDS = new Date('2027-01-01T00:00:00Z');
const EVALUATED_AT = '2027-01-01T02:00:00Z';
const TARGET_SECONDS = 600;
const TARGET_RSS_MB = 4096;
const TARGET_PATIENTS = 100_000;
const TARGET = `${TARGET_PATIENTS} patients in < ${TARGET_SECONDS} s, peak RSS < ${TARGET_RSS_MB} MB`;

export interface BatchPopulationResult {
  readonly bench: 'batch-population';
  readonly skipped?: string;
  readonly patients?: number;
  readonly workers?: number;
  readonly batchRules?: number;
  readonly measures?: number;
  readonly generateSeconds?: number;
  readonly ingestSeconds?: number;
  readonly batchSeconds?: number;
  readonly patientsPerSec?: number;
  /** CPU time per patient of the batch process, in ms (all threads). */
  readonly cpuMsPerPatient?: number;
  readonly peakRssMb?: number;
  readonly alerts?: number;
  readonly careGaps?: number;
  readonly errors?: number;
  readonly load?: readonly number[];
  readonly target?: string;
  readonly meetsTarget?: boolean | null;
}

/**
 * knowledgeWithEcqms lays out our knowledge folders plus the published eCQMs (ELM into cql/,
 * ValueSet bundles into value-sets/, Measures into measures/) in a fresh temporary folder.
 */
export async function knowledgeWithEcqms(ecqm: string): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), 'cairn-bench-knowledge-'));
  for (const folder of ['cql', 'value-sets', 'rules', 'measures']) await cp(path.join(ROOT, folder), path.join(root, folder), { recursive: true });
  const into = async (from: string, folder: string, file: string): Promise<void> => {
    await mkdir(path.join(root, folder, 'ecqm'), { recursive: true });
    await copyFile(path.join(from, file), path.join(root, folder, 'ecqm', file));
  };
  for (const file of await readdir(path.join(ecqm, 'elm'))) await into(path.join(ecqm, 'elm'), 'cql', file);
  for (const measure of await readdir(path.join(ecqm, 'measures'))) {
    const dir = path.join(ecqm, 'measures', measure);
    for (const file of await readdir(dir)) {
      if (file.startsWith('valuesets-')) await into(dir, 'value-sets', file);
      else if (file.startsWith('Measure-')) await into(dir, 'measures', file);
    }
  }
  return root;
}

async function populate(warehouse: Warehouse, patients: number, log: (line: string) => void): Promise<{ generateSeconds: number; ingestSeconds: number }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cairn-bench-population-'));
  try {
    let started = performance.now();
    await generatePopulation({ patients, seed: 1, outDir: dir, asOf: HISTORY_ENDS });
    const generateSeconds = (performance.now() - started) / 1000;
    started = performance.now();
    await ingestPaths(warehouse, [dir], { now: new Date('2026-02-01T00:00:00Z'), sources: ['bench: synthetic population'] });
    const ingestSeconds = (performance.now() - started) / 1000;
    log(`  generated ${patients} patients in ${round(generateSeconds, 1)} s, ingested in ${round(ingestSeconds, 1)} s`);
    return { generateSeconds, ingestSeconds };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** What the batch process reports back. */
interface BatchOutcome {
  readonly batchSeconds: number;
  /** CPU time of the batch process (all its threads, DuckDB's too) during the run: steadier than wall time on a shared machine. */
  readonly cpuSeconds: number;
  readonly peakRssMb: number;
  readonly summary: RunSummary;
  readonly lines: readonly string[];
}

const CHILD_FLAG = '--batch-child';

/**
 * runBatchProcess is the nightly batch as `cairn batch` runs it: its own process (worker threads
 * inside), the knowledge loaded and prepared, then runBatch timed. Its peak RSS covers the worker
 * threads and DuckDB.
 */
async function runBatchProcess(knowledgeRoot: string, database: string, workers: number): Promise<BatchOutcome> {
  const prepared = await loadPreparedKnowledge(knowledgeRoot, { compiler: createCqlCompiler({ cacheDir: CACHE_DIR }), model: loadFhirR4Model() });
  return withWarehouse({ path: database }, async (warehouse) => {
    const lines: string[] = [];
    const started = performance.now();
    const cpuStart = process.cpuUsage();
    let shown = 0;
    const summary = await runBatch(warehouse, prepared, {
      evaluatedAt: EVALUATED_AT,
      now: () => new Date(),
      workers,
      trustMetaProfile: true,
      onProgress: (done, total) => {
        if (done - shown < Math.max(1000, total / 20) && done !== total) return;
        shown = done;
        process.stdout.write(`  ${done}/${total} patients, ${round(done / ((performance.now() - started) / 1000), 1)} patients/s so far, RSS ${Math.round(process.memoryUsage.rss() / 1024 / 1024)} MB\n`);
      },
    });
    const batchSeconds = (performance.now() - started) / 1000;
    const cpuSeconds = cpuSecondsSince(cpuStart);
    const peak = peakRssMb();
    for (const { measure, report } of await measureSummaries(warehouse, summary.runId)) lines.push(describe(measure, report));
    for (const row of await ruleCounts(warehouse, summary.runId)) {
      if (!row.ruleId.startsWith('measure:')) lines.push(`${row.ruleId.padEnd(60)} ${row.alerts} alerts, ${row.careGaps} care gaps, ${row.errors} errors`);
    }
    return { batchSeconds, cpuSeconds, peakRssMb: peak, summary, lines };
  });
}

function batchInChild(knowledgeRoot: string, database: string, workers: number): Promise<BatchOutcome> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [CHILD_FLAG, knowledgeRoot, database, String(workers)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let outcome: BatchOutcome | undefined;
    child.on('message', (message) => (outcome = message as BatchOutcome));
    child.on('error', reject);
    child.on('exit', (code) => (outcome !== undefined && code === 0 ? resolve(outcome) : reject(new Error(`the batch process exited with code ${code}`))));
  });
}

/** runBatchPopulationBench runs the bench; it returns `skipped` when ../shared is absent. */
export async function runBatchPopulationBench(options: { readonly patients?: number; readonly workers?: number; readonly database?: string; readonly log?: (line: string) => void } = {}): Promise<BatchPopulationResult> {
  const log = options.log ?? console.log;
  const ecqm = sharedFixture(ECQM);
  if (ecqm === undefined) {
    const result: BatchPopulationResult = { bench: 'batch-population', skipped: `../shared/fixtures/${ECQM} not found: the published eCQMs are needed` };
    log(`batch-population: skipped — ${result.skipped}`);
    printResult(log, result);
    return result;
  }
  const patients = options.patients ?? TARGET_PATIENTS;
  const workers = options.workers ?? availableParallelism();
  const knowledgeRoot = await knowledgeWithEcqms(ecqm);
  const scratch = await mkdtemp(path.join(tmpdir(), 'cairn-bench-batch-'));
  try {
    const prepared = await loadPreparedKnowledge(knowledgeRoot, { compiler: createCqlCompiler({ cacheDir: CACHE_DIR }), model: loadFhirR4Model() });
    const batchRules = prepared.rulesFor(undefined).length;
    log(`batch-population: ${patients} generated patients, ${batchRules} batch rules + ${prepared.measures.length} measures (${prepared.measures.map((m) => m.definition.name ?? m.definition.id).join(', ')}), ${workers} worker threads`);
    const database = options.database ?? path.join(scratch, 'bench.duckdb');
    const setup = await withWarehouse({ path: database }, async (warehouse): Promise<{ generateSeconds?: number; ingestSeconds?: number }> => {
      const stored = await countPatients(warehouse);
      if (stored === 0) return populate(warehouse, patients, log);
      if (stored !== patients) throw new Error(`${database} holds ${stored} patients, not ${patients}: use another --db or the same N`);
      log(`  reusing ${database} (${stored} patients)`);
      return {};
    });

    const loadBefore = loadAverage();
    const outcome = await batchInChild(knowledgeRoot, database, workers);
    const { summary, batchSeconds, peakRssMb: peak } = outcome;
    const load = [...loadBefore, ...loadAverage()];
    const meets = patients >= TARGET_PATIENTS ? batchSeconds < TARGET_SECONDS && peak < TARGET_RSS_MB : null;
    const result: BatchPopulationResult = {
      bench: 'batch-population',
      patients: summary.patients,
      workers,
      batchRules,
      measures: prepared.measures.length,
      ...(setup.generateSeconds === undefined ? {} : { generateSeconds: round(setup.generateSeconds, 1) }),
      ...(setup.ingestSeconds === undefined ? {} : { ingestSeconds: round(setup.ingestSeconds, 1) }),
      batchSeconds: round(batchSeconds, 1),
      patientsPerSec: round(summary.patients / batchSeconds, 1),
      cpuMsPerPatient: round((outcome.cpuSeconds * 1000) / summary.patients, 2),
      peakRssMb: peak,
      alerts: summary.alerts,
      careGaps: summary.careGaps,
      errors: summary.errors,
      load,
      target: TARGET,
      meetsTarget: meets,
    };
    for (const line of outcome.lines) log(`  ${line}`);
    log(`  batch: ${summary.patients} patients in ${result.batchSeconds} s = ${result.patientsPerSec} patients/s; peak RSS of the batch process ${peak} MB (its worker threads and DuckDB included)`);
    log(`  CPU: ${round(outcome.cpuSeconds, 1)} s over ${workers} worker threads and the main thread = ${result.cpuMsPerPatient} ms per patient`);
    log(`  ${summary.alerts} alerts, ${summary.careGaps} care gaps, ${summary.errors} errors; load average before ${loadBefore.join(' ')}, after ${loadAverage().join(' ')}`);
    printResult(log, result, { text: TARGET, met: meets });
    return result;
  } finally {
    await rm(knowledgeRoot, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  }
}

interface SummaryShape {
  group?: { population?: { code?: { coding?: { code?: string }[] }; count?: number }[]; measureScore?: { value?: number } }[];
}

/** describe renders a summary MeasureReport's first group as one line. */
function describe(measure: string, report: unknown): string {
  const group = (report as SummaryShape).group?.[0];
  const count = (code: string): number => group?.population?.find((p) => p.code?.coding?.[0]?.code === code)?.count ?? 0;
  const score = group?.measureScore?.value;
  const counts = ['initial-population', 'denominator', 'denominator-exclusion', 'denominator-exception', 'numerator'].map((code) => `${code.replace('denominator', 'denom').replace('initial-population', 'ip')} ${count(code)}`);
  return `${(measure.split('/').pop() ?? measure).padEnd(60)} ${counts.join(', ')}${score === undefined ? '' : `, rate ${(score * 100).toFixed(1)}%`}`;
}

if (process.argv[2] === CHILD_FLAG) {
  const [knowledgeRoot, database, workers] = process.argv.slice(3) as [string, string, string];
  process.send?.(await runBatchProcess(knowledgeRoot, database, Number(workers)));
  process.disconnect?.();
} else if (isMain(import.meta.url)) {
  const patients = positionalNumber();
  const workers = numberFlag('workers');
  const database = flag('db');
  await runBatchPopulationBench({
    ...(patients === undefined ? {} : { patients }),
    ...(workers === undefined ? {} : { workers }),
    ...(database === undefined ? {} : { database: path.resolve(database) }),
  });
}
