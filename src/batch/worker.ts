/**
 * Worker thread of the nightly batch: receives a knowledge set as plain data once, prepares it
 * (no CQL compiler needed: the ELM is already compiled), then evaluates chunks of patients. It
 * parses the patients' JSON, serializes what gets written, and summarizes the measure reports
 * itself, so the thread that reads and writes DuckDB only copies strings.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadFhirR4Model } from '../cql-engine/fhir-model.ts';
import { prepareKnowledge } from '../evaluate/prepare.ts';
import { measurementPeriod } from '../measures/evaluate.ts';
import type { IndividualReport } from '../measures/measure-report.ts';
import { createSummarizer, type MeasureSummarizer } from '../measures/summarize.ts';
import type { PatientResults } from '../warehouse/results.ts';
import { evaluateForBatch } from './patient-evaluation.ts';
import { fromTransferable, type TransferableKnowledge } from './transfer.ts';
import type { WorkerRequest, WorkerResponse } from './pool.ts';

const { knowledge } = workerData as { knowledge: TransferableKnowledge };
const { prepared, problems } = prepareKnowledge(fromTransferable(knowledge), loadFhirR4Model());
if (!prepared) throw new Error(`worker could not prepare knowledge ${knowledge.version}: ${problems.map((p) => p.message).join('; ')}`);

/** This worker's share of each measure's summary (a pool lives for one run). */
const summarizers = new Map<string, MeasureSummarizer>(prepared.measures.map((m) => [m.definition.canonical, createSummarizer(m, { period: measurementPeriod(m) })]));

/** forWriting keeps what the run writes: reports and issues as JSON text, the report objects summarized here. */
function forWriting(results: PatientResults): PatientResults {
  for (const { measure, report } of results.measureReports) summarizers.get(measure)?.add(report as IndividualReport);
  return {
    ...results,
    careGaps: results.careGaps.map(({ detectedIssue, ...gap }) => (detectedIssue === undefined ? gap : { ...gap, detectedIssueJson: JSON.stringify(detectedIssue) })),
    measureReports: results.measureReports.map(({ measure, report }) => ({ measure, json: JSON.stringify(report) })),
  };
}

parentPort?.on('message', (request: WorkerRequest) => {
  void (async () => {
    if (request.kind === 'summaries') {
      parentPort?.postMessage({ id: request.id, summaries: [...summarizers.values()].map((s) => s.state()) } satisfies WorkerResponse);
      return;
    }
    const results: PatientResults[] = [];
    for (const patient of request.patients) {
      results.push(forWriting(await evaluateForBatch(prepared, patient.patientId, JSON.parse(patient.resourcesJson) as unknown[], request.evaluatedAt, request.options)));
    }
    parentPort?.postMessage({ id: request.id, results } satisfies WorkerResponse);
  })();
});
