import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_OFF_WARNING, FORBIDDEN_MESSAGE } from '../../src/cds-hooks/auth/index.ts';
import type { Card } from '../../src/domain/decisions.ts';
import { queryRows } from '../../src/warehouse/database.ts';
import { PROJECT_ROOT } from '../support/knowledge.ts';
import { EHR_TOKEN, startEhrServer, type EhrServer } from './live.ts';
import { hookRequestFromCase, OTHER_ISSUER, startService, type TestService } from './support.ts';

/**
 * Authorization per service over HTTP (a valid token from a client not allowed that service gets
 * 403), and authentication switched off (CAIRN_AUTH=off) warning on every request.
 */
const ORDER_SELECT = 'medication-safety-order-select';
const ORDER_SIGN = 'medication-safety-order-sign';
const DISCOVERY = '/cds-services';

async function opioidCase(): Promise<Parameters<typeof hookRequestFromCase>[0]> {
  const file = path.join(PROJECT_ROOT, 'rules/opioid-benzodiazepine-concurrent.tests/opioid-ordered-with-active-benzodiazepine.json');
  return JSON.parse(await readFile(file, 'utf8')) as Parameters<typeof hookRequestFromCase>[0];
}

/** The prefetch templates of every discovered service, by service id. */
async function templatesOf(service: TestService, authorization?: string): Promise<Record<string, Record<string, string>>> {
  const discovery = await service.app.inject({ method: 'GET', url: DISCOVERY, headers: authorization ? { authorization } : {} });
  expect(discovery.statusCode).toBe(200);
  return Object.fromEntries((discovery.json() as { services: { id: string; prefetch?: Record<string, string> }[] }).services.map((s) => [s.id, s.prefetch ?? {}]));
}

/** Valid order-select and order-sign calls: a 403 is about the caller, never the body. */
async function bodies(templates: Record<string, Record<string, string>>): Promise<Record<string, Record<string, unknown>>> {
  const testCase = await opioidCase();
  const sign = { ...hookRequestFromCase(testCase, templates[ORDER_SIGN]!), hook: 'order-sign', context: { ...testCase.context, selections: undefined } };
  return { [ORDER_SELECT]: hookRequestFromCase(testCase, templates[ORDER_SELECT]!), [ORDER_SIGN]: sign };
}

describe('a client allowed only some services', () => {
  let service: TestService;
  let body: Record<string, Record<string, unknown>>;

  /** post sends `payload` to `url` with a fresh token whose aud is exactly the URL invoked. */
  const post = async (url: string, payload: unknown, issuer?: string) =>
    service.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', authorization: `Bearer ${await service.token(url, {}, issuer)}` }, payload: JSON.stringify(payload) });

  beforeAll(async () => {
    // test-ehr (ISSUER) may call order-select only; other-ehr (OTHER_ISSUER) every service.
    service = await startService({ services: [ORDER_SELECT] });
    body = await bodies(await templatesOf(service, `Bearer ${await service.token(DISCOVERY)}`));
  });

  afterAll(async () => service.close());

  it('gets 403 with a problem body that names neither client nor service, calling another service and its feedback', async () => {
    const card = (await post(`/cds-services/${ORDER_SIGN}`, body[ORDER_SIGN], OTHER_ISSUER)).json() as { cards: Card[] };
    const feedback = { feedback: [{ card: card.cards[0]!.uuid, outcome: 'accepted', outcomeTimestamp: '2026-03-01T12:00:05Z' }] };
    const cases = [
      { name: 'service call', url: `/cds-services/${ORDER_SIGN}`, payload: body[ORDER_SIGN] },
      { name: 'feedback', url: `/cds-services/${ORDER_SIGN}/feedback`, payload: feedback },
    ];
    for (const { name, url, payload } of cases) {
      const response = await post(url, payload);
      expect(response.statusCode, name).toBe(403);
      expect(response.headers['content-type'], name).toContain('application/problem+json');
      expect(response.json(), name).toEqual({ title: 'Forbidden', status: 403, detail: FORBIDDEN_MESSAGE });
      expect(response.headers['www-authenticate'], name).toBeUndefined();
    }
    // The refused service call is audited under the verified client; feedback is not an invocation.
    await service.store.flush();
    const rows = await queryRows(service.warehouse.connection, `SELECT service_id, client, status FROM cds_invocation WHERE status = 403`);
    expect(rows).toEqual([{ service_id: ORDER_SIGN, client: 'test-ehr', status: 403 }]);
  });

  it('gets 200 from its allowed service and that service\'s feedback, and may still discover every service', async () => {
    const answered = await post(`/cds-services/${ORDER_SELECT}`, body[ORDER_SELECT]);
    expect(answered.statusCode).toBe(200);
    const { cards } = answered.json() as { cards: Card[] };
    expect(cards).toHaveLength(1);
    const feedback = await post(`/cds-services/${ORDER_SELECT}/feedback`, { feedback: [{ card: cards[0]!.uuid, outcome: 'accepted', outcomeTimestamp: '2026-03-01T12:00:05Z' }] });
    expect(feedback.statusCode).toBe(200);
    expect(feedback.json()).toEqual({ stored: 1, duplicates: 0 });
    const discovered = await templatesOf(service, `Bearer ${await service.token(DISCOVERY)}`);
    expect(Object.keys(discovered)).toContain(ORDER_SIGN);
  });

  it('gets 401, not 403, for a token whose aud is another service\'s URL: the audience is checked before the allow-list', async () => {
    const url = `/cds-services/${ORDER_SIGN}`;
    const response = await service.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', authorization: `Bearer ${await service.token(`/cds-services/${ORDER_SELECT}`)}` }, payload: JSON.stringify(body[ORDER_SIGN]) });
    expect(response.statusCode).toBe(401);
  });
});

