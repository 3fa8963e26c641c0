/**
 * Reading from the CDS Client's FHIR server ({@link https://cds-hooks.hl7.org/2.0/#fhir-resource-access})
 * with the request's bearer token: one read or search, following searchset `next` links up to a page
 * limit and only under the fhirServer's base URL (a token is never sent anywhere else, nor over plain
 * http except to a loopback host).
 */
import type { FhirResource } from '../../cql-engine/fhir-model.ts';
import { readCapped } from '../../http/read-capped.ts';
import { classifyFhirJson } from './read.ts';

/** One HTTP request made while assembling patient data. */
export interface FetchRecord {
  readonly key: string;
  readonly url: string;
  /** HTTP status, or 0 when no response arrived (timeout, network error, refused link). */
  readonly status: number;
  readonly ms: number;
  readonly error?: string;
}

/** How a FHIR server is reached: its base URL, token and fetch, shared by every request of one call. */
export interface FhirConnection {
  readonly base: URL;
  readonly accessToken: string | undefined;
  readonly fetch: typeof fetch;
  readonly signal: AbortSignal;
  readonly maxPages: number;
  readonly now: () => number;
  readonly log: FetchRecord[];
  /** The most one answer may hold (default {@link MAX_RESPONSE_BYTES}). */
  readonly maxResponseBytes?: number;
}

/**
 * The most one answer (a read or a searchset page) may hold: 16 MiB, hundreds of times a patient's
 * page of results. A larger one is refused unread, as a server (or a URL that is not a FHIR server)
 * could otherwise take the process's memory and the call's time budget with it.
 */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/** The outcome of one read or search with its pages. */
export type FetchOutcome =
  | { readonly ok: true; readonly resources: readonly FhirResource[]; readonly incomplete?: { readonly url: string; readonly reason: string } }
  | { readonly ok: false; readonly timeout: boolean; readonly detail: string };

/**
 * parseFhirBase checks a request's `fhirServer`: an absolute http(s) URL without credentials.
 * The returned URL's path ends with `/` so relative queries resolve under it. Plain http is
 * accepted here; getJson refuses to send a bearer token over it.
 */
