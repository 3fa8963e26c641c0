/**
 * A FHIR Bulk Data client ({@link https://hl7.org/fhir/uv/bulkdata/export.html}): kick off a system
 * or group `$export` with `Prefer: respond-async`, poll the status URL honouring Retry-After,
 * download every output and deleted file, and turn the error files into quarantine records.
 * Ingesting the files is the caller's job (one transaction for the whole export).
 */
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { CairnError } from '../domain/errors.ts';
import type { InputFile, QuarantineRecord } from './sources.ts';

/** BulkExportOptions; `sleep` and `fetch` are injectable so tests need not wait for real. */
export interface BulkExportOptions {
  /** url is a FHIR base (`.../fhir`), a group (`.../Group/1`) or a full `$export` URL. */
  readonly url: string;
  readonly token?: string;
  readonly types?: readonly string[];
  readonly since?: string;
  readonly downloadDir: string;
  /** maxRetries bounds 429/503 retries of one request (default 10). */
  readonly maxRetries?: number;
  /** maxWaitMs bounds the whole export (default 6 hours). */
  readonly maxWaitMs?: number;
  /** maxDelayMs caps any single wait, whatever Retry-After says (default 5 minutes). */
  readonly maxDelayMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly fetch?: typeof fetch;
  readonly log?: (event: string, detail: Record<string, unknown>) => void;
}

/** BulkManifest is the completed-export manifest (spec field names). */
export interface BulkManifest {
  readonly transactionTime: string;
  readonly request: string;
  readonly requiresAccessToken: boolean;
  readonly output: readonly { type: string; url: string; count?: number }[];
  readonly deleted?: readonly { type: string; url: string; count?: number }[];
  readonly error: readonly { type: string; url: string }[];
}

/** BulkExportResult holds the downloaded files, ready for ingestFiles, and the export's errors. */
export interface BulkExportResult {
  readonly manifest: BulkManifest;
  readonly files: readonly InputFile[];
  readonly errors: readonly QuarantineRecord[];
}

function exportUrl(options: BulkExportOptions): string {
  const base = options.url.replace(/\/+$/, '');
  const url = new URL(base.endsWith('$export') ? base : `${base}/$export`);
  if (options.types && options.types.length > 0) url.searchParams.set('_type', options.types.join(','));
  if (options.since) url.searchParams.set('_since', options.since);
  return url.toString();
}

