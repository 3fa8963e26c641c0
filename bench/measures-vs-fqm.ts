/**
 * Benchmark: Cairn's measure evaluation next to fqm-execution (the most-used open-source eCQM
 * engine, on the same cql-execution 3.3.2 and cql-exec-fhir 2.2.0), in one run, on the same
 * measures and patients: the five published QI-Core 2024 eCQMs of ../shared (PROVENANCE.md) over
 * their 301 test-case patients, then over generated patients (all five measures each).
 *
 * Both produce individual MeasureReports from patient Bundles, trusting meta.profile as the
 * content needs (docs/measures.md). Every population count of every group, per patient and
 * measure, must be equal; any difference is printed and fails the bench. Against the expected
 * counts in the test cases, only the documented content defects (test/measures/content-defects.ts)
 * may differ, and only where fqm-execution gives what we give. Prints patients/s for both and the
 * ratio (target: at least 10x), then one JSON line.
 *
 * fqm-execution runs in a child process: Cairn patches cql-execution for speed when its engine
 * loads (same results, see src/cql-engine/), and fqm-execution must run on cql-execution as published
 * (it also reads the clause results Cairn stops recording), so the two are independent checks.
 *
 * Usage: node --import tsx bench/measures-vs-fqm.ts [--ms=3000] [--generated=100]
 */
import { fork } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateDirectory, generatePatient, type Resource } from '../src/synthetic/patient.ts';
import { DEFAULT_AS_OF } from '../src/synthetic/generate.ts';
import { CONTENT_DEFECTS } from '../test/measures/content-defects.ts';
import { flag, isMain, loadAverage, round, sharedFixture, timeIt } from './support.ts';

// Nothing above loads Cairn's CQL engine: the fqm-execution child must see cql-execution unpatched.
// The parent imports the engine when it runs it (see runOurs).

const ECQM = 'population/ecqm-content-qicore-2024';
const TARGET_RATIO = 10;

/** Population counts of one report: group position -> population code -> count (expected reports carry no group ids). */
type Counts = Record<string, Record<string, number>>;

interface Bundle {
  readonly resourceType: 'Bundle';
  readonly type?: string;
  readonly entry: readonly { readonly resource: Resource }[];
}

/** Population counts of a report's groups, read the same way for both engines and the expected reports. */
interface ReportGroupLike {
  readonly population: readonly { readonly code?: { readonly coding?: readonly { readonly system?: string; readonly code?: string }[] }; readonly count: number }[];
}

const POPULATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/measure-population';

/** One published measure as files: what both engines read. */
interface MeasureFiles {
  readonly folder: string;
  readonly cms: string;
  readonly dir: string;
  readonly measureFile: string;
  readonly valueSetFile: string;
  readonly effective: { readonly start: string; readonly end: string };
  readonly tests: readonly { readonly test: string; readonly patientId: string; readonly bundle: Bundle; readonly expected: Counts }[];
}

/** What the fqm-execution child sends back. */
interface FqmOutcome {
  readonly version: string;
  /** Per measure: counts per test patient, ms per run over all its test patients. */
  readonly tests: readonly { readonly cms: string; readonly counts: Readonly<Record<string, Counts>>; readonly msPerRun: number }[];
  /** Per measure: counts per generated patient; ms per run of all measures over all generated patients. */
  readonly generated: { readonly counts: Readonly<Record<string, Readonly<Record<string, Counts>>>>; readonly msPerRun: number } | undefined;
}

interface EngineSpeed {
  readonly evaluations: number;
  readonly seconds: number;
  readonly patientsPerSec: number;
}