export function parseFhirBase(fhirServer: unknown): URL | undefined {
  if (typeof fhirServer !== 'string') return undefined;
  let url: URL;
  try {
    url = new URL(fhirServer.trim());
  } catch {
    return undefined;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password) return undefined;
  url.search = '';
  url.hash = '';
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

/** A `.` or `..` path segment, plain or percent-encoded: URL resolution drops it (`Patient/.` reads `Patient/`, every patient). */
const DOT_SEGMENT = /(?:^|[/\\])(?:\.|%2e){1,2}(?:[/\\]|$)/i;

/**
 * fetchQuery reads a relative query (`Patient/1`, `Observation?patient=1`) under the connection's base,
 * with its pages. A query whose path has a dot segment or leaves the base is never sent.
 */
export async function fetchQuery(connection: FhirConnection, key: string, query: string): Promise<FetchOutcome> {
  const relative = query.replace(/^\/+/, '');
  const url = DOT_SEGMENT.test(relative.split(/[?#]/, 1)[0] ?? '') ? undefined : underBaseUrl(connection.base, relative);
  if (!url) {
    const detail = 'query path has a dot segment or leaves the fhirServer base URL; not sent';
    connection.log.push({ key, url: relative, status: 0, ms: 0, error: detail });
    return { ok: false, timeout: false, detail };
  }
  const first = await getJson(connection, key, url);
  if (!first.ok) return first;
  const value = classifyFhirJson(first.body);
  if (value.kind === 'outcome') return { ok: false, timeout: false, detail: value.detail };
  if (value.kind === 'invalid') return { ok: false, timeout: false, detail: `response is ${value.detail}` };
  if (value.kind === 'empty') return { ok: true, resources: [] };
  if (!value.next) return { ok: true, resources: value.resources };
  return followPages(connection, key, value.resources, value.next, 1);
}

/**
 * followPages follows `next` links from `next`, adding each page's resources to `resources`;
 * `pagesSoFar` counts pages already read for this key. A page that fails, a link outside the
 * fhirServer's base URL or the page limit leaves the result `incomplete`.
 */
export async function followPages(connection: FhirConnection, key: string, resources: readonly FhirResource[], next: string, pagesSoFar: number): Promise<FetchOutcome> {
  const found = [...resources];
  let link: string | undefined = next;
  let pages = pagesSoFar;
  while (link) {
    const url = underBaseUrl(connection.base, link);
    if (!url) {
      connection.log.push({ key, url: link, status: 0, ms: 0, error: 'next link is outside the fhirServer base URL; not followed' });
      return { ok: true, resources: found, incomplete: { url: link, reason: 'next link is outside the fhirServer base URL' } };
    }
    if (pages >= connection.maxPages) return { ok: true, resources: found, incomplete: { url, reason: `page limit ${connection.maxPages} reached` } };
    const page = await getJson(connection, key, url);
    pages += 1;
    if (!page.ok) return { ok: true, resources: found, incomplete: { url, reason: page.detail } };
    const value = classifyFhirJson(page.body);
    if (value.kind !== 'resources') {
      return { ok: true, resources: found, incomplete: { url, reason: value.kind === 'empty' ? 'empty page' : value.detail } };
    }
    found.push(...value.resources);
    link = value.next;
  }
  return { ok: true, resources: found };
}

/**
 * underBaseUrl resolves `link` against `base` (a parseFhirBase result) and returns it only when it
 * stays under the base's path on its origin: another path on a shared host may be another tenant.
 * The base itself without its final `/` counts (HAPI pages with `{base}?_getpages=`).
 */
export function underBaseUrl(base: URL, link: string): string | undefined {
  try {
    const url = new URL(link, base);
    const underBase = url.pathname.startsWith(base.pathname) || url.pathname === base.pathname.slice(0, -1);
    // An encoded slash or backslash is one segment to the URL parser but may be a separator to the server (`..%2F` climbs out).
    const encodedSeparator = /%2f|%5c/i.test(url.pathname);
    return url.origin === base.origin && underBase && !encodedSeparator && !url.username && !url.password ? url.href : undefined;
  } catch {
    return undefined;
  }
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * A bearer token goes only over TLS (RFC 6750 §5.3), or to a loopback host (tests, local trials).
 * CDS Hooks 2.0 makes https only a SHOULD for fhirServer, and a call its prefetch covers needs no
 * server, so an http fhirServer is not a 400: the data it would give is missing (412 if required).
 */
function mayCarryToken(url: URL): boolean {
  return url.protocol === 'https:' || LOOPBACK_HOSTS.has(url.hostname);
}

type JsonResult = { readonly ok: true; readonly body: unknown } | { readonly ok: false; readonly timeout: boolean; readonly detail: string };

async function getJson(connection: FhirConnection, key: string, url: string): Promise<JsonResult> {
  const started = connection.now();
  const headers: Record<string, string> = { Accept: 'application/fhir+json' };
  if (connection.accessToken) headers.Authorization = `Bearer ${connection.accessToken}`;
  const record = (status: number, error?: string): void => {
    connection.log.push({ key, url, status, ms: Math.round(connection.now() - started), ...(error ? { error } : {}) });
  };
  if (connection.accessToken && !mayCarryToken(new URL(url))) {
    const detail = 'fhirServer is not https: the bearer token is not sent over plain http';
    record(0, detail);
    return { ok: false, timeout: false, detail };
  }
  if (connection.signal.aborted) {
    record(0, 'time budget spent before the request');
    return { ok: false, timeout: true, detail: 'time budget spent' };
  }
  let response: Response;
  try {
    response = await connection.fetch(url, { headers, signal: connection.signal, redirect: 'error' });
  } catch (error) {
    const timeout = connection.signal.aborted;
    const detail = timeout ? 'time budget spent' : `request failed: ${messageOf(error)}`;
    record(0, detail);
    return { ok: false, timeout, detail };
  }
  let body: unknown;
  try {
    const maxBytes = connection.maxResponseBytes ?? MAX_RESPONSE_BYTES;
    const text = await readCapped(response, maxBytes);
    if (text === undefined) {
      const detail = `HTTP ${response.status}: response larger than ${maxBytes} bytes; not read`;
      record(response.status, detail);
      return { ok: false, timeout: false, detail };
    }
    body = JSON.parse(text);
  } catch (error) {
    const timeout = connection.signal.aborted;
    // The body itself is never quoted: what a server that is not a FHIR server says is not the caller's to read.
    const detail = timeout ? 'time budget spent' : error instanceof SyntaxError ? `HTTP ${response.status}: response is not JSON` : `HTTP ${response.status}: response could not be read (${messageOf(error)})`;
    record(response.status, detail);
    return { ok: false, timeout, detail };
  }
  if (!response.ok) {
    const value = classifyFhirJson(body);
    const detail = `HTTP ${response.status}${value.kind === 'outcome' ? ` ${value.detail}` : ''}`;
    record(response.status, detail);
    return { ok: false, timeout: false, detail };
  }
  record(response.status);
  return { ok: true, body };
}

function messageOf(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    return `${error.message}${cause}`;
  }
  return String(error);
}
