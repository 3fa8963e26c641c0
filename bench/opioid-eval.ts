import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CodeService, Executor, Library, Repository, type DataProvider } from 'cql-execution';
import { PatientSource } from 'cql-exec-fhir';
import { createCqlCompiler } from '../src/cql-engine/compiler.ts';
import { executeLibrary, prepareLibrary } from '../src/cql-engine/execute.ts';
import { loadFhirR4Model } from '../src/cql-engine/fhir-model.ts';
import { indexPatient } from '../src/cql-engine/patient-source.ts';
import { generateOpioidPatient } from './opioid-patient.ts';
import { sameStructure, structural } from './structural.ts';
import { isMain, round, timeIt, timeSync } from './support.ts';

/**
 * Opioid/benzodiazepine library over a generated 200-resource patient: plain cql-execution +
 * cql-exec-fhir (library built by cql-execution alone, PatientSource built once and reloaded per
 * evaluation) versus Cairn (prepared library with statically bound overloads, patient indexed per
 * evaluation from raw resources, as a CDS request would). Results must be identical.
 */

const FIXTURES = fileURLToPath(new URL('../test/fixtures/bench/', import.meta.url));
const CACHE_DIR = fileURLToPath(new URL('../.cache/bench-elm/', import.meta.url));
const AS_OF = '2025-06-01T12:00:00.000Z';
const RESOURCES = 200;

export interface OpioidEvalResult {
  readonly bench: 'opioid-eval';
  readonly resources: number;
  readonly defines: number;
  readonly identical: boolean;
  readonly plain: { readonly msPerEval: number; readonly evalsPerSec: number; readonly evaluations: number };
  readonly ours: { readonly msPerEval: number; readonly evalsPerSec: number; readonly evaluations: number };
  readonly speedup: number;
  readonly patientSourceConstructionMs: { readonly plainFhirV401: number; readonly oursModelOnce: number; readonly oursPerPatient: number };
}

/** loadBenchValueSets reads the bench value sets into cql-execution's CodeService shape. */
function loadBenchValueSets(): CodeService {
  const json = JSON.parse(readFileSync(`${FIXTURES}valuesets.json`, 'utf8')) as Record<string, unknown>;
  const valueSets = Object.fromEntries(Object.entries(json).filter(([key]) => !key.startsWith('$')));
  return new CodeService(valueSets as ConstructorParameters<typeof CodeService>[0]);
}

async function compileBenchLibrary(): Promise<{ main: unknown; includes: unknown[] }> {
  const file = 'test/fixtures/bench/OpioidBenzoBench.cql';
  const result = await createCqlCompiler({ cacheDir: CACHE_DIR }).compile([{ file, text: readFileSync(`${FIXTURES}OpioidBenzoBench.cql`, 'utf8') }], []);
  if (result.problems.length > 0) throw new Error(`OpioidBenzoBench.cql did not compile: ${result.problems.map((p) => p.message).join('; ')}`);
  const main = result.libraries.find((l) => l.name === 'OpioidBenzoBench');
  if (main === undefined) throw new Error('OpioidBenzoBench missing from compile result');
  return { main: main.elm, includes: result.libraries.filter((l) => l !== main).map((l) => l.elm) };
}

