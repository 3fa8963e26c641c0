/**
 * End to end over real sockets on 127.0.0.1: the CDS service listening, a stand-in EHR FHIR server
 * (bearer token, paginated searchsets, a slow endpoint), and an EHR calling with real fetch and a
 * signed JWT whose `aud` is the listening URL.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Card } from '../../src/domain/decisions.ts';
import { queryRows } from '../../src/warehouse/database.ts';
import { PROJECT_ROOT } from '../support/knowledge.ts';
import { cardIssues, EHR_TOKEN, startEhrServer, startLiveService, type EhrServer, type LiveService } from './live.ts';

type Resource = { resourceType: string; id: string; [key: string]: unknown };

const SERVICE = '/cds-services/medication-safety-order-sign';
const BUDGET_MS = 500;
const PATIENT_NAME = 'Quintavalle';

/** The order-sign test case whose opioid draft meets an active benzodiazepine; its patient is p1. */
const testCase = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'rules/opioid-benzodiazepine-concurrent.tests/order-sign-fires.json'), 'utf8')) as {
  context: Record<string, unknown>;
  patient: { entry: { resource: Resource }[] };
};
const caseResources = testCase.patient.entry.map((e) => e.resource);
const patient = { ...caseResources.find((r) => r.resourceType === 'Patient')!, name: [{ family: PATIENT_NAME, given: ['Ada'] }] };
const benzo = caseResources.find((r) => r.resourceType === 'MedicationRequest')!;
/** 110 finished metformin orders before the benzodiazepine: with 50 per page it is only on page 3. */
const history: Resource[] = Array.from({ length: 110 }, (_, i) => ({
  resourceType: 'MedicationRequest',
  id: `old-${i}`,
  status: 'completed',
  intent: 'order',
  subject: { reference: 'Patient/p1' },
  authoredOn: '2024-01-01',
  medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '860975', display: 'metformin 500 MG' }] },
}));

let live: LiveService;
let ehr: EhrServer;
/** What the service logs, at info as `cairn serve` does. */
const logLines: Record<string, unknown>[] = [];

beforeAll(async () => {
  ehr = await startEhrServer({
    patients: { p1: [patient, ...history, benzo], slow1: [{ ...patient, id: 'slow1' }] },
    pageSize: 50,
    slow: { patientIds: ['slow1'], types: ['Observation'], ms: 3000 },
  });
  live = await startLiveService({ fhirBudgetMs: BUDGET_MS, logger: { level: 'info', stream: { write: (line: string) => logLines.push(JSON.parse(line) as Record<string, unknown>) } } });
});

afterAll(async () => {
  await live?.close();
  await ehr?.close();
});

function hookRequest(patientId: string, hookInstance: string): Record<string, unknown> {
  return {
    hook: 'order-sign',
    hookInstance,
    fhirServer: ehr.base,
    fhirAuthorization: { access_token: EHR_TOKEN, token_type: 'Bearer', expires_in: 300, scope: 'user/*.read', subject: 'cairn' },
    context: { ...testCase.context, patientId },
  };
}

async function call(urlPath: string, body: unknown, token?: string): Promise<{ status: number; contentType: string; json: Record<string, unknown> }> {
  const response = await fetch(`${live.baseUrl}${urlPath}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token ?? (await live.token(urlPath))}` },
    body: JSON.stringify(body),
  });
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', json: (await response.json()) as Record<string, unknown> };
}

