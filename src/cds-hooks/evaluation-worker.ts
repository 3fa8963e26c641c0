/**
 * A CDS evaluation worker (see evaluation-pool.ts): prepares each knowledge version it is sent
 * (the ELM is compiled already) and answers calls from their body text.
 */
import { parentPort } from 'node:worker_threads';
import { fromTransferable } from '../batch/transfer.ts';
import { loadFhirR4Model } from '../cql-engine/fhir-model.ts';
import { prepareKnowledge, type PreparedKnowledge } from '../evaluate/prepare.ts';
import type { EvaluationWorkerRequest, EvaluationWorkerResponse } from './evaluation-pool.ts';
import { evaluateFromPrefetch, type PrefetchOutcome } from './prefetch-evaluation.ts';
import { describeServices, type CdsService } from './services.ts';

/** Versions kept: the serving one and the one before (calls already sent may still name it). */
const KEEP_VERSIONS = 2;

const model = loadFhirR4Model();
const versions = new Map<string, { readonly prepared: PreparedKnowledge; readonly services: ReadonlyMap<string, CdsService> } | undefined>();

async function answer(request: Extract<EvaluationWorkerRequest, { type: 'call' }>): Promise<PrefetchOutcome> {
  const known = versions.get(request.version);
  const service = known?.services.get(request.serviceId);
  if (!known || !service) return { kind: 'fallback' };
  return evaluateFromPrefetch(known.prepared, service, request.body, request.evaluatedAt);
}

/** The calls taken so far, answered one after another: the pool may send a call while the one before it is still being evaluated. */
let answered: Promise<unknown> = Promise.resolve();

parentPort?.on('message', (request: EvaluationWorkerRequest) => {
  if (request.type === 'knowledge') {
    // A set that does not prepare here leaves its calls to the main thread (which prepared it).
    const { prepared } = prepareKnowledge(fromTransferable(request.knowledge), model);
    versions.set(request.version, prepared ? { prepared, services: new Map(describeServices(prepared).map((s) => [s.id, s])) } : undefined);
    while (versions.size > KEEP_VERSIONS) versions.delete(versions.keys().next().value as string);
    return;
  }
  answered = answered
    .then(() => answer(request))
    .catch((): PrefetchOutcome => ({ kind: 'fallback' }))
    .then((outcome) => respond(request.id, outcome));
});

/** respond posts a call's outcome; one that cannot be sent goes as `fallback`, so every call is answered and the chain never breaks. */
function respond(id: number, outcome: PrefetchOutcome): void {
  try {
    parentPort?.postMessage({ id, outcome } satisfies EvaluationWorkerResponse);
  } catch {
    parentPort?.postMessage({ id, outcome: { kind: 'fallback' } } satisfies EvaluationWorkerResponse);
  }
}