/** runOpioidEvalBench runs the bench and returns its numbers; it throws if results differ. */
export async function runOpioidEvalBench(log: (line: string) => void = console.log): Promise<OpioidEvalResult> {
  const { main, includes } = await compileBenchLibrary();
  const codeService = loadBenchValueSets();
  const resources = generateOpioidPatient({ resources: RESOURCES, seed: 42, asOf: AS_OF });
  const bundle = { resourceType: 'Bundle', type: 'collection', entry: resources.map((resource) => ({ resource })) };

  const plainCtorMs = timeSync(() => PatientSource.FHIRv401(), 5);
  const modelStart = performance.now();
  const model = loadFhirR4Model();
  const modelMs = performance.now() - modelStart;
  const perPatientMs = timeSync(() => indexPatient(model, resources), 200);

  const prepared = prepareLibrary(main, includes, model);
  const executionDateTime = AS_OF;
  const plainSource = PatientSource.FHIRv401();
  // Plain means cql-execution's own Library: prepareLibrary's overload binding must not help it.
  const plainLibrary = new Library(main as never, new Repository(Object.fromEntries(includes.map((elm, i) => [String(i), elm]))));
  const plainExecutor = new Executor(plainLibrary, codeService);
  const { DateTime } = await import('cql-execution');
  const when = DateTime.parse(AS_OF.replace('Z', '+00:00'));
  if (when === null) throw new Error('bad AS_OF');

  // cql-exec-fhir console.errors every unresolvable path (here `medication.reference` on each
  // CodeableConcept-valued order); muted while plain runs, which also leaves its I/O out of its time.
  const runPlain = async (): Promise<Record<string, unknown>> => {
    const error = console.error;
    console.error = () => undefined;
    try {
      plainSource.reset();
      plainSource.loadBundles([bundle]);
      const results = await plainExecutor.exec_patient_context(plainSource as unknown as DataProvider, when);
      return Object.values(results.patientResults)[0] as Record<string, unknown>;
    } finally {
      console.error = error;
    }
  };
  const runOurs = () => executeLibrary(prepared, resources, { executionDateTime, codeService });

  const plainResult = await runPlain();
  const oursResult = await runOurs();
  const defines = Object.keys(plainResult);
  const differing = defines.filter((name) => !sameStructure(plainResult[name], oursResult[name]));
  const identical = differing.length === 0 && Object.keys(oursResult).length === defines.length;
  if (!identical) {
    for (const name of differing) log(`  DIFFERS ${name}: plain=${JSON.stringify(structural(plainResult[name])).slice(0, 300)} ours=${JSON.stringify(structural(oursResult[name])).slice(0, 300)}`);
    throw new Error(`opioid-eval: results differ from plain cql-exec-fhir for ${differing.join(', ')}`);
  }

  const plain = await timeIt(runPlain, 10, 3000);
  const ours = await timeIt(runOurs, 50, 3000);
  const result: OpioidEvalResult = {
    bench: 'opioid-eval',
    resources: resources.length,
    defines: defines.length,
    identical,
    plain: { msPerEval: round(plain.msPerRun), evalsPerSec: round(1000 / plain.msPerRun), evaluations: plain.runs },
    ours: { msPerEval: round(ours.msPerRun), evalsPerSec: round(1000 / ours.msPerRun), evaluations: ours.runs },
    speedup: round(plain.msPerRun / ours.msPerRun),
    patientSourceConstructionMs: { plainFhirV401: round(plainCtorMs), oursModelOnce: round(modelMs), oursPerPatient: round(perPatientMs, 3) },
  };

  log(`opioid-eval: ${result.resources} resources, ${result.defines} defines, results identical to cql-exec-fhir: ${identical}`);
  log(`  plain cql-exec-fhir : ${result.plain.msPerEval} ms/eval  ${result.plain.evalsPerSec} evals/s  (${plain.runs} runs)`);
  log(`  cairn patient source: ${result.ours.msPerEval} ms/eval  ${result.ours.evalsPerSec} evals/s  (${ours.runs} runs)  => ${result.speedup}x`);
  log(`  PatientSource construction: cql-exec-fhir FHIRv401() ${result.patientSourceConstructionMs.plainFhirV401} ms each;`
    + ` cairn model parse once ${result.patientSourceConstructionMs.oursModelOnce} ms, then ${result.patientSourceConstructionMs.oursPerPatient} ms per patient index`);
  log(JSON.stringify(result));
  return result;
}

if (isMain(import.meta.url)) {
  await runOpioidEvalBench();
}
