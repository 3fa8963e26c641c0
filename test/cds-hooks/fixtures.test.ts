/**
 * The CDS Hooks service against published fixtures (../shared/fixtures/cds-hooks, see its
 * PROVENANCE.md): the CDS Hooks 2.0.1 spec examples, the hook library's context examples, the AHRQ
 * CQL Services fixtures, the Da Vinci CRD test kit requests and cards, and the CDC opioid CDS
 * requests. Published requests name real FHIR servers: the app only ever fetches through
 * loopbackOnlyFetch, and tests that want a FHIR server point `fhirServer` at a stand-in on 127.0.0.1.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOOK_CONTEXTS, parseHookRequest } from '../../src/cds-hooks/request.ts';
import { HOOK_IDS, type HookId } from '../../src/domain/hooks.ts';
import { HAS_SHARED, PROJECT_ROOT, SHARED_MISSING } from '../support/knowledge.ts';
import { ActionSchema, CardSchema, CardsResponseSchema, CairnCardSchema, CodingSchema, cardIssues, nullOrEmptyFields, SHARED_CDS_HOOKS, startEhrServer, type EhrServer } from './live.ts';
import { hookRequestFromCase, startService, type TestService } from './support.ts';

type Json = Record<string, unknown>;
type Resource = { resourceType: string; id?: string; [key: string]: unknown };

const fixture = (...parts: string[]): string => path.join(SHARED_CDS_HOOKS, ...parts);
const readJson = <T = Json>(...parts: string[]): T => JSON.parse(readFileSync(fixture(...parts), 'utf8')) as T;
const title = (name: string): string => `${name}${HAS_SHARED ? '' : ` (${SHARED_MISSING})`}`;

const HBA1C = 'hba1c-above-9-patient-view';
const STATIN = 'statin-for-diabetes-40-75-patient-view';
/** The service that answers each hook we serve (order-select/sign: the opioid/NSAID medication-safety group). */
const SERVICE_FOR: Partial<Record<HookId, string>> = {
  'patient-view': HBA1C,
  'order-select': 'medication-safety-order-select',
  'order-sign': 'medication-safety-order-sign',
};

let service: TestService;
let ehr: EhrServer;
let templates: Record<string, Record<string, string>>;
const keysOf = (serviceId: string): string[] => Object.keys(templates[serviceId] ?? {}).sort();

/** The resources a stand-in EHR serves, by patient id; tests add to it before calling. */
const ehrPatients: Record<string, Resource[]> = {};
const EHR_TOKEN = 'some-opaque-fhir-access-token';

