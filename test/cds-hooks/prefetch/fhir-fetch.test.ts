import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchQuery, followPages, MAX_RESPONSE_BYTES, parseFhirBase, underBaseUrl, type FetchRecord, type FhirConnection } from '../../../src/cds-hooks/prefetch/fhir-fetch.ts';

/** Where the bearer token may go: only under the fhirServer's base URL, and only over TLS unless on loopback. */

interface Sent {
  readonly url: string;
  readonly authorization: string | null;
}

/** connectionTo is a connection whose fetch records each request and answers an empty searchset (or `next`'s page). */
function connectionTo(fhirServer: string, accessToken: string | undefined, next?: string): { connection: FhirConnection; sent: Sent[]; log: FetchRecord[] } {
  const base = parseFhirBase(fhirServer);
  if (!base) throw new Error(`bad base ${fhirServer}`);
  const sent: Sent[] = [];
  const log: FetchRecord[] = [];
  const fake: typeof fetch = async (input, init) => {
    sent.push({ url: String(input), authorization: new Headers(init?.headers).get('authorization') });
    const link = next && sent.length === 1 ? [{ relation: 'next', url: next }] : [];
    return new Response(JSON.stringify({ resourceType: 'Bundle', type: 'searchset', link, entry: [{ resource: { resourceType: 'Observation', id: `o${sent.length}` } }] }), { status: 200 });
  };
  return { connection: { base, accessToken, fetch: fake, signal: new AbortController().signal, maxPages: 10, now: () => 0, log }, sent, log };
}

describe('underBaseUrl', () => {
  const base = new URL('https://ehr.example.org/fhir/r4/');
  it.each([
    { name: 'an absolute link under the base', link: 'https://ehr.example.org/fhir/r4/Observation?patient=1&page=2', want: 'https://ehr.example.org/fhir/r4/Observation?patient=1&page=2' },
    { name: 'a relative link', link: 'Observation?patient=1&page=2', want: 'https://ehr.example.org/fhir/r4/Observation?patient=1&page=2' },
    { name: 'the base itself with paging parameters (HAPI _getpages)', link: 'https://ehr.example.org/fhir/r4?_getpages=abc&_getpagesoffset=20', want: 'https://ehr.example.org/fhir/r4?_getpages=abc&_getpagesoffset=20' },
    { name: 'another tenant on the same origin', link: 'https://ehr.example.org/other-tenant/Observation?page=2', want: undefined },
    { name: 'a sibling path sharing the prefix', link: 'https://ehr.example.org/fhir/r4-other/Observation', want: undefined },
    { name: 'a link that climbs out', link: 'https://ehr.example.org/fhir/r4/../r5/Observation', want: undefined },
    { name: 'a link that climbs out percent-encoded', link: '/fhir/r4/%2e%2e/r5/Observation', want: undefined },
    { name: 'an encoded slash a server may decode (..%2F climbs out)', link: '/fhir/r4/..%2Fr5/Observation', want: undefined },
    { name: 'an encoded backslash', link: '/fhir/r4/..%5cr5/Observation', want: undefined },
    { name: 'a root-relative link elsewhere', link: '/Observation?page=2', want: undefined },
    { name: 'another host', link: 'https://other.example.org/fhir/r4/Observation', want: undefined },
    { name: 'a downgrade to http', link: 'http://ehr.example.org/fhir/r4/Observation', want: undefined },
    { name: 'credentials', link: 'https://u:p@ehr.example.org/fhir/r4/Observation', want: undefined },
    { name: 'not a URL', link: 'http://[', want: undefined },
  ])('$name', ({ link, want }) => {
    expect(underBaseUrl(base, link)).toBe(want);
  });
});

describe('followPages', () => {
  it('does not follow a next link to another path on the fhirServer origin: the key is incomplete', async () => {
    const { connection, sent } = connectionTo('https://ehr.example.org/tenant-a/fhir', 'secret');
    const outcome = await followPages(connection, 'obs', [], 'https://ehr.example.org/tenant-b/fhir/Observation?page=2', 1);
    expect(sent).toEqual([]);
    expect(outcome).toEqual({ ok: true, resources: [], incomplete: { url: 'https://ehr.example.org/tenant-b/fhir/Observation?page=2', reason: 'next link is outside the fhirServer base URL' } });
  });

  it('follows a next link under the base with the token', async () => {
    const { connection, sent } = connectionTo('https://ehr.example.org/tenant-a/fhir', 'secret');
    const outcome = await followPages(connection, 'obs', [], 'https://ehr.example.org/tenant-a/fhir/Observation?page=2', 1);
    expect(outcome).toMatchObject({ ok: true, resources: [{ id: 'o1' }] });
    expect(sent).toEqual([{ url: 'https://ehr.example.org/tenant-a/fhir/Observation?page=2', authorization: 'Bearer secret' }]);
  });
});