export interface MeasuresVsFqmResult {
  readonly bench: 'measures-vs-fqm';
  readonly skipped?: string;
  readonly fqmExecution?: string;
  readonly testCases?: {
    readonly patients: number;
    readonly agree: number;
    readonly differ: number;
    readonly matchExpected: { readonly ours: number; readonly fqm: number; readonly documentedDefects: number };
    readonly ours: EngineSpeed;
    readonly fqm: EngineSpeed;
    readonly ratio: number;
    readonly perMeasure: readonly { readonly cms: string; readonly patients: number; readonly oursPerSec: number; readonly fqmPerSec: number; readonly ratio: number }[];
  };
  readonly generated?: {
    readonly patients: number;
    readonly measures: number;
    readonly agree: number;
    readonly differ: number;
    readonly ours: EngineSpeed;
    readonly fqm: EngineSpeed;
    readonly ratio: number;
  };
  readonly load?: readonly number[];
  readonly target?: string;
  readonly meetsTarget?: boolean;
}

function countsOf(groups: readonly ReportGroupLike[] | undefined): Counts {
  const counts: Counts = {};
  (groups ?? []).forEach((group, i) => {
    const byCode: Record<string, number> = {};
    for (const population of group.population) {
      const code = population.code?.coding?.find((c) => c.system === undefined || c.system === POPULATION_SYSTEM)?.code ?? '?';
      byCode[code] = population.count;
    }
    counts[`group ${i + 1}`] = byCode;
  });
  return counts;
}

const sameCounts = (a: Counts | undefined, b: Counts | undefined): boolean => a !== undefined && b !== undefined && stable(a) === stable(b);

function stable(counts: Counts): string {
  return JSON.stringify(Object.keys(counts).sort().map((group) => [group, Object.entries(counts[group] ?? {}).sort()]));
}

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, 'utf8')) as T;
}

/** A Library resource carrying one ELM file, as fqm-execution reads libraries (canonical url + base64 ELM). */
async function libraryResource(ecqm: string, name: string, version: string): Promise<unknown> {
  const elm = await readFile(path.join(ecqm, 'elm', `${name}-${version}.json`));
  return {
    resourceType: 'Library',
    id: name,
    url: `https://madie.cms.gov/Library/${name}`,
    name,
    version,
    status: 'active',
    type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/library-type', code: 'logic-library' }] },
    content: [{ contentType: 'application/elm+json', data: elm.toString('base64') }],
  };
}

async function loadMeasureFiles(ecqm: string, folder: string): Promise<MeasureFiles> {
  const dir = path.join(ecqm, 'measures', folder);
  const files = await readdir(dir);
  const measureFile = files.find((f) => f.startsWith('Measure-')) ?? '';
  const valueSetFile = files.find((f) => f.startsWith('valuesets-')) ?? '';
  const { effectivePeriod } = await readJson<{ effectivePeriod: { start: string; end: string } }>(path.join(dir, measureFile));
  const tests = [];
  for (const file of (await readdir(path.join(dir, 'tests'))).sort()) {
    const bundle = await readJson<Bundle>(path.join(dir, 'tests', file));
    const expected = bundle.entry.find((e) => e.resource.resourceType === 'MeasureReport')?.resource as { group?: ReportGroupLike[] } | undefined;
    const patientId = bundle.entry.find((e) => e.resource.resourceType === 'Patient')?.resource.id ?? '';
    // Both engines get the patient's data only, without the expected report.
    const data: Bundle = { ...bundle, entry: bundle.entry.filter((e) => e.resource.resourceType !== 'MeasureReport') };
    tests.push({ test: file.replace(/^tests-/, '').replace(/-bundle\.json$/, ''), patientId, bundle: data, expected: countsOf(expected?.group) });
  }
  return { folder, cms: folder.split('-')[0] ?? folder, dir, measureFile, valueSetFile, effective: effectivePeriod, tests };
}