async function post(url: string, body: unknown): Promise<{ status: number; contentType: string; json: Json }> {
  const response = await service.app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${await service.token(url)}` },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.statusCode, contentType: String(response.headers['content-type']), json: response.json() as Json };
}

const missingKeys = (json: Json): string[] => ((json.missing ?? []) as { key: string }[]).map((m) => m.key).sort();
const issueFields = (json: Json): string[] => ((json.issues ?? []) as { field: string }[]).map((i) => i.field);

/** resourcesOf flattens a prefetch value (resource, searchset Bundle or null) into its resources. */
function resourcesOf(value: unknown): Resource[] {
  if (value === null || typeof value !== 'object') return [];
  const resource = value as Resource;
  if (resource.resourceType !== 'Bundle') return [resource];
  return ((resource.entry ?? []) as { resource?: Resource }[]).flatMap((e) => (e.resource ? [e.resource] : []));
}

/**
 * aboutPrefetchedPatient sets context.patientId to the id of the Patient the prefetch holds: AHRQ's
 * requests name one patient in the context (`1288992`, `2-1`) and prefetch another (`Patient/1`, a
 * uuid), which we refuse to evaluate as the context patient (412, reason `other-patient`).
 */
function aboutPrefetchedPatient(request: Json): Json {
  const patient = Object.values(request.prefetch as Json).flatMap(resourcesOf).find((r) => r.resourceType === 'Patient');
  return patient?.id ? { ...request, context: { ...(request.context as Json), patientId: patient.id } } : request;
}

/**
 * byOurKeys re-keys a prefetch whose keys are resource types or arbitrary names (AHRQ: `Condition`,
 * opioid CDS: `item3`) to our template keys, by the resource type each value holds. Our keys the
 * publisher's service never asked for are `null` ("the client has no data"), which is what a
 * client whose service asked only for those keys would have to send us.
 */
function byOurKeys(prefetch: Json, serviceId: string, options: { keepMissing?: readonly string[] } = {}): Json {
  const byType = new Map<string, Resource[]>();
  const nullTypes = new Set<string>();
  for (const [key, value] of Object.entries(prefetch)) {
    if (value === null) nullTypes.add(key);
    for (const resource of resourcesOf(value)) byType.set(resource.resourceType, [...(byType.get(resource.resourceType) ?? []), resource]);
  }
  const out: Json = {};
  for (const [key, template] of Object.entries(templates[serviceId] ?? {})) {
    const type = template.split(/[/?]/)[0] ?? '';
    if (options.keepMissing?.includes(type)) continue;
    const found = byType.get(type) ?? [];
    if (type === 'Patient') out[key] = found[0] ?? null;
    else out[key] = found.length || !nullTypes.has(type) ? { resourceType: 'Bundle', type: 'searchset', entry: found.map((resource) => ({ resource })) } : null;
  }
  return out;
}

beforeAll(async () => {
  if (!HAS_SHARED) return;
  service = await startService();
  ehr = await startEhrServer({ patients: ehrPatients, token: EHR_TOKEN });
  const url = '/cds-services';
  const discovery = await service.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${await service.token(url)}` } });
  templates = Object.fromEntries((discovery.json() as { services: { id: string; prefetch?: Record<string, string> }[] }).services.map((s) => [s.id, s.prefetch ?? {}]));
});

afterAll(async () => {
  await service?.close();
  await ehr?.close();
});

describe.skipIf(!HAS_SHARED)(title('CDS Hooks 2.0.1 spec examples'), () => {
  it('01 patient-view request: 412 naming every key of our services (its only prefetch key is not ours, and its fhirServer is not reachable from tests)', async () => {
    const request = readJson('spec-examples', '01-request-patient-view.json');
    for (const id of [HBA1C, STATIN]) {
      const response = await post(`/cds-services/${id}`, request);
      expect(response.status, id).toBe(412);
      expect(response.contentType).toContain('application/problem+json');
      expect(missingKeys(response.json)).toEqual(keysOf(id));
      // The published server hooks.smarthealthit.org was never contacted: loopbackOnlyFetch refused it.
      expect((response.json.missing as { reason: string }[]).every((m) => m.reason === 'fetch-failed')).toBe(true);
    }
  });

  it('01 patient-view request with its fhirServer standing in on 127.0.0.1: the data is fetched with its token, 200 and no card for a 100-year-old without labs', async () => {
    const request = readJson('spec-examples', '01-request-patient-view.json');
    const patient = (request.prefetch as Json).patientToGreet as Resource;
    ehrPatients['1288992'] = [patient];
    const before = ehr.requests.length;
    for (const id of [HBA1C, STATIN]) {
      const response = await post(`/cds-services/${id}`, { ...request, fhirServer: ehr.base });
      expect(response.status, id).toBe(200);
      expect(response.json).toEqual({ cards: [] });
    }
    const made = ehr.requests.slice(before);
    expect(made.length).toBe(keysOf(HBA1C).length + keysOf(STATIN).length);
    expect(made.every((r) => r.authorized)).toBe(true);
  });

  it('25 request with extension: 400 naming context.patientId (patient-view requires it)', async () => {
    const response = await post(`/cds-services/${HBA1C}`, readJson('spec-examples', '25-request-with-extension.json'));
    expect(response.status).toBe(400);
    expect(issueFields(response.json)).toEqual(['context.patientId']);
  });

  it.each(['18-feedback-accepted.json', '19-feedback-overridden.json', '20-feedback-overridden-with-reason.json'])('%s: valid feedback for a card we never issued is a 404 problem naming it', async (file) => {
    const body = readJson<{ feedback: { card: string }[] }>('spec-examples', file);
    const response = await post(`/cds-services/${HBA1C}/feedback`, body);
    expect(response.status).toBe(404);
    expect(response.contentType).toContain('application/problem+json');
    expect(response.json.detail).toContain(body.feedback[0]!.card);
  });

  it('the spec response, card, source, action and override-reason examples pass our card schema (sanity check of the schema)', () => {
    for (const file of ['09-response-empty-cards.json', '16-response-cards-links-overridereasons.json']) {
      expect(CardsResponseSchema.safeParse(readJson('spec-examples', file)).success, file).toBe(true);
    }
    // 17's card has no `indicator`, which the Card table requires: a defect of the example, and the only one.
    expect(cardIssues(readJson<{ cards: unknown[] }>('spec-examples', '17-response-autolaunchable.json').cards[0], CardSchema)).toEqual(['indicator: Invalid option: expected one of "info"|"warning"|"critical"']);
    for (const file of ['11-action-create.json', '12-action-update.json', '13-action-delete.json']) expect(cardIssues(readJson('spec-examples', file), ActionSchema), file).toEqual([]);
    expect(CodingSchema.safeParse((readJson('spec-examples', '10-source.json').source as Json).topic).success).toBe(true);
    for (const reason of readJson<{ overrideReasons: unknown[] }>('spec-examples', '14-reasons-for-rejecting-a-card.json').overrideReasons) expect(CodingSchema.safeParse(reason).success).toBe(true);
    // 15's system action has no `description`, which the spec's own Action table requires: a defect of the example.
    expect(cardIssues((readJson<{ systemActions: unknown[] }>('spec-examples', '15-response-system-action.json').systemActions[0]), ActionSchema)).toEqual(['description: Invalid input: expected string, received undefined']);
  });
});

