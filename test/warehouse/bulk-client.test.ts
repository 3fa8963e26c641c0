import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { retryAfterMs, runBulkExport } from '../../src/warehouse/bulk-client.ts';
import { ingestFiles } from '../../src/warehouse/ingest.ts';
import { countByResourceType } from '../../src/warehouse/read.ts';
import { NOW, rows, tempDir, tempWarehouse } from './helpers.ts';

const TOKEN = 'test-token-123';
const PATIENTS = ['{"resourceType":"Patient","id":"b1","gender":"female"}', '{"resourceType":"Patient","id":"b2","gender":"male"}'].join('\n');
const OBSERVATIONS = '{"resourceType":"Observation","id":"bo1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"subject":{"reference":"Patient/b1"}}\n';
const DELETED = '{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/gone"}}]}\n';
const ERRORS = '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"Observation/xyz could not be read"}]}\n';

/** A tiny Bulk Data server: 429 on the first kick-off, 202 twice, a 503, then the manifest. */
function bulkServer(): { server: Server; log: string[]; auth: (string | undefined)[] } {
  const log: string[] = [];
  const auth: (string | undefined)[] = [];
  let kickoffs = 0;
  let polls = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    log.push(`${req.method} ${url.pathname}${url.search}`);
    auth.push(req.headers.authorization);
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (url.pathname === '/fhir/Group/g1/$export') {
      if (req.headers.prefer !== 'respond-async') return void res.writeHead(400).end();
      if (kickoffs++ === 0) return void res.writeHead(429, { 'Retry-After': '3' }).end();
      return void res.writeHead(202, { 'Content-Location': `${base}/status/1` }).end();
    }
    if (url.pathname === '/status/1' && req.method === 'GET') {
      polls++;
      if (polls <= 2) return void res.writeHead(202, { 'Retry-After': '2', 'X-Progress': `${polls * 40}%` }).end();
      if (polls === 3) return void res.writeHead(503, { 'Retry-After': '5' }).end();
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return void res.end(JSON.stringify({
        transactionTime: '2025-05-31T00:00:00Z', request: `${base}/fhir/Group/g1/$export`, requiresAccessToken: true,
        output: [{ type: 'Patient', url: `${base}/files/patients` }, { type: 'Observation', url: `${base}/files/observations` }],
        deleted: [{ type: 'Bundle', url: `${base}/files/deleted` }],
        error: [{ type: 'OperationOutcome', url: `${base}/files/errors` }],
      }));
    }
    if (url.pathname === '/status/1' && req.method === 'DELETE') return void res.writeHead(202).end();
    if (url.pathname.startsWith('/files/')) {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
      const body = { patients: PATIENTS, observations: OBSERVATIONS, deleted: DELETED, errors: ERRORS }[url.pathname.slice(7)];
      if (body === undefined) return void res.writeHead(404).end();
      return void res.writeHead(200, { 'Content-Type': 'application/fhir+ndjson' }).end(body);
    }
    res.writeHead(404).end();
  });
  return { server, log, auth };
}

let running: Server | null = null;
afterEach(async () => {
  if (running) await new Promise((r) => running!.close(r));
  running = null;
});

describe('Bulk Data client', () => {
  it('kicks off, honours Retry-After on 202/429/503, downloads with the token and ingests', async () => {
    const { server, log, auth } = bulkServer();
    running = server;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const waits: number[] = [];
    const result = await runBulkExport({
      url: `http://127.0.0.1:${port}/fhir/Group/g1`, token: TOKEN, types: ['Patient', 'Observation'],
      downloadDir: await tempDir(), sleep: async (ms) => void waits.push(ms),
    });
    expect(waits).toEqual([3000, 2000, 2000, 5000]);
    expect(log[0]).toBe('GET /fhir/Group/g1/$export?_type=Patient%2CObservation');
    expect(auth.every((a) => a === `Bearer ${TOKEN}`)).toBe(true);
    expect(log.at(-1)).toBe('DELETE /status/1');
    expect(result.files).toHaveLength(3);
    expect(result.errors).toEqual([expect.objectContaining({ reason: 'export error: error: Observation/xyz could not be read', line: 1 })]);

    const warehouse = await tempWarehouse();
    const counts = await ingestFiles(warehouse, result.files, { now: NOW, quarantine: result.errors });
    expect(counts).toMatchObject({ loaded: 3, quarantined: 1, deleted: 0 });
    expect(await countByResourceType(warehouse)).toEqual({ Observation: 1, Patient: 2 });
    expect((await rows(warehouse, 'SELECT count(*)::INT AS n FROM tombstone'))[0]!.n).toBe(1);
  });

  it('reports a failed kick-off with the OperationOutcome text', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(400, { 'Content-Type': 'application/fhir+json' });
      res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics: 'unknown _type Foo' }] }));
    });
    running = server;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    await expect(runBulkExport({ url: `http://127.0.0.1:${port}/fhir`, downloadDir: await tempDir(), sleep: async () => undefined }))
      .rejects.toThrow(/HTTP 400: unknown _type Foo/);
  });

  it.each([
    { name: 'seconds', input: '120', want: 120_000 },
    { name: 'HTTP date', input: 'Wed, 21 Oct 2015 07:28:10 GMT', want: 10_000 },
    { name: 'absent', input: null, want: null },
    { name: 'garbage', input: 'soon', want: null },
  ])('reads Retry-After as $name', ({ input, want }) => {
    expect(retryAfterMs(input, Date.parse('Wed, 21 Oct 2015 07:28:00 GMT'))).toBe(want);
  });
});
