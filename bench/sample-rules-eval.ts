import { fileURLToPath } from 'node:url';
import { createCqlCompiler } from '../src/cql-engine/compiler.ts';
import { executeLibrary } from '../src/cql-engine/execute.ts';
import type { FhirResource } from '../src/cql-engine/fhir-model.ts';
import { loadFhirR4Model } from '../src/cql-engine/fhir-model.ts';
import { indexPatient } from '../src/cql-engine/patient-source.ts';
import { evaluatePatient } from '../src/evaluate/evaluate.ts';
import { loadPreparedKnowledge } from '../src/evaluate/knowledge-service.ts';
import { generateOpioidPatient } from './opioid-patient.ts';
import { flag, isMain, round, timeIt as timeRuns } from './support.ts';

/**
 * The sample medication-safety rules as the CDS Hooks `order-sign` service runs them: each library
 * (OpioidBenzodiazepine, NsaidRenalAnticoagulant) over a generated ~200-resource patient plus one
 * draft opioid order, and the whole `evaluatePatient` call. In process, no HTTP: what is left of a
 * request once it reaches the evaluation core.
 */

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CACHE_DIR = fileURLToPath(new URL('../.cache/bench-elm/', import.meta.url));
const EVALUATED_AT = '2026-03-01T12:00:00Z';
const RESOURCES = 200;
const RULES = ['opioid-benzodiazepine-concurrent', 'nsaid-renal-anticoagulant-risk'] as const;

interface Timing {
  readonly msPerEval: number;
  /** Process CPU time per evaluation: steadier than wall time on a busy machine. */
  readonly cpuMsPerEval: number;
  readonly evaluations: number;
}

export interface SampleRulesEvalResult {
  readonly bench: 'sample-rules-eval';
  readonly resources: number;
  readonly cards: number;
  readonly libraries: Readonly<Record<string, Timing>>;
  readonly evaluatePatient: Timing & { readonly evalsPerSec: number };
}

/** Runs `fn` until `minMs` has passed (and at least `minRuns` times); returns ms per evaluation. */
async function timeIt(fn: () => Promise<unknown>, minRuns: number, minMs: number): Promise<Timing> {
  const timing = await timeRuns(fn, minRuns, minMs);
  return { msPerEval: round(timing.msPerRun), cpuMsPerEval: round(timing.cpuMsPerRun), evaluations: timing.runs };
}

/** runSampleRulesEvalBench times the order-sign evaluation of the sample rules and returns its numbers. */
export async function runSampleRulesEvalBench(options: { readonly minMs?: number; readonly log?: (line: string) => void } = {}): Promise<SampleRulesEvalResult> {
  const log = options.log ?? console.log;
  const minMs = options.minMs ?? 3000;
  const prepared = await loadPreparedKnowledge(ROOT, { compiler: createCqlCompiler({ cacheDir: CACHE_DIR }), model: loadFhirR4Model() });
  const resources = generateOpioidPatient({ resources: RESOURCES, seed: 11, asOf: EVALUATED_AT });
  const patient = resources.find((r) => r.resourceType === 'Patient') as FhirResource;
  const draft: FhirResource = {
    resourceType: 'MedicationRequest',
    id: 'draft-oxycodone',
    status: 'draft',
    intent: 'order',
    subject: { reference: `Patient/${String(patient.id)}` },
    authoredOn: EVALUATED_AT.slice(0, 10),
    medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '1049621', display: 'oxycodone hydrochloride 5 MG Oral Tablet' }] },
  };
  const context = { userId: 'Practitioner/bench', patientId: String(patient.id), draftOrders: { resourceType: 'Bundle', type: 'collection', entry: [{ resource: draft }] } };
  const request = { evaluatedAt: EVALUATED_AT, hook: 'order-sign', context, ruleIds: RULES } as const;
  const withDraft = [...resources, draft];

  const libraries: Record<string, Timing> = {};
  for (const ruleId of RULES) {
    const rule = prepared.rules.find((r) => r.loaded.rule.id === ruleId);
    const library = rule === undefined ? undefined : prepared.libraries.get(rule.libraryKey);
    if (rule === undefined || library === undefined) throw new Error(`sample-rules-eval: rule ${ruleId} or its library is not prepared`);
    // Indexed per evaluation, as a request does.
    const run = () => executeLibrary(library, indexPatient(prepared.model, withDraft), { executionDateTime: EVALUATED_AT, codeService: prepared.knowledge.valueSets });
    await timeIt(run, 20, 0);
    libraries[library.name] = await timeIt(run, 20, minMs);
  }

  const evaluate = () => evaluatePatient(prepared, resources, request);
  const first = await evaluate();
  if (first.errors.length > 0) throw new Error(`sample-rules-eval: rule errors ${JSON.stringify(first.errors)}`);
  await timeIt(evaluate, 20, 0);
  const whole = await timeIt(evaluate, 20, minMs);
  const result: SampleRulesEvalResult = {
    bench: 'sample-rules-eval',
    resources: withDraft.length,
    cards: first.decisions.length,
    libraries,
    evaluatePatient: { ...whole, evalsPerSec: round(1000 / whole.msPerEval) },
  };

  log(`sample-rules-eval: ${result.resources} resources (one draft opioid order), order-sign, ${result.cards} card(s)`);
  for (const [name, timing] of Object.entries(libraries)) log(`  ${name.padEnd(26)}: ${timing.msPerEval} ms/eval  (cpu ${timing.cpuMsPerEval} ms, ${timing.evaluations} runs)`);
  log(`  evaluatePatient (both)    : ${whole.msPerEval} ms/eval  (cpu ${whole.cpuMsPerEval} ms)  ${result.evaluatePatient.evalsPerSec} evals/s  (${whole.evaluations} runs)`);
  log(JSON.stringify(result));
  return result;
}

if (isMain(import.meta.url)) {
  const minMs = flag('ms');
  await runSampleRulesEvalBench(minMs === undefined ? {} : { minMs: Number(minMs) });
}