describe.skipIf(!HAS_SHARED)(title('hook library context examples'), () => {
  const files = HAS_SHARED ? readdirSync(fixture('hook-examples')).sort() : [];
  const ours = files.filter((f) => (HOOK_IDS as readonly string[]).includes(f.split('--')[0]!));

  it('has the examples we expect (a missing or renamed file fails here)', () => {
    expect(ours).toEqual([
      'appointment-book--01-examples-stu3.json', 'appointment-book--02-examples-stu3.json', 'encounter-discharge--01-examples.json', 'encounter-start--01-examples.json',
      'order-select--01-example-r4.json', 'order-select--02-example-stu3.json', 'order-select--03-example-dstu2.json',
      'order-sign--01-example-r4.json', 'order-sign--02-example-stu3.json', 'order-sign--03-example-dstu2.json', 'patient-view--01-examples.json', 'patient-view--02-examples.json',
    ]);
  });

  // R4 and version-neutral examples; appointment-book has only STU3 examples, whose context shape
  // (ids and an appointments Bundle) is the same in R4, so they are checked too. DSTU2/STU3 order
  // examples carry DSTU2/STU3 resources in draftOrders; our context validation does not look
  // inside resources, so they pass as well, but only R4 resources are evaluated meaningfully.
  it.each(ours)('%s passes our context validation for its hook', (file) => {
    const hook = file.split('--')[0] as HookId;
    const { context } = readJson<{ context: Json }>('hook-examples', file);
    const parsed = parseHookRequest({ hook, hookInstance: 'd1577c69-dfbe-44ad-ba6d-3e05e953b2ea', context }, hook);
    expect(parsed.ok ? [] : parsed.issues).toEqual([]);
  });

  it.each(ours.filter((f) => !/stu3|dstu2/.test(f) && SERVICE_FOR[f.split('--')[0] as HookId]))('%s over HTTP to our service: validation passes, then 412 for want of data (no prefetch, no fhirServer)', async (file) => {
    const hook = file.split('--')[0] as HookId;
    const id = SERVICE_FOR[hook]!;
    const { context } = readJson<{ context: Json }>('hook-examples', file);
    const response = await post(`/cds-services/${id}`, { hook, hookInstance: 'd1577c69-dfbe-44ad-ba6d-3e05e953b2ea', context });
    expect(response.status).toBe(412);
    expect(missingKeys(response.json)).toEqual(keysOf(id));
  });

  it('order-dispatch and medication-refill are not hooks we serve: a patient-view service refuses them naming hook', async () => {
    for (const file of files.filter((f) => /^(order-dispatch|medication-refill)--.*r4/.test(f))) {
      const hook = file.split('--')[0]!;
      const response = await post(`/cds-services/${HBA1C}`, { hook, hookInstance: 'x', context: readJson<{ context: Json }>('hook-examples', file).context });
      expect(response.status, file).toBe(400);
      expect(issueFields(response.json)).toEqual(['hook']);
    }
  });
});

