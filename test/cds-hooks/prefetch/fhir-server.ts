/**
 * A small real FHIR server on 127.0.0.1 for prefetch tests: bearer-token check, paginated
 * searchsets, a slow endpoint, an endless pager, an error, and a `next` link to another host.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const TOKEN = 'test-access-token';

export interface RecordedRequest {
  readonly path: string;
  readonly authorization: string | undefined;
  readonly accept: string | undefined;
}

export interface TestServer {
  /** Base URL, ending in `/fhir`. */
  readonly base: string;
  readonly origin: string;
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

type Handler = (url: URL, server: { base: string }, res: ServerResponse, req: IncomingMessage) => void;

async function listen(handler: Handler): Promise<TestServer> {
  const requests: RecordedRequest[] = [];
  const holder = { base: '' };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    requests.push({ path: `${url.pathname}${url.search}`, authorization: req.headers.authorization, accept: req.headers.accept });
    handler(url, holder, res, req);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  holder.base = `${origin}/fhir`;
  return {
    base: holder.base,
    origin,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/fhir+json' });
  res.end(JSON.stringify(body));
}

function outcome(code: string, diagnostics: string): unknown {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] };
}

function searchset(resources: readonly unknown[], next?: string): unknown {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    ...(next ? { link: [{ relation: 'next', url: next }] } : {}),
    entry: resources.map((resource) => ({ search: { mode: 'match' }, resource })),
  };
}

const subject = { reference: 'Patient/p1' };
/** The only Medication the server holds: `Medication?_id=` searches find it, and nothing else. */
const MEDICATIONS = [{ resourceType: 'Medication', id: 'med1', code: { text: 'alprazolam 0.5 mg' } }];

/** startOtherHost is a second server (another origin) that must never be called. */
export function startOtherHost(): Promise<TestServer> {
  return listen((_url, _server, res) => send(res, 200, searchset([{ resourceType: 'Condition', id: 'stolen', subject }])));
}

/** startFhirServer serves patient p1; `otherHost` is where the Condition searchset's next link points. */
export function startFhirServer(options: { otherHost: string; slowMs?: number }): Promise<TestServer> {
  return listen((url, server, res, req) => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(res, 401, outcome('login', 'bearer token required'));
    const path = url.pathname.replace(/^\/fhir\//, '');
    const q = url.searchParams;
    const page = Number(q.get('page') ?? '1');
    if (path === 'Patient/p1') return send(res, 200, { resourceType: 'Patient', id: 'p1', gender: 'female', birthDate: '1970-01-01' });
    if (path === 'Patient/p404') return send(res, 404, outcome('not-found', 'Patient/p404 is not known'));
    // A misbehaving server: asked for one patient, it answers with another.
    if (path === 'Patient/mixed-up') return send(res, 200, { resourceType: 'Patient', id: 'p2' });
    if (path === 'MedicationRequest' && q.get('patient') === 'p1') {
      if (page === 1) return send(res, 200, searchset([{ resourceType: 'MedicationRequest', id: 'mr1', status: 'active', intent: 'order', subject }], `${server.base}/MedicationRequest?patient=p1&page=2`));
      // A relative next link: resolved against the fhirServer base.
      if (page === 2) return send(res, 200, searchset([{ resourceType: 'MedicationRequest', id: 'mr2', status: 'active', intent: 'order', subject, medicationReference: { reference: 'Medication/med1' } }], 'MedicationRequest?patient=p1&page=3'));
      return send(res, 200, searchset([{ resourceType: 'MedicationRequest', id: 'mr3', status: 'stopped', intent: 'order', subject }]));
    }
    if (path === 'MedicationStatement') return send(res, 200, searchset([]));
    if (path === 'Medication') return send(res, 200, searchset(MEDICATIONS.filter((m) => (q.get('_id') ?? '').split(',').includes(m.id))));
    if (path === 'Observation') {
      const timer = setTimeout(() => send(res, 200, searchset([{ resourceType: 'Observation', id: 'late', subject }])), options.slowMs ?? 5000);
      res.on('close', () => clearTimeout(timer));
      return undefined;
    }
    if (path === 'Condition') return send(res, 200, searchset([{ resourceType: 'Condition', id: 'c1', subject }], `${options.otherHost}/fhir/Condition?patient=p1&page=2`));
    if (path === 'Encounter') return send(res, 200, searchset([{ resourceType: 'Encounter', id: `e${page}`, subject }], `${server.base}/Encounter?patient=p1&page=${page + 1}`));
    if (path === 'AllergyIntolerance') return send(res, 500, outcome('exception', 'database unavailable'));
    return send(res, 404, outcome('not-found', `no route ${path}`));
  });
}