/** The bundle fqm-execution calculates from: the Measure, its Libraries (ELM as base64 content) and ValueSets. */
async function fqmMeasureBundle(ecqm: string, measure: MeasureFiles): Promise<unknown> {
  const measureJson = await readJson<unknown>(path.join(measure.dir, measure.measureFile));
  const { libraries: needed } = await readJson<{ libraries: Record<string, string> }>(path.join(measure.dir, 'libraries.json'));
  const valueSets = (await readJson<Bundle>(path.join(measure.dir, measure.valueSetFile))).entry.map((e) => e.resource);
  const libraryResources = await Promise.all(Object.entries(needed).map(([name, version]) => libraryResource(ecqm, name, version)));
  return { resourceType: 'Bundle', type: 'collection', entry: [measureJson, ...libraryResources, ...valueSets].map((resource) => ({ resource })) };
}

type Calculate = (measureBundle: unknown, patients: readonly Bundle[], options: Record<string, unknown>) => Promise<{ results: unknown }>;

/** fqm-execution's individual reports for `bundles`, per patient id; its console chatter (paths it cannot resolve) muted. */
async function fqmCounts(calculate: Calculate, measureBundle: unknown, measure: MeasureFiles, bundles: readonly Bundle[]): Promise<Record<string, Counts>> {
  const [error, warn, log] = [console.error, console.warn, console.log];
  console.error = console.warn = console.log = () => undefined;
  try {
    const { results } = await calculate(measureBundle, bundles, {
      measurementPeriodStart: measure.effective.start,
      measurementPeriodEnd: measure.effective.end,
      reportType: 'individual',
      calculateSDEs: true,
      calculateHTML: false,
      trustMetaProfile: true,
    });
    const reports = (Array.isArray(results) ? results : [results]) as { subject?: { reference?: string }; group?: ReportGroupLike[] }[];
    return Object.fromEntries(reports.map((r) => [(r.subject?.reference ?? '').replace(/^Patient\//, ''), countsOf(r.group)]));
  } finally {
    [console.error, console.warn, console.log] = [error, warn, log];
  }
}

/** runFqm (in the child process): fqm-execution over the test cases, then the generated patients; counts and timings. */
async function runFqm(ecqm: string, minMs: number, generatedCount: number): Promise<FqmOutcome> {
  const fqm = (await import('fqm-execution')) as unknown as { Calculator: { calculateMeasureReports: Calculate } };
  const calculate: Calculate = (bundle, patients, options) => fqm.Calculator.calculateMeasureReports(bundle, patients, options);
  const version = (await readJson<{ version: string }>(path.join(path.dirname(fileURLToPath(import.meta.resolve('fqm-execution'))), '..', 'package.json'))).version;
  const measures = await Promise.all((await readdir(path.join(ecqm, 'measures'))).sort().map((folder) => loadMeasureFiles(ecqm, folder)));
  const bundles = new Map(await Promise.all(measures.map(async (m) => [m.cms, await fqmMeasureBundle(ecqm, m)] as const)));
  const tests = [];
  for (const measure of measures) {
    const patients = measure.tests.map((t) => t.bundle);
    const counts = await fqmCounts(calculate, bundles.get(measure.cms), measure, patients);
    const timing = await timeIt(() => fqmCounts(calculate, bundles.get(measure.cms), measure, patients), 1, minMs);
    tests.push({ cms: measure.cms, counts, msPerRun: timing.msPerRun });
  }
  let generated: FqmOutcome['generated'];
  if (generatedCount > 0) {
    const patients = generatedBundles(generatedCount);
    const counts: Record<string, Record<string, Counts>> = {};
    const all = async (): Promise<void> => {
      for (const measure of measures) counts[measure.cms] = await fqmCounts(calculate, bundles.get(measure.cms), measure, patients);
    };
    await all();
    const timing = await timeIt(all, 1, minMs);
    generated = { counts, msPerRun: timing.msPerRun };
  }
  return { version, tests, generated };
}

function fqmInChild(minMs: number, generated: number): Promise<FqmOutcome> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [FQM_CHILD, String(minMs), String(generated)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let outcome: FqmOutcome | undefined;
    child.on('message', (message) => (outcome = message as FqmOutcome));
    child.on('error', reject);
    child.on('exit', (code) => (outcome !== undefined && code === 0 ? resolve(outcome) : reject(new Error(`the fqm-execution process exited with code ${code}`))));
  });
}

const FQM_CHILD = '--fqm-child';

/** Cairn's side: the engine loaded here (patching cql-execution in this process only), each measure prepared once. */
async function loadOurs(ecqm: string, measures: readonly MeasureFiles[]) {
  const { loadLibraries, loadValueSets } = await import('../src/cli/measure.ts');
  const { loadFhirR4Model } = await import('../src/cql-engine/fhir-model.ts');
  const { evaluateMeasurePatient, measurePatient, measurementPeriod } = await import('../src/measures/evaluate.ts');
  const { prepareMeasure } = await import('../src/measures/prepare.ts');
  const model = loadFhirR4Model();
  const libraries = await loadLibraries(path.join(ecqm, 'elm'));
  const prepared = new Map(
    await Promise.all(measures.map(async (m) => {
      const measure = prepareMeasure(await readJson<unknown>(path.join(m.dir, m.measureFile)), libraries, await loadValueSets(path.join(m.dir, m.valueSetFile)), model, { file: m.measureFile });
      return [m.cms, { measure, period: measurementPeriod(measure) }] as const;
    })),
  );
  type PatientData = Parameters<typeof measurePatient>[1];
  /** One measure over patients, each indexed from its Bundle (as fqm-execution gets them). */
  const oneMeasure = async (cms: string, bundles: readonly Bundle[]): Promise<Record<string, Counts>> => {
    const { measure, period } = prepared.get(cms) ?? (() => { throw new Error(`${cms} is not prepared`); })();
    const out: Record<string, Counts> = {};
    for (const bundle of bundles) {
      const report = await evaluateMeasurePatient(measure, bundle as unknown as PatientData, { period, patientSource: { requireProfileTagging: true } });
      out[report.subject.reference.replace(/^Patient\//, '')] = countsOf(report.group);
    }
    return out;
  };
  /** Every measure over each patient, the patient indexed once and included libraries shared (as the nightly batch runs them). */
  const allMeasures = async (bundles: readonly Bundle[]): Promise<Record<string, Record<string, Counts>>> => {
    const out: Record<string, Record<string, Counts>> = {};
    for (const bundle of bundles) {
      const patient = measurePatient(model, bundle as unknown as PatientData, { requireProfileTagging: true });
      for (const m of measures) {
        const { measure, period } = prepared.get(m.cms) ?? (() => { throw new Error(`${m.cms} is not prepared`); })();
        const report = await evaluateMeasurePatient(measure, patient, { period });
        (out[m.cms] ??= {})[report.subject.reference.replace(/^Patient\//, '')] = countsOf(report.group);
      }
    }
    return out;
  };
  return { oneMeasure, allMeasures };
}

const speed = (evaluations: number, ms: number): EngineSpeed => ({ evaluations, seconds: round(ms / 1000, 2), patientsPerSec: round((evaluations / ms) * 1000, 1) });

/** Generated patients (the batch's synthetic population, QI-Core profiles claimed) as Bundles. */
function generatedBundles(count: number): Bundle[] {
  const asOf = DEFAULT_AS_OF.getTime();
  const directory = generateDirectory({ seed: 1, asOf }, 50, 10);
  const ctx = { seed: 1, asOf, years: 5, practitionerIds: directory.practitionerIds, organizationIds: directory.organizationIds };
  return Array.from({ length: count }, (_, i) => ({ resourceType: 'Bundle', type: 'collection', entry: generatePatient(i, ctx).map((resource) => ({ resource })) }));
}

/** runMeasuresVsFqmBench runs the comparison; it throws when the engines disagree, and returns `skipped` without ../shared. */
export async function runMeasuresVsFqmBench(options: { readonly minMs?: number; readonly generated?: number; readonly log?: (line: string) => void } = {}): Promise<MeasuresVsFqmResult> {
  const log = options.log ?? console.log;
  const ecqm = sharedFixture(ECQM);
  if (ecqm === undefined) {
    const result: MeasuresVsFqmResult = { bench: 'measures-vs-fqm', skipped: `../shared/fixtures/${ECQM} not found: the published eCQMs and their test cases are needed` };
    log(`measures-vs-fqm: skipped — ${result.skipped}`);
    log(JSON.stringify(result));
    return result;
  }
  const minMs = options.minMs ?? 3000;
  const generatedCount = options.generated ?? 100;
  const loadBefore = loadAverage();
  const measures = await Promise.all((await readdir(path.join(ecqm, 'measures'))).sort().map((folder) => loadMeasureFiles(ecqm, folder)));
  log(`measures-vs-fqm: ${measures.length} published eCQMs (${measures.map((m) => m.cms).join(', ')}), ${measures.reduce((n, m) => n + m.tests.length, 0)} test patients + ${generatedCount} generated, meta.profile trusted`);
  // fqm-execution first, alone in its process, then Cairn here: never both at once on this machine.
  const theirs = await fqmInChild(minMs, generatedCount);
  const ours = await loadOurs(ecqm, measures);
  log(`  fqm-execution ${theirs.version} (child process, cql-execution as published) vs Cairn`);

  const differences: string[] = [];
  const perMeasure: { cms: string; patients: number; oursPerSec: number; fqmPerSec: number; ratio: number }[] = [];
  let agree = 0;
  let oursExpected = 0;
  let fqmExpected = 0;
  let documented = 0;
  let oursMs = 0;
  let fqmMs = 0;
  let evaluations = 0;
  for (const measure of measures) {
    const bundles = measure.tests.map((t) => t.bundle);
    const fqm = theirs.tests.find((t) => t.cms === measure.cms);
    const counts = await ours.oneMeasure(measure.cms, bundles);
    for (const t of measure.tests) {
      const o = counts[t.patientId];
      const f = fqm?.counts[t.patientId];
      if (sameCounts(o, f)) agree++;
      else differences.push(`${measure.cms} ${t.test}: ours ${JSON.stringify(o)} fqm-execution ${JSON.stringify(f)}`);
      const defect = CONTENT_DEFECTS.some((d) => d.measure === measure.cms && d.test === t.test);
      if (sameCounts(o, t.expected)) oursExpected++;
      else if (defect && sameCounts(o, f)) documented++;
      else differences.push(`${measure.cms} ${t.test}: ours ${JSON.stringify(o)} expected ${JSON.stringify(t.expected)}${defect ? ' (a documented content defect, but fqm-execution disagrees with us)' : ''}`);
      if (sameCounts(f, t.expected)) fqmExpected++;
    }
    const oursTiming = await timeIt(() => ours.oneMeasure(measure.cms, bundles), 3, minMs);
    const fqmPerRun = fqm?.msPerRun ?? Number.NaN;
    oursMs += oursTiming.msPerRun;
    fqmMs += fqmPerRun;
    evaluations += bundles.length;
    const oursPerSec = (bundles.length / oursTiming.msPerRun) * 1000;
    const fqmPerSec = (bundles.length / fqmPerRun) * 1000;
    perMeasure.push({ cms: measure.cms, patients: bundles.length, oursPerSec: round(oursPerSec, 1), fqmPerSec: round(fqmPerSec, 1), ratio: round(oursPerSec / fqmPerSec, 1) });
    log(`  ${measure.cms.padEnd(7)} ${String(bundles.length).padStart(3)} test patients: Cairn ${round(oursPerSec, 1)} patients/s, fqm-execution ${round(fqmPerSec, 1)} patients/s => ${round(oursPerSec / fqmPerSec, 1)}x`);
  }
  const testOurs = speed(evaluations, oursMs);
  const testFqm = speed(evaluations, fqmMs);
  const testRatio = round(testFqm.seconds / testOurs.seconds, 1);
  log(`  test cases: ${agree}/${evaluations} patients with every population count equal in both engines; matching the expected report: Cairn ${oursExpected}, fqm-execution ${fqmExpected} (+${documented} documented content defects where both agree)`);
  log(`  test cases: Cairn ${testOurs.patientsPerSec} patients/s, fqm-execution ${testFqm.patientsPerSec} patients/s => ${testRatio}x`);

  // Generated patients: each through all five measures.
  let generated: MeasuresVsFqmResult['generated'];
  if (generatedCount > 0 && theirs.generated !== undefined) {
    const bundles = generatedBundles(generatedCount);
    const counts = await ours.allMeasures(bundles);
    let generatedAgree = 0;
    let generatedDiffer = 0;
    for (const measure of measures) {
      for (const [patientId, o] of Object.entries(counts[measure.cms] ?? {})) {
        const f = theirs.generated.counts[measure.cms]?.[patientId];
        if (sameCounts(o, f)) generatedAgree++;
        else {
          generatedDiffer++;
          differences.push(`${measure.cms} generated patient ${patientId}: ours ${JSON.stringify(o)} fqm-execution ${JSON.stringify(f)}`);
        }
      }
    }
    const oursTiming = await timeIt(() => ours.allMeasures(bundles), 2, minMs);
    const oursSpeed = speed(generatedCount, oursTiming.msPerRun);
    const fqmSpeed = speed(generatedCount, theirs.generated.msPerRun);
    generated = { patients: generatedCount, measures: measures.length, agree: generatedAgree, differ: generatedDiffer, ours: oursSpeed, fqm: fqmSpeed, ratio: round(fqmSpeed.seconds / oursSpeed.seconds, 1) };
    log(`  generated: ${generatedCount} patients x ${measures.length} measures, ${generatedAgree}/${generatedCount * measures.length} patient-measures with every population count equal`);
    log(`  generated: Cairn ${oursSpeed.patientsPerSec} patients/s, fqm-execution ${fqmSpeed.patientsPerSec} patients/s (all ${measures.length} measures per patient) => ${generated.ratio}x`);
  }

  for (const difference of differences) log(`  DIFFERS ${difference}`);
  const meetsTarget = differences.length === 0 && testRatio >= TARGET_RATIO && (generated === undefined || generated.ratio >= TARGET_RATIO);
  const result: MeasuresVsFqmResult = {
    bench: 'measures-vs-fqm',
    fqmExecution: theirs.version,
    testCases: {
      patients: evaluations,
      agree,
      differ: evaluations - agree,
      matchExpected: { ours: oursExpected, fqm: fqmExpected, documentedDefects: documented },
      ours: testOurs,
      fqm: testFqm,
      ratio: testRatio,
      perMeasure,
    },
    ...(generated === undefined ? {} : { generated }),
    load: [...loadBefore, ...loadAverage()],
    target: `identical population counts, Cairn >= ${TARGET_RATIO}x fqm-execution patients/s`,
    meetsTarget,
  };
  log(`  target ${result.target}: ${meetsTarget ? 'met' : 'NOT met'}; load average before ${loadBefore.join(' ')}, after ${loadAverage().join(' ')}`);
  log(JSON.stringify(result));
  if (differences.length > 0) throw new Error(`measures-vs-fqm: ${differences.length} difference(s) between Cairn, fqm-execution and the expected reports`);
  return result;
}

if (process.argv[2] === FQM_CHILD) {
  const ecqm = sharedFixture(ECQM);
  if (ecqm === undefined) throw new Error('../shared is gone');
  process.send?.(await runFqm(ecqm, Number(process.argv[3]), Number(process.argv[4])));
  process.disconnect?.();
} else if (isMain(import.meta.url)) {
  const ms = flag('ms');
  const generated = flag('generated');
  await runMeasuresVsFqmBench({ ...(ms === undefined ? {} : { minMs: Number(ms) }), ...(generated === undefined ? {} : { generated: Number(generated) }) });
}