describe.skipIf(!HAS_SHARED)(title('AHRQ CQL Services fixtures (patient-view)'), () => {
  const dir = ['ahrq-cql-services', 'fixtures', 'hooks-patients', 'R4'];
  const names = ['active_person_invocation', 'lazy_person_invocation', 'missing_prefetch_keys_invocation', 'null_prefetch_values_invocation'];

  it.each(names)('%s as published: 412 naming every key of ours (its keys are resource-type names, its fhirServer unreachable from tests)', async (name) => {
    const response = await post(`/cds-services/${STATIN}`, readJson(...dir, `${name}.json`));
    expect(response.status).toBe(412);
    expect(missingKeys(response.json)).toEqual(keysOf(STATIN));
  });

  const adapted = (name: string, options: { keepMissing?: readonly string[] } = {}): Json => {
    const { fhirServer: _server, fhirAuthorization: _auth, ...request } = readJson(...dir, `${name}.json`);
    return aboutPrefetchedPatient({ ...request, prefetch: byOurKeys(request.prefetch as Json, STATIN, options) });
  };

  it('as published, the prefetched Patient is not the context patient: that key is missing (never evaluated as someone else)', async () => {
    const { fhirServer: _server, fhirAuthorization: _auth, ...published } = readJson(...dir, 'active_person_invocation.json');
    const response = await post(`/cds-services/${STATIN}`, { ...published, prefetch: byOurKeys(published.prefetch as Json, STATIN) });
    expect(response.status).toBe(412);
    expect(response.json.missing).toEqual([expect.objectContaining({ key: 'patient', reason: 'other-patient' })]);
  });

  it.each(['active_person_invocation', 'lazy_person_invocation'])('%s re-keyed to our templates: 200, no card (no diabetes)', async (name) => {
    const response = await post(`/cds-services/${STATIN}`, adapted(name));
    expect(response.status).toBe(200);
    expect(response.json).toEqual({ cards: [] });
  });

  it('missing_prefetch_keys re-keyed: 412 naming exactly the key it lacks (conditions), then the FHIR server fills it', async () => {
    const body = adapted('missing_prefetch_keys_invocation', { keepMissing: ['Condition'] });
    expect((body.prefetch as Json).conditions).toBeUndefined();
    const without = await post(`/cds-services/${STATIN}`, body);
    expect(without.status).toBe(412);
    expect(missingKeys(without.json)).toEqual(['conditions']);
    expect((without.json.missing as { template: string }[])[0]!.template).toBe('Condition?patient={{context.patientId}}');

    const before = ehr.requests.length;
    const original = readJson(...dir, 'missing_prefetch_keys_invocation.json');
    const fetched = await post(`/cds-services/${STATIN}`, { ...body, fhirServer: ehr.base, fhirAuthorization: original.fhirAuthorization });
    expect(fetched.status).toBe(200);
    expect(ehr.requests.slice(before).map((r) => r.path)).toEqual([`/fhir/Condition?patient=${String((body.context as Json).patientId)}`]);
  });

  it('null_prefetch_values (Condition and Observation null): 200, null means "no data", not missing', async () => {
    const body = adapted('null_prefetch_values_invocation');
    expect((body.prefetch as Json).conditions).toBeNull();
    const response = await post(`/cds-services/${STATIN}`, body);
    expect(response.status).toBe(200);
    expect(response.json).toEqual({ cards: [] });
  });

  it('the AHRQ feedback examples name cards we never issued: 404', async () => {
    for (const file of [['ahrq-cql-services', 'fixtures', 'hooks-feedback', 'feedbackFor2.json'], ['ahrq-cql-services', 'examples', 'hooks', 'R4', 'feedback.json']]) {
      const response = await post(`/cds-services/${STATIN}/feedback`, readJson(...file));
      expect(response.status, file.at(-1)).toBe(404);
    }
  });

  it('the Synthea patient-view examples re-keyed: 200 with spec-valid cards', async () => {
    const examples = ['Adolfo777_Braun514', 'Adrian111_Wunsch504', 'Cher186_Crooks415', 'Debora709_Mayer370', 'unhealthy_patient'];
    for (const name of examples) {
      const { fhirServer: _server, ...request } = readJson('ahrq-cql-services', 'examples', 'hooks', 'R4', `${name}.json`);
      for (const id of [HBA1C, STATIN]) {
        const response = await post(`/cds-services/${id}`, aboutPrefetchedPatient({ ...request, prefetch: byOurKeys(request.prefetch as Json, id) }));
        expect(response.status, `${name} ${id}`).toBe(200);
        for (const card of response.json.cards as unknown[]) expect(cardIssues(card), `${name} ${id}`).toEqual([]);
      }
    }
  });
});