/** retryAfterMs reads Retry-After as seconds or an HTTP date; null when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | null {
  if (header === null || header.trim() === '') return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

async function outcomeText(response: Response): Promise<string> {
  const text = await response.text().catch(() => '');
  try {
    const outcome = JSON.parse(text) as { issue?: { diagnostics?: string; details?: { text?: string } }[] };
    const messages = (outcome.issue ?? []).map((issue) => issue.diagnostics ?? issue.details?.text).filter(Boolean);
    if (messages.length > 0) return messages.join('; ');
  } catch {
    // Not an OperationOutcome: fall back to the raw body.
  }
  return text.slice(0, 500);
}

/** runBulkExport performs one export and downloads its files into `downloadDir`. */
export async function runBulkExport(options: BulkExportOptions): Promise<BulkExportResult> {
  const doFetch = options.fetch ?? fetch;
  const sleep = options.sleep ?? ((ms: number) => delay(ms).then(() => undefined));
  const log = options.log ?? (() => undefined);
  const maxRetries = options.maxRetries ?? 10;
  const maxDelay = options.maxDelayMs ?? 300_000;
  const deadline = Date.now() + (options.maxWaitMs ?? 6 * 3_600_000);
  const auth = (send: boolean): Record<string, string> => (send && options.token ? { Authorization: `Bearer ${options.token}` } : {});
  const fail = (message: string, context: Record<string, unknown>) => new CairnError('INPUT_INVALID', message, { context });

  const waitFor = async (ms: number, why: string, url: string): Promise<void> => {
    const wait = Math.min(ms, maxDelay);
    if (Date.now() + wait > deadline) throw fail(`The Bulk Data export did not finish in time (waiting on ${url}).`, { url });
    log(why, { url, waitMs: wait });
    await sleep(wait);
  };

  // One request with 429/503 handling: wait Retry-After (or back off) and try again.
  const request = async (url: string, init: RequestInit): Promise<Response> => {
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await doFetch(url, init);
      } catch (error) {
        throw fail(`Could not reach the Bulk Data server at ${url}: ${(error as Error).message}`, { url });
      }
      if ((response.status === 429 || response.status === 503) && attempt < maxRetries) {
        await response.body?.cancel();
        await waitFor(retryAfterMs(response.headers.get('retry-after')) ?? 1000 * 2 ** attempt, `http-${response.status}-retry`, url);
        continue;
      }
      return response;
    }
  };

  const kickoffUrl = exportUrl(options);
  const kickoff = await request(kickoffUrl, { headers: { Accept: 'application/fhir+json', Prefer: 'respond-async', ...auth(true) } });
  if (kickoff.status !== 202) {
    throw fail(`The Bulk Data kick-off ${kickoffUrl} failed with HTTP ${kickoff.status}: ${await outcomeText(kickoff)}`, { url: kickoffUrl, status: kickoff.status });
  }
  const location = kickoff.headers.get('content-location');
  await kickoff.body?.cancel();
  if (!location) throw fail(`The Bulk Data kick-off ${kickoffUrl} answered 202 without a Content-Location status URL.`, { url: kickoffUrl });
  const statusUrl = new URL(location, kickoffUrl).toString();
  log('export-started', { statusUrl });

  let manifest: BulkManifest;
  for (let polls = 0; ; polls++) {
    const response = await request(statusUrl, { headers: { Accept: 'application/json', ...auth(true) } });
    if (response.status === 202) {
      const progress = response.headers.get('x-progress');
      await response.body?.cancel();
      await waitFor(retryAfterMs(response.headers.get('retry-after')) ?? Math.min(1000 * 2 ** polls, 60_000), 'export-in-progress', progress ?? statusUrl);
      continue;
    }
    if (response.status !== 200) {
      throw fail(`The Bulk Data export failed (status ${statusUrl}, HTTP ${response.status}): ${await outcomeText(response)}`, { url: statusUrl, status: response.status });
    }
    manifest = (await response.json()) as BulkManifest;
    break;
  }
  if (!Array.isArray(manifest.output)) throw fail(`The Bulk Data manifest from ${statusUrl} has no output array.`, { url: statusUrl });
  log('export-complete', { transactionTime: manifest.transactionTime, files: manifest.output.length });

  await mkdir(options.downloadDir, { recursive: true });
  const files: InputFile[] = [];
  const download = async (item: { type: string; url: string }, name: string): Promise<string> => {
    const url = new URL(item.url, statusUrl).toString();
    const response = await request(url, { headers: { Accept: 'application/fhir+ndjson', ...auth(manifest.requiresAccessToken) } });
    if (response.status !== 200 || !response.body) {
      throw fail(`Downloading the Bulk Data file ${url} failed with HTTP ${response.status}: ${await outcomeText(response)}`, { url, status: response.status });
    }
    const path = join(options.downloadDir, name);
    await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), createWriteStream(path));
    log('file-downloaded', { url, path });
    return path;
  };
  const all = [...manifest.output.map((o) => ({ ...o, kind: 'output' })), ...(manifest.deleted ?? []).map((o) => ({ ...o, kind: 'deleted' }))];
  for (const [index, item] of all.entries()) {
    const path = await download(item, `${String(index).padStart(4, '0')}-${item.kind}-${item.type.replace(/[^A-Za-z]/g, '')}.ndjson`);
    files.push({ path, format: 'ndjson', gzip: false, bytes: (await stat(path)).size });
  }
  const errors: QuarantineRecord[] = [];
  for (const [index, item] of (manifest.error ?? []).entries()) {
    const path = await download(item, `${String(index).padStart(4, '0')}-error.ndjson`);
    const lines = (await readFile(path, 'utf8')).split('\n');
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      let reason = 'the server reported an export error';
      try {
        const outcome = JSON.parse(line) as { issue?: { severity?: string; diagnostics?: string; details?: { text?: string } }[] };
        const text = (outcome.issue ?? []).map((issue) => `${issue.severity ?? 'error'}: ${issue.diagnostics ?? issue.details?.text ?? ''}`).join('; ');
        if (text) reason = `export error: ${text}`;
      } catch {
        // Keep the generic reason; the raw line is kept as content.
      }
      errors.push({ source: item.url, line: i + 1, path: null, reason, content: line });
    });
  }
  // The spec lets a client delete the export once done; failure here is harmless.
  await doFetch(statusUrl, { method: 'DELETE', headers: auth(true) }).then((r) => r.body?.cancel()).catch(() => undefined);
  return { manifest, files, errors };
}
