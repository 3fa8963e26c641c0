import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Card } from '../../src/domain/decisions.ts';
import { PROJECT_ROOT } from '../support/knowledge.ts';
import { hookRequestFromCase, startService, type TestService } from './support.ts';

let service: TestService;
let templates: Record<string, Record<string, string>>;
/** The discovery document's services, as served. */
let discovered: { id: string; hook: string; title?: unknown; description?: unknown; usageRequirements?: unknown; prefetch?: Record<string, string> }[];
const ORDER_SELECT = '/cds-services/medication-safety-order-select';

async function caseFile(rule: string, name: string): Promise<Parameters<typeof hookRequestFromCase>[0]> {
  return JSON.parse(await readFile(path.join(PROJECT_ROOT, 'rules', `${rule}.tests`, `${name}.json`), 'utf8')) as Parameters<typeof hookRequestFromCase>[0];
}

async function call(url: string, body: unknown, options: { token?: string | null; headers?: Record<string, string> } = {}) {
  const token = options.token === undefined ? await service.token(url) : options.token;
  return service.app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...options.headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Every card is spec-shaped: required fields, no null or empty values, summary under 140. */
function expectValidCard(card: Card): void {
  expect(card.uuid).toMatch(/^[0-9a-f-]{36}$/);
  expect(card.summary.length).toBeLessThan(140);
  expect(['info', 'warning', 'critical']).toContain(card.indicator);
  expect(card.source.label).toBeTruthy();
  if (card.suggestions) {
    expect(card.selectionBehavior).toBeDefined();
    for (const s of card.suggestions) expect(s.uuid).toMatch(/^[0-9a-f-]{36}$/);
  }
  const walk = (value: unknown, at: string): void => {
    expect(value, at).not.toBeNull();
    if (Array.isArray(value)) {
      expect(value.length, at).toBeGreaterThan(0);
      value.forEach((v, i) => walk(v, `${at}[${i}]`));
    } else if (typeof value === 'object') {
      for (const [k, v] of Object.entries(value as object)) walk(v, `${at}.${k}`);
    } else if (typeof value === 'string') expect(value.length, at).toBeGreaterThan(0);
  };
  walk(card, 'card');
}

beforeAll(async () => {
  service = await startService();
  const discovery = await service.app.inject({ method: 'GET', url: '/cds-services', headers: { authorization: `Bearer ${await service.token('/cds-services')}` } });
  discovered = (discovery.json() as { services: typeof discovered }).services;
  templates = Object.fromEntries(discovered.map((s) => [s.id, s.prefetch ?? {}]));
});

afterAll(async () => {
  await service.close();
});

describe('discovery', () => {
  it('lists one service per hook and rule group, with prefetch derived from the CQL and one Patient template', async () => {
    expect(Object.keys(templates).sort()).toEqual([
      'hba1c-above-9-patient-view', 'medication-safety-order-select', 'medication-safety-order-sign', 'statin-for-diabetes-40-75-patient-view',
    ]);
    const prefetch = templates['medication-safety-order-select']!;
    expect(prefetch.patient).toBe('Patient/{{context.patientId}}');
    expect(prefetch.medicationRequests).toBe('MedicationRequest?patient={{context.patientId}}');
    expect(Object.values(prefetch).filter((t) => t.startsWith('Patient')).length).toBe(1);
    for (const entry of discovered) {
      expect(typeof entry.title === 'string' && entry.title.trim(), `${entry.id}.title`).toBeTruthy();
      expect(typeof entry.description === 'string' && entry.description.trim(), `${entry.id}.description`).toBeTruthy();
      // services.ts tells EHRs what order hooks must send; the other hooks need nothing beyond the spec.
      if (entry.hook === 'order-select' || entry.hook === 'order-sign') expect(typeof entry.usageRequirements === 'string' && entry.usageRequirements.trim(), `${entry.id}.usageRequirements`).toBeTruthy();
      else expect(entry, entry.id).not.toHaveProperty('usageRequirements');
    }
    expect(discovered.find((s) => s.hook === 'order-sign')?.usageRequirements).toContain('context.draftOrders');
  });

  it('refuses a caller without a valid token, with a problem body that does not say why', async () => {
    const none = await service.app.inject({ method: 'GET', url: '/cds-services' });
    expect(none.statusCode).toBe(401);
    expect(none.headers['content-type']).toContain('application/problem+json');
    const wrongAudience = await service.app.inject({ method: 'GET', url: '/cds-services', headers: { authorization: `Bearer ${await service.token('/cds-services/other')}` } });
    expect(wrongAudience.statusCode).toBe(401);
    expect(wrongAudience.json()).toEqual(none.json());
  });
});

describe('service calls', () => {
  it('answers order-select with a spec-valid card naming the rule outcome, from prefetch alone', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
    const response = await call(ORDER_SELECT, hookRequestFromCase(testCase, templates['medication-safety-order-select']!));
    expect(response.statusCode).toBe(200);
    const { cards } = response.json() as { cards: Card[] };
    expect(cards).toHaveLength(1);
    expectValidCard(cards[0]!);
    expect(cards[0]!.indicator).toBe('warning');
    expect(cards[0]!.suggestions?.[0]?.actions?.[0]).toMatchObject({ type: 'delete' });
  });

  it('answers order-select about the orders just selected: a card about an earlier-selected draft waits for order-sign', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
    const request = hookRequestFromCase(testCase, templates['medication-safety-order-select']!) as { context: { draftOrders: { entry: { resource: Record<string, unknown> }[] }; selections: string[] } };
    const metformin = { resourceType: 'MedicationRequest', id: 'draft-2', status: 'draft', intent: 'order', subject: { reference: `Patient/${String((request.context as unknown as { patientId: string }).patientId)}` }, medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '860975', display: 'metformin 500 MG' }] } };
    const bothDrafted = { ...request, context: { ...request.context, draftOrders: { ...request.context.draftOrders, entry: [...request.context.draftOrders.entry, { resource: metformin }] } } };
    const opioidSelected = (await call(ORDER_SELECT, bothDrafted)).json() as { cards: Card[] };
    expect(opioidSelected.cards).toHaveLength(1);
    expect(JSON.stringify(opioidSelected.cards[0]!.extension)).toContain('MedicationRequest/draft-1');
    const metforminSelected = await call(ORDER_SELECT, { ...bothDrafted, context: { ...bothDrafted.context, selections: ['MedicationRequest/draft-2'] } });
    expect(metforminSelected.json()).toEqual({ cards: [] });
    const signed = await call('/cds-services/medication-safety-order-sign', { ...bothDrafted, hook: 'order-sign', context: { ...bothDrafted.context, selections: undefined } });
    expect((signed.json() as { cards: Card[] }).cards).toHaveLength(1);
  });

  it('reads the body the same whatever its JSON text holds: UTF-8 beyond ASCII, and a text/plain content type', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
    const request = hookRequestFromCase(testCase, templates['medication-safety-order-select']!);
    const json = await call(ORDER_SELECT, request);
    expect(json.statusCode).toBe(200);
    const text = await call(ORDER_SELECT, request, { headers: { 'content-type': 'text/plain' } });
    expect(text.statusCode).toBe(200);
    expect(text.json()).toEqual(json.json());
    // A display with multi-byte characters reaches the card as sent.
    const accented = JSON.parse(JSON.stringify(request).replaceAll('"text":"', '"text":"Pr\u00e9paration \u2014 ')) as typeof request;
    const decoded = await call(ORDER_SELECT, accented);
    expect(decoded.statusCode).toBe(200);
    expect(decoded.body).toContain('Pr\u00e9paration \u2014');
  });

  it('answers with no cards when nothing fires', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-without-benzodiazepine');
    const response = await call(ORDER_SELECT, hookRequestFromCase(testCase, templates['medication-safety-order-select']!));
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ cards: [] });
  });

  const invalid: { name: string; edit: (body: Record<string, unknown>) => unknown; field: string }[] = [
    { name: 'missing hook', edit: ({ hook: _hook, ...rest }) => rest, field: 'hook' },
    { name: 'missing hookInstance', edit: ({ hookInstance: _h, ...rest }) => rest, field: 'hookInstance' },
    { name: 'missing context', edit: ({ context: _c, ...rest }) => rest, field: 'context' },
    { name: 'a hook that does not match the service', edit: (b) => ({ ...b, hook: 'patient-view' }), field: 'hook' },
    { name: 'fhirAuthorization without fhirServer', edit: (b) => ({ ...b, fhirAuthorization: { access_token: 't', token_type: 'Bearer', expires_in: 300, scope: 'user/*.read', subject: 'cds' } }), field: 'fhirServer' },
    { name: 'order-select context without selections', edit: (b) => ({ ...b, context: { ...(b.context as object), selections: undefined } }), field: 'context.selections' },
    { name: 'a patientId that is a URL dot segment', edit: (b) => ({ ...b, context: { ...(b.context as object), patientId: 'Patient/..' } }), field: 'context.patientId' },
    { name: 'a patientId outside the FHIR id grammar', edit: (b) => ({ ...b, context: { ...(b.context as object), patientId: 'p1/_history' } }), field: 'context.patientId' },
    { name: 'an encounterId that is a URL dot segment', edit: (b) => ({ ...b, context: { ...(b.context as object), encounterId: '.' } }), field: 'context.encounterId' },
    { name: 'a userId whose id is a URL dot segment', edit: (b) => ({ ...b, context: { ...(b.context as object), userId: 'Practitioner/..' } }), field: 'context.userId' },
    { name: 'a selection that is not one of the draft orders', edit: (b) => ({ ...b, context: { ...(b.context as object), selections: ['MedicationRequest/nope'] } }), field: 'context.selections.0' },
    { name: 'draftOrders that is not a Bundle', edit: (b) => ({ ...b, context: { ...(b.context as object), draftOrders: { resourceType: 'MedicationRequest' } } }), field: 'context.draftOrders.resourceType' },
  ];
  for (const { name, edit, field } of invalid) {
    it(`gives 400 naming the field for ${name}`, async () => {
      const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
      const response = await call(ORDER_SELECT, edit(hookRequestFromCase(testCase, templates['medication-safety-order-select']!)));
      expect(response.statusCode).toBe(400);
      expect(response.headers['content-type']).toContain('application/problem+json');
      expect((response.json() as { issues: { field: string }[] }).issues.map((i) => i.field)).toContain(field);
    });
  }

  it('gives 404 for an unknown service and 400 for a body that is not JSON', async () => {
    expect((await call('/cds-services/nope', {})).statusCode).toBe(404);
    const broken = await call(ORDER_SELECT, '{"hook": "order-select",');
    expect(broken.statusCode).toBe(400);
    expect(broken.headers['content-type']).toContain('application/problem+json');
  });

  it('gives 400 naming context for a context nested 30,000 deep (it overflowed the stack: 500)', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
    const body = hookRequestFromCase(testCase, templates['medication-safety-order-select']!);
    const deep = `${'{"a":'.repeat(30_000)}1${'}'.repeat(30_000)}`;
    const text = JSON.stringify({ ...body, context: { ...(body.context as object), deep: 0 } }).replace('"deep":0', `"deep":${deep}`);
    const response = await call(ORDER_SELECT, text);
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toContain('application/problem+json');
    expect((response.json() as { issues: { field: string }[] }).issues.map((i) => i.field)).toEqual(['context']);
  });

  it('answers a prefetch resource nested 30,000 deep without a 5xx (prefetch is only read as deep as the CQL asks)', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
    const body = hookRequestFromCase(testCase, templates['medication-safety-order-select']!);
    const deep = `${'{"a":'.repeat(30_000)}1${'}'.repeat(30_000)}`;
    const observation = { resourceType: 'Observation', id: 'deep', status: 'final', subject: { reference: 'Patient/p1' }, note: 0 };
    const prefetch = { ...(body.prefetch as Record<string, unknown>), observations: { resourceType: 'Bundle', type: 'searchset', entry: [{ resource: observation }] } };
    expect(Object.keys(templates['medication-safety-order-select']!)).toContain('observations');
    const text = JSON.stringify({ ...body, prefetch }).replace('"note":0', `"note":${deep}`);
    const response = await call(ORDER_SELECT, text);
    expect(response.statusCode).toBe(200);
  });

  it('gives 412 naming the prefetch key it could not obtain, without a FHIR server', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
    const body = hookRequestFromCase(testCase, templates['medication-safety-order-select']!);
    const prefetch = { ...(body.prefetch as Record<string, unknown>) };
    delete prefetch.medicationRequests;
    const response = await call(ORDER_SELECT, { ...body, prefetch });
    expect(response.statusCode).toBe(412);
    expect((response.json() as { missing: { key: string }[] }).missing.map((m) => m.key)).toEqual(['medicationRequests']);
  });

  it('gives 412 for a prefetched Patient that is not the context patient, rather than evaluating another patient', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
    const body = hookRequestFromCase(testCase, templates['medication-safety-order-select']!);
    const prefetch = body.prefetch as Record<string, Record<string, unknown>>;
    const key = Object.keys(prefetch).find((k) => prefetch[k]?.resourceType === 'Patient')!;
    const response = await call(ORDER_SELECT, { ...body, prefetch: { ...prefetch, [key]: { ...prefetch[key], id: 'someone-else' } } });
    expect(response.statusCode).toBe(412);
    expect((response.json() as { missing: unknown[] }).missing).toEqual([{ key, template: templates['medication-safety-order-select']![key], reason: 'other-patient' }]);
  });

  it('treats null prefetch values as "no data", not as missing', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
    const body = hookRequestFromCase(testCase, templates['medication-safety-order-select']!);
    const response = await call(ORDER_SELECT, { ...body, prefetch: { ...(body.prefetch as object), observations: null, medicationStatements: null } });
    expect(response.statusCode).toBe(200);
  });

  it('gives 413 for a body over the limit', async () => {
    const small = await startService({ bodyLimit: 2048 });
    try {
      const url = ORDER_SELECT;
      const response = await small.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', authorization: `Bearer ${await small.token(url)}` }, payload: JSON.stringify({ pad: 'x'.repeat(5000) }) });
      expect(response.statusCode).toBe(413);
      expect(response.headers['content-type']).toContain('application/problem+json');
    } finally {
      await small.close();
    }
  });

  it('gives 415 for a compressed body (it was a 400 "not JSON"), and 401 first to a caller without a token', async () => {
    const gzipped = gzipSync(JSON.stringify({ hook: 'order-select' }));
    const compressed = await service.app.inject({ method: 'POST', url: ORDER_SELECT, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', authorization: `Bearer ${await service.token(ORDER_SELECT)}` }, payload: gzipped });
    expect(compressed.statusCode).toBe(415);
    expect(compressed.headers['content-type']).toContain('application/problem+json');
    expect(compressed.json()).toMatchObject({ title: 'Unsupported media type', detail: 'Content-Encoding "gzip" is not supported: send the body uncompressed' });
    const anonymous = await service.app.inject({ method: 'POST', url: ORDER_SELECT, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: gzipped });
    expect(anonymous.statusCode).toBe(401);
    const identity = await call(ORDER_SELECT, '{', { headers: { 'content-encoding': 'identity' } });
    expect(identity.statusCode).toBe(400);
  });

  it('quotes at most 200 characters of an unknown path back', async () => {
    const response = await service.app.inject({ method: 'GET', url: `/${'x'.repeat(5000)}` });
    expect(response.statusCode).toBe(404);
    expect(String((response.json() as { detail: string }).detail).length).toBeLessThan(260);
  });

  it('echoes an allow-listed CORS origin on preflight and never a wildcard', async () => {
    const allowed = await service.app.inject({ method: 'OPTIONS', url: ORDER_SELECT, headers: { origin: 'https://sandbox.cds-hooks.org', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization' } });
    expect(allowed.headers['access-control-allow-origin']).toBe('https://sandbox.cds-hooks.org');
    expect(String(allowed.headers['access-control-allow-headers']).toLowerCase()).toContain('authorization');
    const other = await service.app.inject({ method: 'OPTIONS', url: ORDER_SELECT, headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('never answers 5xx to arbitrary JSON bodies (property)', async () => {
    const url = ORDER_SELECT;
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue(), fc.record({ hook: fc.constant('order-select'), hookInstance: fc.string(), context: fc.jsonValue(), prefetch: fc.jsonValue() })), async (body) => {
        const response = await call(url, JSON.stringify(body));
        expect(response.statusCode).toBeLessThan(500);
      }),
      { numRuns: 60 },
    );
  });

  it('never answers 5xx to a valid call with one value replaced or removed anywhere in it (property)', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
    const valid = hookRequestFromCase(testCase, templates['medication-safety-order-select']!);
    const paths = pathsOf(valid);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...paths), fc.option(fc.jsonValue({ maxDepth: 2 }), { nil: undefined }), async (at, value) => {
        const response = await call(ORDER_SELECT, JSON.stringify(replaced(valid, at, value)));
        expect(response.statusCode, `${at.join('.')} = ${JSON.stringify(value)}`).toBeLessThan(500);
      }),
      { numRuns: 150 },
    );
  });

  it('never answers 5xx to feedback with one value replaced or removed anywhere in it (property)', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
    const [card] = ((await call(ORDER_SELECT, hookRequestFromCase(testCase, templates['medication-safety-order-select']!))).json() as { cards: Card[] }).cards;
    const valid = { feedback: [{ card: card!.uuid, outcome: 'overridden', acceptedSuggestions: [{ id: card!.suggestions![0]!.uuid }], overrideReason: { reason: { system: 'urn:x', code: 'snooze-30d', display: 'later' }, userComment: 'c' }, outcomeTimestamp: '2026-03-01T12:00:05Z' }] };
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...pathsOf(valid)), fc.option(fc.jsonValue({ maxDepth: 2 }), { nil: undefined }), async (at, value) => {
        const response = await call(`${ORDER_SELECT}/feedback`, JSON.stringify(replaced(valid, at, value)));
        expect(response.statusCode, `${at.join('.')} = ${JSON.stringify(value)}`).toBeLessThan(500);
      }),
      { numRuns: 100 },
    );
  });
});