describe.skipIf(!HAS_SHARED)(title('Da Vinci CRD test kit'), () => {
  const dir = 'davinci-crd-test-kit';
  const requests = HAS_SHARED ? readdirSync(fixture(dir)).filter((f) => f.endsWith('_hook_request.json')).sort() : [];
  /** As published, these name draft orders of Patient/1288992 under patientId "example": a call about two patients. */
  const TWO_PATIENTS = new Set(['order_select_hook_request.json', 'order_sign_hook_request.json']);
  const DRAFTS_PATIENT = '1288992';

  it('its valid_cards.json cards pass our CDS Hooks 2.0 card schema (sanity check of the schema)', () => {
    const cards = readJson<unknown[]>(dir, 'valid_cards.json');
    expect(cards.length).toBe(7);
    for (const card of cards) expect(cardIssues(card, CardSchema)).toEqual([]);
  });

  it.each(requests)('%s never gives a 5xx; hooks we serve validate, others are refused naming hook', async (file) => {
    const request = readJson(dir, file);
    const hook = request.hook as HookId;
    const served = SERVICE_FOR[hook];
    const response = await post(`/cds-services/${served ?? HBA1C}`, request);
    expect(response.status).toBeLessThan(500);
    if (TWO_PATIENTS.has(file)) {
      expect(response.status).toBe(400);
      expect(issueFields(response.json)).toEqual(['context.draftOrders']);
    } else if (served) {
      // Valid request without prefetch; its fhirServer (https://example/r4) is refused in tests.
      expect(response.status).toBe(412);
      expect(missingKeys(response.json)).toEqual(keysOf(served));
    } else {
      expect(response.status).toBe(400);
      expect(issueFields(response.json)).toEqual(['hook']);
    }
    if ((HOOK_IDS as readonly string[]).includes(hook)) {
      const parsed = parseHookRequest(request, hook);
      expect(parsed.ok ? [] : parsed.issues.map((i) => i.field)).toEqual(TWO_PATIENTS.has(file) ? ['context.draftOrders'] : []);
    } else {
      expect(['fancy-structure', 'order-dispatch']).toContain(hook);
    }
  });

  it.each([...TWO_PATIENTS])('%s about the patient of its draft orders, with its fhirServer standing in on 127.0.0.1: 200 with spec-valid cards', async (file) => {
    const request = readJson(dir, file);
    ehrPatients[DRAFTS_PATIENT] = [{ resourceType: 'Patient', id: DRAFTS_PATIENT, gender: 'male', birthDate: '1960-01-01' }];
    const context = { ...(request.context as Json), patientId: DRAFTS_PATIENT };
    const response = await post(`/cds-services/${SERVICE_FOR[request.hook as HookId]}`, { ...request, context, fhirServer: ehr.base, fhirAuthorization: { ...(request.fhirAuthorization as Json), access_token: EHR_TOKEN } });
    expect(response.status).toBe(200);
    expect(CardsResponseSchema.safeParse(response.json).success).toBe(true);
  });

  it('order_select_context.json passes our order-select context validation', () => {
    expect(HOOK_CONTEXTS['order-select'].safeParse(readJson(dir, 'order_select_context.json')).success).toBe(true);
  });
});

