/**
 * End to end over real sockets on 127.0.0.1: the CDS service listening, a stand-in EHR FHIR server
 * (bearer token, paginated searchsets, a slow endpoint), and an EHR calling with real fetch and a
 * signed JWT whose `aud` is the listening URL.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallEvaluator } from '../../src/cds-hooks/evaluation-pool.ts';
import { evaluateFromPrefetch } from '../../src/cds-hooks/prefetch-evaluation.ts';
import type { Card } from '../../src/domain/decisions.ts';
import { queryRows } from '../../src/warehouse/database.ts';
import { ingestPaths } from '../../src/warehouse/ingest.ts';
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
    context: { ...testCase.context, patientId, draftOrders: draftOrdersOf(patientId) },
  };
}

/** The case's draft orders, as orders for `patientId` (a call is about one patient). */
function draftOrdersOf(patientId: string): unknown {
  const bundle = testCase.context.draftOrders as { entry: { resource: Resource }[] };
  return { ...bundle, entry: bundle.entry.map((e) => ({ ...e, resource: { ...e.resource, subject: { reference: `Patient/${patientId}` } } })) };
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

  it('keeps an audit row per authenticated invocation (200, 412, 400 and 413), holding ids, counts and duration only, never names or resources', async () => {
    const { hookInstance: _dropped, ...invalid } = hookRequest('p1', 'unused');
    expect((await call(SERVICE, invalid)).status).toBe(400);
    // Invalid, but its hookInstance and patient id can be read: the row names them.
    const { userId: _noUser, ...contextWithoutUser } = testCase.context;
    expect((await call(SERVICE, { ...hookRequest('p1', 'e2e-instance-4'), context: { ...contextWithoutUser, patientId: 'Patient/p1' } })).status).toBe(400);
    // Refused before its body is read (over the 4 MiB limit): the client is known, the ids are not.
    const tooLarge = await call(SERVICE, { ...hookRequest('p1', 'e2e-instance-5'), padding: 'x'.repeat(5 * 1024 * 1024) });
    expect(tooLarge.status).toBe(413);
    await live.store.flush();
    const rows = await queryRows(live.warehouse.connection, `SELECT service_id, hook, hook_instance, client, patient_id, status, cards, suppressed, rule_errors FROM cds_invocation ORDER BY hook_instance, status`);
    const row = { service_id: 'medication-safety-order-sign', hook: 'order-sign', client: 'live-ehr', suppressed: 0, rule_errors: 0 };
    expect(rows).toEqual([
      // Calls answered without evaluating them: the ids they did not give (or gave invalid) are ''.
      { ...row, hook_instance: '', patient_id: 'p1', status: 400, cards: 0 },
      { ...row, hook_instance: '', patient_id: '', status: 413, cards: 0 },
      { ...row, hook_instance: 'e2e-instance-1', patient_id: 'p1', status: 200, cards: 1 },
      { ...row, hook_instance: 'e2e-instance-2', patient_id: 'slow1', status: 412, cards: 0 },
      { ...row, hook_instance: 'e2e-instance-4', patient_id: 'p1', status: 400, cards: 0 },
    ]);
    const durations = await queryRows(live.warehouse.connection, `SELECT hook_instance, duration_ms FROM cds_invocation`);
    for (const { duration_ms } of durations) expect(duration_ms).toBeGreaterThanOrEqual(0);
    // The slow server's call waited out the fetch budget, and its row says so.
    expect(durations.find((d) => d.hook_instance === 'e2e-instance-2')?.duration_ms).toBeGreaterThanOrEqual(BUDGET_MS - 5);
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

describe('data a call needs beyond its body: Medications by id, the local copy, incomplete searchsets', () => {
  const rx = (code: string, display: string): Record<string, unknown> => ({ coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code, display }] });
  const oxy: Resource = { resourceType: 'Medication', id: 'oxy', code: rx('1049621', 'oxycodone hydrochloride 5 MG Oral Tablet') };
  const patientOf = (id: string): Resource => ({ resourceType: 'Patient', id, gender: 'male', birthDate: '1970-06-15' });
  const benzoOf = (id: string): Resource => ({ ...benzo, id: `benzo-${id}`, subject: { reference: `Patient/${id}` } });
  const draft = (patientId: string, medication: Record<string, unknown>): Resource => ({ resourceType: 'MedicationRequest', id: 'draft-1', status: 'draft', intent: 'order', subject: { reference: `Patient/${patientId}` }, authoredOn: '2026-03-01', ...medication });
  const searchset = (...resources: Resource[]): Record<string, unknown> => ({ resourceType: 'Bundle', type: 'searchset', entry: resources.map((resource) => ({ resource })) });
  /** Every prefetch key this service asks for: the patient, a benzodiazepine order, no statements, no observations. */
  const fullPrefetch = (patientId: string, ...included: Resource[]): Record<string, unknown> => ({ patient: patientOf(patientId), medicationRequests: searchset(benzoOf(patientId), ...included), medicationStatements: null, observations: null });
  const body = (hookInstance: string, order: Resource, rest: { prefetch?: Record<string, unknown>; server?: boolean }): Record<string, unknown> => ({
    hook: 'order-sign',
    hookInstance,
    ...(rest.server ? { fhirServer: medEhr.base, fhirAuthorization: { access_token: EHR_TOKEN, token_type: 'Bearer', expires_in: 300, scope: 'user/*.read', subject: 'cairn' } } : {}),
    context: { userId: 'Practitioner/1', patientId: String((order.subject as { reference: string }).reference).replace('Patient/', ''), draftOrders: { resourceType: 'Bundle', type: 'collection', entry: [{ resource: order }] } },
    ...(rest.prefetch ? { prefetch: rest.prefetch } : {}),
  });
  const withoutUuids = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (key, v: unknown) => (key === 'uuid' ? undefined : v)));

  let service: LiveService;
  let medEhr: EhrServer;
  /** What the fast path answered each call, and whether it may answer at all (off: every call takes the full path). */
  const fastOutcomes: string[] = [];
  let fastPath = true;
  const post = async (payload: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const response = await fetch(`${service.baseUrl}${SERVICE}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${await service.token(SERVICE)}` }, body: JSON.stringify(payload) });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    medEhr = await startEhrServer({ patients: { p1: [patientOf('p1'), benzoOf('p1')] }, medications: [oxy] });
    const evaluator: CallEvaluator = {
      evaluate: async (...args) => {
        const outcome = fastPath ? await evaluateFromPrefetch(...args) : ({ kind: 'fallback' } as const);
        fastOutcomes.push(outcome.kind);
        return outcome;
      },
      close: async () => undefined,
    };
    service = await startLiveService({ fhirBudgetMs: BUDGET_MS, localCopy: true, evaluator });
    // The local copy holds p-local and a benzodiazepine order of theirs; it has never heard of p1 or p-absent.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-e2e-local-'));
    await writeFile(path.join(dir, 'records.ndjson'), [patientOf('p-local'), benzoOf('p-local')].map((r) => JSON.stringify(r)).join('\n'));
    await ingestPaths(service.warehouse, [dir], { now: new Date('2026-02-01T00:00:00Z') });
  });

  afterAll(async () => {
    await service?.close();
    await medEhr?.close();
  });

  it('reads a Medication a draft order references by id from the fhirServer, with the bearer token, and warns of the combination', async () => {
    const before = medEhr.requests.length;
    const response = await post(body('medref-fhir', draft('p1', { medicationReference: { reference: 'Medication/oxy' } }), { prefetch: fullPrefetch('p1'), server: true }));
    expect(fastOutcomes.at(-1)).toBe('fallback');
    expect(response.status).toBe(200);
    expect((response.json.cards as Card[]).map((c) => c.summary)).toEqual(['Opioid and benzodiazepine together raise the risk of fatal overdose']);
    expect(medEhr.requests.slice(before)).toEqual([{ path: '/fhir/Medication?_id=oxy', authorized: true }]);
  });

  it('keeps calls whose Medications are contained or in a prefetch Bundle on the fast path, answering as the full path does', async () => {
    const contained = draft('p1', { medicationReference: { reference: '#oxy' }, contained: [oxy] });
    const referenced = draft('p1', { medicationReference: { reference: 'Medication/oxy' } });
    const calls = [body('medref-contained', contained, { prefetch: fullPrefetch('p1') }), body('medref-bundled', referenced, { prefetch: fullPrefetch('p1', oxy) })];
    const fast = [];
    for (const call of calls) fast.push(await post(call));
    expect(fastOutcomes.slice(-2)).toEqual(['evaluated', 'evaluated']);
    fastPath = false;
    try {
      for (const [i, call] of calls.entries()) {
        const full = await post({ ...call, hookInstance: `${String(call.hookInstance)}-full` });
        expect(full.status).toBe(200);
        expect(fast[i]!.status).toBe(200);
        expect((full.json.cards as unknown[]).length).toBe(1);
        expect(withoutUuids(full.json)).toEqual(withoutUuids(fast[i]!.json));
      }
    } finally {
      fastPath = true;
    }
  });

  it('answers 412 naming a referenced Medication that no source can give, rather than missing the warning', async () => {
    const response = await post(body('medref-none', draft('p1', { medicationReference: { reference: 'Medication/oxy' } }), { prefetch: fullPrefetch('p1') }));
    expect(fastOutcomes.at(-1)).toBe('fallback');
    expect(response.status).toBe(412);
    expect(response.json.missing).toEqual([]);
    expect(response.json.unresolved).toEqual([{ reference: 'Medication/oxy', reason: 'no-fhir-server', detail: 'not in the request, and no usable fhirServer; the local copy has no record of the patient' }]);
    expect(response.json.detail).toContain('Medication/oxy');
  });

  it('answers 412 naming a searchset whose next page could not be read, never evaluating page one as all there is', async () => {
    const firstPage = { resourceType: 'Bundle', type: 'searchset', total: 1, link: [{ relation: 'next', url: 'https://ehr.example/fhir/MedicationRequest?patient=p1&page=2' }], entry: [] };
    const order = draft('p1', { medicationCodeableConcept: rx('1049621', 'oxycodone hydrochloride 5 MG Oral Tablet') });
    const response = await post(body('partial-searchset', order, { prefetch: { ...fullPrefetch('p1'), medicationRequests: firstPage } }));
    expect(response.status).toBe(412);
    expect(response.json.missing).toEqual([{ key: 'medicationRequests', template: 'MedicationRequest?patient={{context.patientId}}', reason: 'incomplete' }]);
    expect(response.json.detail).toContain('"medicationRequests"');
  });

  it('fills a call without prefetch from the local copy for a patient it holds, and answers 412 naming every key for one it does not', async () => {
    const order = (patientId: string): Resource => draft(patientId, { medicationCodeableConcept: rx('1049621', 'oxycodone hydrochloride 5 MG Oral Tablet') });
    const held = await post(body('local-held', order('p-local'), {}));
    expect(held.status).toBe(200);
    expect((held.json.cards as Card[]).map((c) => c.summary)).toEqual(['Opioid and benzodiazepine together raise the risk of fatal overdose']);
    const absent = await post(body('local-absent', order('p-absent'), {}));
    expect(absent.status).toBe(412);
    expect((absent.json.missing as { key: string; reason: string }[]).map((m) => `${m.key}:${m.reason}`)).toEqual(['medicationRequests:no-fhir-server', 'medicationStatements:no-fhir-server', 'observations:no-fhir-server', 'patient:no-fhir-server']);
    expect(absent.json.detail).toContain('the local copy has no record of the patient');
  });
});