describe('CDS Hooks over a real socket with a real FHIR server', () => {
  let cardUuid = '';
  let suggestionUuid = '';

  it('fetches what the prefetch omits from the FHIR server, following next links with the bearer token, and answers with the card', async () => {
    const before = ehr.requests.length;
    const response = await call(SERVICE, hookRequest('p1', 'e2e-instance-1'));
    expect(response.status).toBe(200);
    const cards = response.json.cards as Record<string, unknown>[];
    expect(cards).toHaveLength(1);
    expect(cardIssues(cards[0])).toEqual([]);
    const card = cards[0] as unknown as Card;
    expect(card.summary).toBe('Opioid and benzodiazepine together raise the risk of fatal overdose');
    expect(card.detail).toContain('alprazolam 0.5 MG Oral Tablet');
    cardUuid = card.uuid;
    suggestionUuid = card.suggestions![0]!.uuid;

    const made = ehr.requests.slice(before);
    expect(made.every((r) => r.authorized)).toBe(true);
    expect(made.map((r) => r.path).sort()).toEqual([
      '/fhir/MedicationRequest?patient=p1',
      '/fhir/MedicationRequest?patient=p1&page=2',
      '/fhir/MedicationRequest?patient=p1&page=3',
      '/fhir/MedicationStatement?patient=p1',
      '/fhir/Observation?patient=p1',
      '/fhir/Patient/p1',
    ]);
  });

  it('answers 412 naming the key when the FHIR server is slower than the time budget, within about the budget', async () => {
    const started = performance.now();
    const response = await call(SERVICE, hookRequest('slow1', 'e2e-instance-2'));
    const elapsed = performance.now() - started;
    expect(response.status).toBe(412);
    expect(response.contentType).toContain('application/problem+json');
    expect(response.json.missing).toEqual([{ key: 'observations', template: 'Observation?patient={{context.patientId}}', reason: 'timeout' }]);
    expect(response.json.detail).toContain('"observations"');
    expect(elapsed).toBeLessThan(2500);
  });

  it('stores feedback on the issued card over the socket, idempotently', async () => {
    expect(cardUuid).not.toBe('');
    const body = { feedback: [{ card: cardUuid, outcome: 'accepted', acceptedSuggestions: [{ id: suggestionUuid }], outcomeTimestamp: '2026-03-01T12:00:05Z' }] };
    const first = await call(`${SERVICE}/feedback`, body);
    expect(first.status).toBe(200);
    expect(first.json).toEqual({ stored: 1, duplicates: 0 });
    expect((await call(`${SERVICE}/feedback`, body)).json).toEqual({ stored: 0, duplicates: 1 });
    const rows = await queryRows(live.warehouse.connection, 'SELECT card_uuid, outcome, accepted_suggestions::VARCHAR AS accepted FROM cds_feedback');
    expect(rows).toEqual([{ card_uuid: cardUuid, outcome: 'accepted', accepted: JSON.stringify([suggestionUuid]) }]);
  });

  it('refuses a JWT whose aud is another URL with 401, the same answer as no token at all', async () => {
    const wrongHost = await live.token(SERVICE, { aud: `https://cairn.test${SERVICE}` });
    const wrongPath = await live.token('/cds-services/medication-safety-order-select');
    const none = await fetch(`${live.baseUrl}${SERVICE}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const noneBody = await none.json();
    expect(none.status).toBe(401);
    for (const token of [wrongHost, wrongPath]) {
      const response = await call(SERVICE, hookRequest('p1', 'e2e-instance-3'), token);
      expect(response.status).toBe(401);
      expect(response.contentType).toContain('application/problem+json');
      expect(response.json).toEqual(noneBody);
    }
  });

  it('keeps an audit row per authenticated invocation (200 and 412), holding ids and counts only, never names or resources', async () => {
    await live.store.flush();
    const rows = await queryRows(live.warehouse.connection, `SELECT service_id, hook, hook_instance, client, patient_id, status, cards, suppressed, rule_errors FROM cds_invocation ORDER BY hook_instance`);
    const row = { service_id: 'medication-safety-order-sign', hook: 'order-sign', client: 'live-ehr', suppressed: 0, rule_errors: 0 };
    expect(rows).toEqual([
      { ...row, hook_instance: 'e2e-instance-1', patient_id: 'p1', status: 200, cards: 1 },
      { ...row, hook_instance: 'e2e-instance-2', patient_id: 'slow1', status: 412, cards: 0 },
    ]);
    const everything = JSON.stringify([
      ...(await queryRows(live.warehouse.connection, 'SELECT * EXCLUDE (invoked_at) FROM cds_invocation')),
      ...(await queryRows(live.warehouse.connection, 'SELECT * EXCLUDE (issued_at) FROM cds_card')),
    ], (_key, value: unknown) => (typeof value === 'bigint' ? Number(value) : value));
    for (const leak of [PATIENT_NAME, 'Ada', String((patient as Resource).birthDate), 'resourceType', 'alprazolam', 'oxycodone', EHR_TOKEN]) expect(everything).not.toContain(leak);
  });

  it('logs one access line per request (method, path, status, time) and no patient data, bodies or tokens', () => {
    const completed = logLines.filter((line) => line.msg === 'request completed');
    expect(completed.length).toBeGreaterThan(3);
    for (const line of completed) {
      expect(line).toMatchObject({ level: 30, method: 'POST', url: expect.stringMatching(/^\/cds-services\//), statusCode: expect.any(Number), responseTime: expect.any(Number) });
    }
    expect(completed.map((line) => line.statusCode)).toEqual(expect.arrayContaining([200, 401, 412]));
    expect(logLines.filter((line) => line.msg === 'incoming request')).toEqual([]);
    const everything = JSON.stringify(logLines);
    for (const leak of [PATIENT_NAME, 'Ada', String((patient as Resource).birthDate), 'resourceType', 'alprazolam', 'oxycodone', EHR_TOKEN, 'Bearer']) expect(everything).not.toContain(leak);
  });
});

describe('an EHR signing with RS384 (Epic\'s default; the spec example and the sandbox use ES384)', () => {
  it('is trusted like an ES384 one: discovery and a service call answer 200 over the socket', async () => {
    const rs = await startLiveService({ signingAlg: 'RS384' });
    try {
      const token = await rs.token('/cds-services');
      expect(JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8'))).toMatchObject({ alg: 'RS384' });
      const discovery = await fetch(`${rs.baseUrl}/cds-services`, { headers: { authorization: `Bearer ${token}` } });
      expect(discovery.status).toBe(200);
      const { services } = (await discovery.json()) as { services: { id: string; prefetch?: Record<string, string> }[] };
      // Every prefetch key null: the EHR has no data (not an error), so nothing is fetched.
      const prefetch = Object.fromEntries(Object.keys(services.find((s) => SERVICE.endsWith(s.id))?.prefetch ?? {}).map((key) => [key, null]));
      const response = await fetch(`${rs.baseUrl}${SERVICE}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await rs.token(SERVICE)}` },
        body: JSON.stringify({ hook: 'order-sign', hookInstance: 'rs384-call', context: { ...testCase.context, patientId: 'p1' }, prefetch }),
      });
      expect(response.status).toBe(200);
    } finally {
      await rs.close();
    }
  });
});