/** Every path to a value inside `value` (objects and arrays), the root excluded. */
function pathsOf(value: unknown, at: readonly (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, child]) => {
    const path = [...at, Array.isArray(value) ? Number(key) : key];
    return [path, ...pathsOf(child, path)];
  });
}

/** A deep copy of `value` with the value at `path` replaced, or removed when `replacement` is undefined. */
function replaced(value: unknown, path: readonly (string | number)[], replacement: unknown): unknown {
  const copy = structuredClone(value) as Record<string | number, unknown>;
  let parent = copy;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (replacement === undefined) {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else parent[last] = replacement;
  return copy;
}

describe('feedback', () => {
  it('stores accepted and overridden outcomes idempotently and 404s unknown cards (snoozes: feedback.test.ts)', async () => {
    const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
    const body = hookRequestFromCase(testCase, templates['medication-safety-order-select']!);
    const first = (await call(ORDER_SELECT, body)).json() as { cards: Card[] };
    const card = first.cards[0]!;
    const feedbackUrl = `${ORDER_SELECT}/feedback`;
    const accepted = { feedback: [{ card: card.uuid, outcome: 'accepted', acceptedSuggestions: [{ id: card.suggestions![0]!.uuid }], outcomeTimestamp: '2026-03-01T12:00:05Z' }] };
    expect((await call(feedbackUrl, accepted)).json()).toEqual({ stored: 1, duplicates: 0 });
    expect((await call(feedbackUrl, accepted)).json()).toEqual({ stored: 0, duplicates: 1 });

    const unknown = await call(feedbackUrl, { feedback: [{ card: '00000000-0000-5000-8000-000000000000', outcome: 'accepted', outcomeTimestamp: '2026-03-01T12:00:05Z' }] });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.headers['content-type']).toContain('application/problem+json');

    const overridden = { feedback: [{ card: card.uuid, outcome: 'overridden', overrideReason: { reason: { system: 'http://cairn.health/fhir/CodeSystem/override-reason', code: 'benefit-outweighs-risk' }, userComment: 'discussed' }, outcomeTimestamp: '2026-03-01T12:01:00Z' }] };
    expect((await call(feedbackUrl, overridden)).json()).toEqual({ stored: 1, duplicates: 0 });
  });
});