describe.skipIf(!HAS_SHARED)(title('our cards are valid CDS Hooks 2.0 cards for every rule test case with a hook'), () => {
  interface Case { file: string; hook: HookId; evaluatedAt: string; body: Parameters<typeof hookRequestFromCase>[0] }
  const cases: Case[] = [];
  for (const dir of readdirSync(path.join(PROJECT_ROOT, 'rules')).filter((d) => d.endsWith('.tests')).sort()) {
    for (const file of readdirSync(path.join(PROJECT_ROOT, 'rules', dir)).sort()) {
      const body = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'rules', dir, file), 'utf8')) as Case['body'] & { evaluatedAt: string; hook?: HookId };
      if (body.hook) cases.push({ file: `${dir}/${file}`, hook: body.hook, evaluatedAt: body.evaluatedAt, body });
    }
  }
  const cards: { where: string; card: unknown }[] = [];

  beforeAll(async () => {
    if (!HAS_SHARED) return;
    for (const testCase of cases) {
      for (const id of Object.keys(templates).filter((s) => s.endsWith(`-${testCase.hook}`))) {
        service.setNow(testCase.evaluatedAt);
        const response = await post(`/cds-services/${id}`, hookRequestFromCase(testCase.body, templates[id]!));
        const where = `${testCase.file} -> ${id}`;
        // Rule cases are checked as the service checks calls (src/domain/hook-context.ts): every one is answered.
        expect(response.status, where).toBe(200);
        for (const card of response.json.cards as unknown[]) cards.push({ where, card });
      }
    }
    service.setNow('2026-03-01T12:00:00Z');
  });

  it('produces cards to check (the sample knowledge fires in its hook test cases)', () => {
    expect(cases.length).toBeGreaterThan(40);
    expect(cards.length).toBeGreaterThan(15);
  });

  it('every card is spec-shaped (apart from the known resourceId defect below), with a uuid and no null or empty field', () => {
    const problems = cards.flatMap(({ where, card }) => [
      ...cardIssues(card, CairnCardSchema).filter((issue) => !KNOWN_DEFECT.test(issue)),
      ...nullOrEmptyFields(card),
    ].map((issue) => `${where}: ${issue}`));
    expect(problems).toEqual([]);
  });

  it('every card has the members every Da Vinci CRD valid card has (valid_cards.json), source with label, url and topic', () => {
    const valid = readJson<Record<string, unknown>[]>('davinci-crd-test-kit', 'valid_cards.json');
    const common = (objects: Record<string, unknown>[]): string[] => Object.keys(objects[0] ?? {}).filter((key) => objects.every((o) => key in o));
    const cardMembers = common(valid);
    const sourceMembers = common(valid.map((card) => card.source as Record<string, unknown>));
    expect(cardMembers.sort()).toEqual(['detail', 'indicator', 'source', 'summary', 'uuid']);
    expect(sourceMembers.sort()).toEqual(['label', 'topic', 'url']);
    const problems = cards.flatMap(({ where, card }) => {
      const members = card as Record<string, unknown>;
      const source = (members.source ?? {}) as Record<string, unknown>;
      return [...cardMembers.filter((m) => !(m in members)), ...sourceMembers.filter((m) => !(m in source)).map((m) => `source.${m}`)].map((m) => `${where}: no ${m}`);
    });
    expect(problems).toEqual([]);
  });

  const KNOWN_DEFECT = /resourceId/;
  it('delete actions carry resourceId as one relative-reference string (CDS Hooks 2.0 §Action)', () => {
    const problems = cards.flatMap(({ where, card }) => cardIssues(card, CairnCardSchema).filter((issue) => KNOWN_DEFECT.test(issue)).map((issue) => `${where}: ${issue}`));
    expect(problems).toEqual([]);
  });
});