describe('a client allowed only its own FHIR server (fhirServers)', () => {
  let service: TestService;
  let own: EhrServer;
  let other: EhrServer;
  let body: Record<string, unknown>;
  const url = `/cds-services/${ORDER_SELECT}`;
  const fhirAuthorization = { access_token: EHR_TOKEN, token_type: 'Bearer', expires_in: 300, scope: 'user/*.read', subject: 'cairn' };

  const post = async (payload: unknown) =>
    service.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', authorization: `Bearer ${await service.token(url)}` }, payload: JSON.stringify(payload) });

  beforeAll(async () => {
    const testCase = await opioidCase();
    const resources = (testCase.patient as { entry: { resource: { resourceType: string; id: string } }[] }).entry.map((e) => e.resource);
    own = await startEhrServer({ patients: { p1: resources } });
    other = await startEhrServer({ patients: { p1: resources } });
    // Configured with an upper-case scheme and a trailing slash: compared as URLs, not as text.
    service = await startService({ fhirServers: [`${own.base.replace(/^http:/, 'HTTP:')}/`] });
    body = (await bodies(await templatesOf(service, `Bearer ${await service.token(DISCOVERY)}`)))[ORDER_SELECT]!;
  });

  afterAll(async () => {
    await service?.close();
    await own?.close();
    await other?.close();
  });

  it('reads what the prefetch omits from its own server', async () => {
    const before = own.requests.length;
    const response = await post({ ...body, prefetch: undefined, fhirServer: own.base, fhirAuthorization });
    expect(response.statusCode).toBe(200);
    expect((response.json() as { cards: Card[] }).cards).toHaveLength(1);
    expect(own.requests.length).toBeGreaterThan(before);
  });

  it('gets 400 naming fhirServer for another server, which is never contacted, whether or not the prefetch left anything to read', async () => {
    for (const prefetch of [undefined, body.prefetch]) {
      const response = await post({ ...body, prefetch, fhirServer: other.base, fhirAuthorization });
      expect(response.statusCode).toBe(400);
      expect(response.headers['content-type']).toContain('application/problem+json');
      expect((response.json() as { issues: { field: string }[] }).issues.map((i) => i.field)).toEqual(['fhirServer']);
    }
    expect(other.requests).toEqual([]);
    // A call that names no server is answered from its prefetch as ever.
    expect((await post(body)).statusCode).toBe(200);
  });
});

/** One JSON line pino wrote. */
interface LogLine {
  readonly level: number;
  readonly msg?: string;
  readonly reqId?: string;
}

const WARN = 40;

describe('authentication switched off', () => {
  let service: TestService;
  const lines: LogLine[] = [];

  beforeAll(async () => {
    service = await startService({ authMode: 'off', logger: { level: 'info', stream: { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) } } });
  });

  afterAll(async () => service.close());

  it('answers callers without a token, logging one warning per request (discovery, service call, feedback)', async () => {
    const templates = await templatesOf(service);
    const body = (await bodies(templates))[ORDER_SELECT];
    const json = { 'content-type': 'application/json' };
    const answered = await service.app.inject({ method: 'POST', url: `/cds-services/${ORDER_SELECT}`, headers: json, payload: JSON.stringify(body) });
    expect(answered.statusCode).toBe(200);
    const [card] = (answered.json() as { cards: Card[] }).cards;
    const feedback = { feedback: [{ card: card!.uuid, outcome: 'accepted', outcomeTimestamp: '2026-03-01T12:00:05Z' }] };
    expect((await service.app.inject({ method: 'POST', url: `/cds-services/${ORDER_SELECT}/feedback`, headers: json, payload: JSON.stringify(feedback) })).statusCode).toBe(200);
    const more = 4;
    for (let i = 0; i < more; i++) expect((await service.app.inject({ method: 'GET', url: DISCOVERY })).statusCode).toBe(200);

    const requests = 3 + more;
    const completed = lines.filter((l) => l.msg === 'request completed');
    expect(completed).toHaveLength(requests);
    const warnings = lines.filter((l) => l.level === WARN);
    expect(warnings.map((l) => l.msg)).toEqual(Array<string>(requests).fill(AUTH_OFF_WARNING));
    // One per request: each request's own id, none twice.
    expect(warnings.map((l) => l.reqId).sort()).toEqual(completed.map((l) => l.reqId).sort());
    expect(new Set(warnings.map((l) => l.reqId)).size).toBe(requests);
  });
});