describe('overload', () => {
  it('answers 503 with Retry-After when the in-flight limit is reached, instead of slowing every call', async () => {
    const { createServer } = await import('node:http');
    // A FHIR server that takes 400 ms: the first call stays in flight while the second arrives.
    const slow = createServer((_req, res) => void setTimeout(() => res.writeHead(200, { 'content-type': 'application/fhir+json' }).end('{"resourceType":"Bundle","type":"searchset","entry":[]}'), 400));
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const limited = await startService({ maxInFlight: 1 });
    try {
      const port = (slow.address() as { port: number }).port;
      const testCase = await caseFile('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine');
      const body = { ...hookRequestFromCase(testCase, templates['medication-safety-order-select']!), prefetch: {}, fhirServer: `http://127.0.0.1:${port}/fhir` };
      const send = async () => limited.app.inject({ method: 'POST', url: ORDER_SELECT, headers: { 'content-type': 'application/json', authorization: `Bearer ${await limited.token(ORDER_SELECT)}` }, payload: JSON.stringify(body) });
      const first = send();
      await new Promise((r) => setTimeout(r, 150));
      const second = await send();
      expect(second.statusCode).toBe(503);
      expect(second.headers['retry-after']).toBe('1');
      expect(second.headers['content-type']).toContain('application/problem+json');
      expect((await first).statusCode).not.toBe(503);
      expect((await send()).statusCode).not.toBe(503);
    } finally {
      await limited.close();
      await new Promise((r) => slow.close(r));
    }
  });
});