describe.skipIf(!HAS_SHARED)(title('CDC opioid CDS requests (opioid-cds-r4)'), () => {
  const root = fixture('opioid-cds-r4', 'requests');
  const files = HAS_SHARED ? readdirSync(root, { recursive: true }).map(String).filter((f) => f.endsWith('.json')).sort() : [];
  const text = (file: string): string => readFileSync(path.join(root, file), 'utf8');
  const parses = (file: string): boolean => {
    try {
      JSON.parse(text(file));
      return true;
    } catch {
      return false;
    }
  };
  const hookOf = (file: string): HookId => /"hook"\s*:\s*"([^"]+)"/.exec(text(file))![1] as HookId;
  const invalid = files.filter((f) => !parses(f));

  it('has 67 requests, 62 of them invalid JSON as published', () => {
    expect(files.length).toBe(67);
    expect(invalid.length).toBe(62);
  });

  it('every invalid one gets a clear 400 problem from the service of its hook, never a 500', async () => {
    for (const file of invalid) {
      const id = SERVICE_FOR[hookOf(file)]!;
      const response = await post(`/cds-services/${id}`, text(file));
      expect(response.status, file).toBe(400);
      expect(response.contentType, file).toContain('application/problem+json');
      expect(response.json, file).toMatchObject({ status: 400, title: 'Malformed request', detail: expect.stringContaining('not valid JSON') });
    }
  });

  it('an untrusted caller sending one gets 401 before its body is read, not a parse error about it', async () => {
    const file = invalid[0]!;
    const url = `/cds-services/${SERVICE_FOR[hookOf(file)]}`;
    const response = await service.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload: text(file) });
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ status: 401, title: 'Unauthorized' });
  });

  /**
   * The valid ones, with their fhirServer (localhost:8080 as published) pointed at a stand-in that
   * holds exactly the resources the request prefetched (opioid CDS prefetch keys are `item1..n`, not ours).
   */
  const VALID: Readonly<Record<string, { status: number; missing?: string[]; field?: string }>> = {
    // `{{fhirServerUrl}}` is an unfilled template, not a URL.
    'HelloWorld/HelloWorld.json': { status: 400, field: 'fhirServer' },
    // No prefetch and no Patient on the server: only the Patient read fails.
    'OpioidCDSREC08OrderSign/noPrefetch.json': { status: 412, missing: ['patient'] },
    'OpioidCDSREC10/request-example-rec-10-illicit-drugs-POS-Opiate-non-synthetic.json': { status: 200 },
    // Their prefetched Patient (item1) is null: the client has no Patient to give, and neither has its server.
    // Its Observation obs2 is about another patient, as is its Patient.
    'OpioidCDSREC10PatientView/request-example-rec-10-patient-view-2-illicit-drugs.json': { status: 412, missing: ['observations', 'patient'] },
    'OpioidCDSREC11PatientView/request-example-rec-11-patient-view-benzo-trigger-with-opioid.json': { status: 412, missing: ['patient'] },
  };

  it('the valid ones are the five we expect', () => {
    expect(files.filter(parses)).toEqual(Object.keys(VALID).sort());
  });

  it.each(Object.keys(VALID))('%s: answered as expected, with spec-valid cards when 200', async (file) => {
    const request = JSON.parse(text(file)) as Json;
    const patientId = String((request.context as Json).patientId).replace(/^Patient\//, '');
    ehrPatients[patientId] = Object.values((request.prefetch ?? {}) as Json).flatMap(resourcesOf);
    const fhirServer = typeof request.fhirServer === 'string' && request.fhirServer.startsWith('http') ? ehr.base : request.fhirServer;
    const response = await post(`/cds-services/${SERVICE_FOR[request.hook as HookId]}`, { ...request, fhirServer, fhirAuthorization: { access_token: EHR_TOKEN, token_type: 'Bearer', expires_in: 300, scope: 'user/*.read', subject: 'cds' } });
    const want = VALID[file]!;
    expect(response.status).toBe(want.status);
    if (want.missing) expect(missingKeys(response.json)).toEqual(want.missing);
    if (want.field) expect(issueFields(response.json)).toEqual([want.field]);
    if (want.status === 200) for (const card of response.json.cards as unknown[]) expect(cardIssues(card).filter((i) => !/resourceId/.test(i))).toEqual([]);
  });
});
