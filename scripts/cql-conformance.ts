/**
 * cql-conformance runs the HL7 CQL conformance tests (cqframework/cql-tests, copied into
 * ../shared/fixtures/cql-tests) through our pipeline: @cqframework/cql compiles each expression
 * and its expected output, cql-execution evaluates both, and the harness compares the values.
 *
 *   npm run conformance:cql -- [--filter NAME] [--verbose] [--json] [--now ISO] [--tests DIR] [--skip-list FILE] [--engine cairn|cql-execution]
 *
 * `--engine cairn` (the default) runs each library the way Cairn does: with its cql-execution
 * patches installed, function calls bound and supported subtrees run synchronously
 * (src/cql-engine); `--engine cql-execution` runs the unchanged reference engine.
 *
 * Exits 0 only when every test not on the skip list passes, every skip-list entry names an
 * existing test, and no skipped test passes (a stale skip must be removed).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Library } from 'cql-execution';
import { createBatchCompiler, type CompiledTest } from './cql-conformance/batch.ts';
import { createLibraryCompiler } from './cql-conformance/compile.ts';
import { parseExecutionInstant } from './cql-conformance/evaluate.ts';
import {
  countByFile,
  failureRecords,
  renderFailure,
  renderTable,
  type JsonSummary,
  type Outcome,
} from './cql-conformance/report.ts';
import { judgeTests } from './cql-conformance/runner.ts';
import { parseSkipList, unknownSkips } from './cql-conformance/skip-list.ts';
import { loadSuites, type ConformanceTest } from './cql-conformance/suite.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_TESTS_DIR = path.resolve(HERE, '../../shared/fixtures/cql-tests/tests/cql');
const DEFAULT_SKIP_LIST = path.join(HERE, 'cql-conformance/skip-list.txt');
/**
 * BATCH_SIZE is how many tests share one library. Translation time grows faster than linearly
 * with library size, and a batch with a failing test is compiled again without it, so ~60 tests
 * per library was measured fastest overall (vs 25 or a whole file).
 */
const BATCH_SIZE = 60;
/** DEFAULT_NOW is the fixed Now() of a run, so Now()/Today() tests are deterministic. */
const DEFAULT_NOW = '2024-06-15T12:00:00.000Z';

interface Options {
  readonly filter: string | null;
  readonly verbose: boolean;
  readonly json: boolean;
  readonly now: string;
  readonly testsDir: string;
  readonly skipList: string;
  readonly engine: 'cairn' | 'cql-execution';
}

const USAGE = 'usage: npm run conformance:cql -- [--filter NAME] [--verbose] [--json] [--now ISO] [--tests DIR] [--skip-list FILE] [--engine cairn|cql-execution]';

/** UsageError is a bad command line: reported with the usage line, without a stack. */
class UsageError extends Error {}

