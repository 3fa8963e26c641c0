/**
 * Worker thread of the nightly batch: receives a knowledge set as plain data once, prepares it
 * (no CQL compiler needed: the ELM is already compiled), then evaluates chunks of patients.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadFhirR4Model } from '../cql-engine/fhir-model.ts';
import { prepareKnowledge } from '../evaluate/prepare.ts';
import { evaluateForBatch } from './patient-evaluation.ts';
import { fromTransferable, type TransferableKnowledge } from './transfer.ts';
import type { WorkerRequest, WorkerResponse } from './pool.ts';

const { knowledge } = workerData as { knowledge: TransferableKnowledge };
const { prepared, problems } = prepareKnowledge(fromTransferable(knowledge), loadFhirR4Model());
if (!prepared) throw new Error(`worker could not prepare knowledge ${knowledge.version}: ${problems.map((p) => p.message).join('; ')}`);

parentPort?.on('message', (request: WorkerRequest) => {
  void (async () => {
    const results = [];
    for (const patient of request.patients) results.push(await evaluateForBatch(prepared, patient.patientId, patient.resources, request.evaluatedAt));
    parentPort?.postMessage({ id: request.id, results } satisfies WorkerResponse);
  })();
});