describe('fetchQuery', () => {
  it.each(['Patient/.', 'Patient/..', 'Patient/%2E', 'Patient/%2e%2e', '../Patient/1', 'Patient/..?x=1', 'Patient\\..', 'https://other.example.org/fhir/Patient/1'])(
    'never sends %s, which URL resolution would turn into another request',
    async (query) => {
      const { connection, sent, log } = connectionTo('https://ehr.example.org/fhir', 'secret');
      const outcome = await fetchQuery(connection, 'patient', query);
      expect(sent).toEqual([]);
      expect(outcome).toMatchObject({ ok: false, timeout: false });
      expect(log).toMatchObject([{ key: 'patient', status: 0 }]);
    },
  );

  it('sends dots inside a search parameter as they are', async () => {
    const { connection, sent } = connectionTo('https://ehr.example.org/fhir', 'secret');
    await fetchQuery(connection, 'obs', 'Observation?patient=..');
    expect(sent.map((s) => s.url)).toEqual(['https://ehr.example.org/fhir/Observation?patient=..']);
  });

  it.each([
    { name: 'https', fhirServer: 'https://ehr.example.org/fhir', sent: true },
    { name: 'http on 127.0.0.1', fhirServer: 'http://127.0.0.1:8080/fhir', sent: true },
    { name: 'http on localhost', fhirServer: 'http://localhost:8080/fhir', sent: true },
    { name: 'http on ::1', fhirServer: 'http://[::1]:8080/fhir', sent: true },
    { name: 'http elsewhere', fhirServer: 'http://ehr.example.org/fhir', sent: false },
    { name: 'http on a host named like loopback', fhirServer: 'http://localhost.example.org/fhir', sent: false },
  ])('a bearer token over $name: sent $sent', async ({ fhirServer, sent: expected }) => {
    const { connection, sent, log } = connectionTo(fhirServer, 'secret');
    const outcome = await fetchQuery(connection, 'patient', 'Patient/p1');
    if (expected) {
      expect(outcome.ok).toBe(true);
      expect(sent.map((s) => s.authorization)).toEqual(['Bearer secret']);
    } else {
      expect(sent).toEqual([]);
      expect(outcome).toEqual({ ok: false, timeout: false, detail: 'fhirServer is not https: the bearer token is not sent over plain http' });
      expect(log).toMatchObject([{ key: 'patient', status: 0, error: 'fhirServer is not https: the bearer token is not sent over plain http' }]);
    }
  });

  it('reads a plain-http fhirServer when there is no token to leak', async () => {
    const { connection, sent } = connectionTo('http://ehr.example.org/fhir', undefined);
    const outcome = await fetchQuery(connection, 'patient', 'Patient/p1');
    expect(outcome.ok).toBe(true);
    expect(sent).toEqual([{ url: 'http://ehr.example.org/fhir/Patient/p1', authorization: null }]);
  });
});

describe('answers a FHIR server gives', () => {
  const CAP = 64 * 1024;
  let server: Server;
  let base = '';
  /** Bytes the endless answer wrote before the reader let go. */
  let endlessWritten = 0;
  let endlessClosed: Promise<void> = Promise.resolve();

  beforeAll(async () => {
    server = createServer((request, response) => {
      const path = (request.url ?? '').replace(/^\/fhir\//, '');
      if (path === 'Patient/declared') {
        response.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': String(CAP + 1) });
        response.end(`{"resourceType":"Patient","id":"declared","x":"${'a'.repeat(CAP + 1 - 44)}"}`);
      } else if (path === 'Patient/endless') {
        // Chunked, with no end: only the reader stopping ends it.
        response.writeHead(200, { 'content-type': 'application/fhir+json' });
        endlessClosed = new Promise((resolve) => response.on('close', () => resolve()));
        const chunk = Buffer.alloc(16 * 1024, 'a');
        const write = (): void => {
          while (!response.destroyed && response.write(chunk)) endlessWritten += chunk.length;
          if (!response.destroyed) response.once('drain', write);
        };
        response.write('{"resourceType":"Patient","id":"endless","x":"');
        write();
      } else if (path === 'Patient/secret') {
        response.writeHead(200, { 'content-type': 'text/plain' });
        response.end('ami-id SECRET-VALUE-123');
      } else if (path === 'Patient/bom') {
        response.writeHead(200, { 'content-type': 'application/fhir+json' });
        response.end(`\uFEFF${JSON.stringify({ resourceType: 'Patient', id: 'bom' })}`);
      } else {
        response.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
  });

  afterAll(async () => new Promise<void>((resolve) => server.close(() => resolve())));

  const connection = (): FhirConnection => ({ base: parseFhirBase(base)!, accessToken: 'secret', fetch, signal: new AbortController().signal, maxPages: 10, now: () => 0, log: [], maxResponseBytes: CAP });

  it('refuses unread an answer whose Content-Length is over the limit', async () => {
    expect(await fetchQuery(connection(), 'patient', 'Patient/declared')).toEqual({ ok: false, timeout: false, detail: `HTTP 200: response larger than ${CAP} bytes; not read` });
  });

  it('stops reading an answer that grows past the limit, and lets the server go', async () => {
    const outcome = await fetchQuery(connection(), 'patient', 'Patient/endless');
    expect(outcome).toEqual({ ok: false, timeout: false, detail: `HTTP 200: response larger than ${CAP} bytes; not read` });
    await endlessClosed;
    // Back-pressure: the server got no further than a few socket buffers beyond the limit.
    expect(endlessWritten).toBeLessThan(16 * 1024 * 1024);
  });

  it('never quotes an answer that is not JSON', async () => {
    const outcome = await fetchQuery(connection(), 'patient', 'Patient/secret');
    expect(outcome).toEqual({ ok: false, timeout: false, detail: 'HTTP 200: response is not JSON' });
    expect(JSON.stringify(outcome)).not.toContain('SECRET');
  });

  it('reads JSON after a byte order mark, as Response.text() does', async () => {
    expect(await fetchQuery(connection(), 'patient', 'Patient/bom')).toEqual({ ok: true, resources: [{ resourceType: 'Patient', id: 'bom' }] });
  });

  it('keeps the default limit at 16 MiB', () => {
    expect(MAX_RESPONSE_BYTES).toBe(16 * 1024 * 1024);
  });
});