function readOptions(argv: readonly string[]): Options | null {
  let parsed;
  try {
    parsed = parseCommandLine(argv);
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const { values } = parsed;
  if (values.help) return null;
  try {
    parseExecutionInstant(values.now);
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.engine !== 'cairn' && values.engine !== 'cql-execution') throw new UsageError(`--engine must be cairn or cql-execution, got '${values.engine}'`);
  return Object.freeze({
    filter: values.filter ?? null,
    verbose: values.verbose,
    json: values.json,
    now: values.now,
    testsDir: path.resolve(values.tests),
    skipList: path.resolve(values['skip-list']),
    engine: values.engine,
  });
}

function parseCommandLine(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    options: {
      filter: { type: 'string' },
      verbose: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      now: { type: 'string', default: DEFAULT_NOW },
      tests: { type: 'string', default: DEFAULT_TESTS_DIR },
      'skip-list': { type: 'string', default: DEFAULT_SKIP_LIST },
      engine: { type: 'string', default: 'cairn' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
}

/** matches is true when `filter` (case-insensitive) is part of the test's suite, group, name or id. */
function matches(test: ConformanceTest, filter: string | null): boolean {
  if (filter === null) return true;
  const needle = filter.toLowerCase();
  return [test.suite, test.group, test.name, test.id].some((s) => s.toLowerCase().includes(needle));
}

interface Run {
  readonly outcomes: readonly Outcome[];
  readonly fileOf: (o: Outcome) => string;
  readonly suiteSize: number;
  readonly unknownSkips: readonly string[];
  readonly skipListProblems: readonly string[];
}

/**
 * cairnPreparation loads Cairn's engine (importing it installs its cql-execution patches) and
 * returns what prepareLibrary does to a built library: bind function calls, compile synchronous subtrees.
 */
async function cairnPreparation(): Promise<(library: Library) => void> {
  await import('../src/cql-engine/execute.ts');
  const { bindOverloads } = await import('../src/cql-engine/overloads.ts');
  const { compileSync } = await import('../src/cql-engine/sync-execute.ts');
  return (library) => {
    bindOverloads(library);
    compileSync(library);
  };
}

/** runSuites compiles and judges every matching test, suite by suite, in batches. */
async function runSuites(options: Options): Promise<Run> {
  const at = parseExecutionInstant(options.now);
  const suites = loadSuites(options.testsDir);
  const allIds = new Set(suites.flatMap((s) => s.groups.flatMap((g) => g.tests.map((t) => t.id))));
  const skipList = parseSkipList(readFileSync(options.skipList, 'utf8'));
  const compileBatch = createBatchCompiler(createLibraryCompiler());
  const prepare = options.engine === 'cairn' ? await cairnPreparation() : undefined;
  const outcomes: Outcome[] = [];
  for (const suite of suites) {
    const tests = suite.groups.flatMap((g) => g.tests).filter((t) => matches(t, options.filter));
    const compiled: CompiledTest[] = [];
    for (let i = 0; i < tests.length; i += BATCH_SIZE) compiled.push(...(await compileBatch(tests.slice(i, i + BATCH_SIZE))));
    const results = await judgeTests(compiled, at, prepare);
    outcomes.push(...results.map((result) => ({ result, skipReason: skipList.reasons.get(result.test.id) ?? null })));
  }
  const fileOfSuite = new Map(suites.map((s) => [s.name, s.file]));
  return {
    outcomes,
    fileOf: (o) => fileOfSuite.get(o.result.test.suite) ?? o.result.test.suite,
    suiteSize: allIds.size,
    unknownSkips: unknownSkips(skipList, allIds),
    skipListProblems: skipList.problems,
  };
}

async function main(): Promise<number> {
  // cql-execution reads the local zone in places; pin it so results do not depend on the machine.
  process.env.TZ = 'UTC';
  const options = readOptions(process.argv.slice(2));
  if (!options) {
    console.log(USAGE);
    return 0;
  }
  const started = Date.now();
  const run = await runSuites(options);
  const { rows, total } = countByFile(run.outcomes, run.fileOf);
  const stale = run.outcomes.filter((o) => o.skipReason !== null && o.result.status === 'passed').map((o) => o.result.test.id);
  const ok = total.failed + total.errors === 0 && run.unknownSkips.length + run.skipListProblems.length + stale.length === 0;
  const durationMs = Date.now() - started;

  if (options.json) {
    const summary: JsonSummary = {
      executionDateTime: options.now,
      durationMs,
      total,
      files: rows,
      unknownSkips: run.unknownSkips,
      skipListProblems: run.skipListProblems,
      skippedButPassing: stale,
      failures: failureRecords(run.outcomes),
      ok,
    };
    console.log(JSON.stringify(summary, null, 2));
    return ok ? 0 : 1;
  }
  if (options.verbose) {
    for (const o of run.outcomes.filter((x) => x.result.status !== 'passed' && x.skipReason === null)) console.log(`${renderFailure(o)}\n`);
  }
  console.log(renderTable(rows, total));
  console.log(`\n${total.passed} of ${total.total} tests pass, ${total.skipped} skipped (the suite has ${run.suiteSize}); ` +
    `Now() = ${options.now}; ${(durationMs / 1000).toFixed(1)} s`);
  for (const problem of run.skipListProblems) console.log(`skip list: ${problem}`);
  for (const id of run.unknownSkips) console.log(`skip list names a test that does not exist: ${id}`);
  for (const id of stale) console.log(`skipped test now passes (remove it from the skip list): ${id}`);
  if (!options.verbose && total.failed + total.errors > 0) console.log('run with --verbose to see each failure');
  return ok ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) console.error(`${error.message}\n${USAGE}`);
    else console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 2;
  },
);
