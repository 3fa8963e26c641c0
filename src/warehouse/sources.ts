/**
 * Reading ingest input: Bulk Data NDJSON (optionally gzipped) and Bundles, from files or folders.
 * Every line or entry ends up in exactly one sink call: a resource, a delete, or a quarantine
 * record with the reason, so bad input is never lost and never stops good input.
 */
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createGunzip } from 'node:zlib';
import { CairnError, type Problem } from '../domain/errors.ts';
import { FHIR_ID } from '../domain/fhir-id.ts';
import { normalizeDateTime } from './extract.ts';

/** IngestSink receives everything read; calls are synchronous so the reader stays simple. */
export interface IngestSink {
  /** text gets one candidate resource as JSON text (checked and parsed later, in DuckDB). */
  text(json: string, source: string, line: number | null, path: string | null): void;
  /** remove gets a deletion (Bulk Data `deleted` file or Bundle DELETE entry). */
  remove(resourceType: string, id: string, deletedAt: string | null, source: string): void;
  quarantine(record: QuarantineRecord): void;
  /** progress reports bytes of the current file consumed so far (compressed bytes for .gz). */
  progress(bytes: number): void;
}

/** QuarantineRecord says where bad input was and why it was refused. */
export interface QuarantineRecord {
  readonly source: string;
  readonly line: number | null;
  readonly path: string | null;
  readonly reason: string;
  readonly content: string | null;
}

/** InputFile is one file to read and how. */
export interface InputFile {
  readonly path: string;
  readonly format: 'ndjson' | 'json';
  readonly gzip: boolean;
  readonly bytes: number;
}

const NDJSON = /\.(ndjson|jsonl)(\.gz)?$/i;
const JSON_FILE = /\.json(\.gz)?$/i;
/** Content kept in quarantine is capped so one huge bad line cannot bloat the database. */
export const MAX_QUARANTINE_CONTENT = 64 * 1024;
/** BUNDLE_TYPES are the Bundle types expanded entry by entry; other Bundles are stored as resources. */
export const BUNDLE_TYPES: ReadonlySet<string> = new Set(['transaction', 'batch', 'collection', 'searchset', 'history', 'transaction-response', 'batch-response']);

function classify(path: string, bytes: number): InputFile | null {
  if (NDJSON.test(path)) return { path, format: 'ndjson', gzip: path.toLowerCase().endsWith('.gz'), bytes };
  if (JSON_FILE.test(path)) return { path, format: 'json', gzip: path.toLowerCase().endsWith('.gz'), bytes };
  return null;
}

/**
 * listInputs expands files and folders (recursively, sorted by path) into the files to read;
 * files with other extensions inside folders are skipped. Missing paths fail with every one listed.
 */
export async function listInputs(paths: readonly string[]): Promise<InputFile[]> {
  const files: InputFile[] = [];
  const problems: Problem[] = [];
  const walk = async (path: string, explicit: boolean): Promise<void> => {
    let info;
    try {
      info = await stat(path);
    } catch {
      problems.push({ code: 'INPUT_INVALID', file: path, message: 'no such file or folder' });
      return;
    }
    if (info.isDirectory()) {
      const names = (await readdir(path)).sort();
      for (const name of names) await walk(join(path, name), false);
      return;
    }
    const file = classify(path, info.size);
    if (file) files.push(file);
    else if (explicit) files.push({ path, format: 'ndjson', gzip: path.toLowerCase().endsWith('.gz'), bytes: info.size });
  };
  for (const path of paths) await walk(resolve(path), true);
  if (problems.length > 0) {
    throw new CairnError('INPUT_INVALID', `${problems.length} ingest path(s) do not exist.`, { problems });
  }
  return files;
}

function clip(text: string): string {
  return text.length > MAX_QUARANTINE_CONTENT ? text.slice(0, MAX_QUARANTINE_CONTENT) : text;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** readInput reads one file into `sink`; it never throws for bad content, only quarantines. */
export async function readInput(file: InputFile, sink: IngestSink): Promise<void> {
  if (file.format === 'ndjson') await readNdjson(file, sink);
  else await readJsonDocument(file, sink);
}

function openStream(file: InputFile): { stream: NodeJS.ReadableStream; raw: ReturnType<typeof createReadStream> } {
  const raw = createReadStream(file.path, { highWaterMark: 1 << 20 });
  if (!file.gzip) return { stream: raw, raw };
  const gunzip = createGunzip();
  raw.on('error', (error) => gunzip.destroy(error));
  return { stream: raw.pipe(gunzip), raw };
}

async function readNdjson(file: InputFile, sink: IngestSink): Promise<void> {
  const { stream, raw } = openStream(file);
  const handler = new LineHandler(file.path, sink);
  let pending: Buffer | null = null;
  let lineNo = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const buffer: Buffer = pending ? Buffer.concat([pending, chunk]) : chunk;
      let start = 0;
      let nl = buffer.indexOf(10, start);
      while (nl >= 0) {
        lineNo++;
        const end = nl > start && buffer[nl - 1] === 13 ? nl - 1 : nl;
        if (end > start) handler.line(buffer.toString('utf8', start, end), lineNo);
        start = nl + 1;
        nl = buffer.indexOf(10, start);
      }
      pending = start < buffer.length ? buffer.subarray(start) : null;
      sink.progress(raw.bytesRead);
    }
  } catch (error) {
    // A truncated gzip or a read error: keep what was read, quarantine the rest with the reason.
    const reason = `file is truncated or unreadable after line ${lineNo}: ${(error as Error).message}`;
    const content = pending ? clip(pending.toString('utf8')) : null;
    sink.quarantine({ source: file.path, line: lineNo + 1, path: null, reason, content });
    sink.progress(file.bytes);
    return;
  }
  if (pending && pending.length > 0) {
    lineNo++;
    handler.line(pending.toString('utf8').replace(/\r$/, ''), lineNo);
  }
  sink.progress(file.bytes);
}

async function readJsonDocument(file: InputFile, sink: IngestSink): Promise<void> {
  const { stream } = openStream(file);
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  } catch (error) {
    sink.quarantine({ source: file.path, line: null, path: null, reason: `file is truncated or unreadable: ${(error as Error).message}`, content: clip(Buffer.concat(chunks).toString('utf8')) });
    sink.progress(file.bytes);
    return;
  }
  const text = Buffer.concat(chunks).toString('utf8');
  new LineHandler(file.path, sink).line(text, null);
  sink.progress(file.bytes);
}

/** readLine handles one NDJSON line read elsewhere (a Bundle DuckDB found) exactly as readInput would. */
export function readLine(text: string, source: string, lineNo: number | null, sink: IngestSink): void {
  new LineHandler(source, sink).line(text, lineNo);
}

/** LineHandler turns one JSON text (an NDJSON line or a whole document) into sink calls. */
class LineHandler {
  constructor(
    private readonly source: string,
    private readonly sink: IngestSink,
  ) {}

  line(text: string, lineNo: number | null): void {
    // Only text that may be a Bundle is parsed here; everything else is checked in bulk by DuckDB.
    if (!text.includes('"Bundle"')) {
      if (text.trim() !== '') this.sink.text(text, this.source, lineNo, null);
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.sink.text(text, this.source, lineNo, null);
      return;
    }
    if (isObject(value) && value.resourceType === 'Bundle' && typeof value.type === 'string' && BUNDLE_TYPES.has(value.type)) {
      this.bundle(value, lineNo, text);
      return;
    }
    this.sink.text(text, this.source, lineNo, null);
  }

  private bundle(bundle: Record<string, unknown>, lineNo: number | null, text: string): void {
    const entries = Array.isArray(bundle.entry) ? (bundle.entry as unknown[]) : [];
    if (entries.length === 0 && !Array.isArray(bundle.entry) && bundle.entry !== undefined) {
      this.sink.quarantine({ source: this.source, line: lineNo, path: '$.entry', reason: 'Bundle.entry is not an array', content: clip(text) });
      return;
    }
    const meta = isObject(bundle.meta) ? bundle.meta : {};
    const bundleTime = typeof meta.lastUpdated === 'string' ? meta.lastUpdated : typeof bundle.timestamp === 'string' ? bundle.timestamp : null;
    const references = new Map<string, string>();
    const resources: { resource: Record<string, unknown>; path: string }[] = [];
    entries.forEach((entry, index) => {
      const path = `$.entry[${index}]`;
      const refuse = (reason: string): void => this.sink.quarantine({ source: this.source, line: lineNo, path, reason, content: clip(JSON.stringify(entry) ?? '') });
      if (!isObject(entry)) return refuse('Bundle entry is not an object');
      const request = isObject(entry.request) ? entry.request : {};
      if (request.method === 'DELETE') {
        const target = parseTypeAndId(request.url);
        if (!target) return refuse('DELETE entry needs request.url of the form Type/id (conditional deletes are not supported)');
        const response = isObject(entry.response) ? entry.response : {};
        const at = typeof response.lastModified === 'string' ? response.lastModified : bundleTime;
        this.sink.remove(target.type, target.id, at === null ? null : normalizeDateTime(at), this.source);
        return;
      }
      const resource = entry.resource;
      if (!isObject(resource)) return refuse('Bundle entry has no resource');
      if (resource.id === undefined || resource.id === null || resource.id === '') {
        // The id a server would assign: the entry's urn:uuid (or PUT url), so re-ingesting is stable.
        const id = idFromUrl(entry.fullUrl) ?? parseTypeAndId(request.url)?.id;
        if (id) resource.id = id;
      }
      if (typeof entry.fullUrl === 'string' && typeof resource.resourceType === 'string' && typeof resource.id === 'string') {
        references.set(entry.fullUrl, `${resource.resourceType}/${resource.id}`);
      }
      resources.push({ resource, path });
    });
    for (const { resource, path } of resources) {
      if (references.size > 0) rewriteReferences(resource, references);
      this.sink.text(JSON.stringify(resource), this.source, lineNo, path);
    }
  }
}

function parseTypeAndId(url: unknown): { type: string; id: string } | null {
  if (typeof url !== 'string') return null;
  const clean = url.split('?')[0]!.replace(/\/_history\/[^/]*$/, '');
  const parts = clean.split('/').filter((part) => part !== '');
  const id = parts.at(-1);
  const type = parts.at(-2);
  if (!id || !type || !/^[A-Z][A-Za-z]+$/.test(type) || !FHIR_ID.test(id) || url.includes('?')) return null;
  return { type, id };
}

function idFromUrl(fullUrl: unknown): string | null {
  if (typeof fullUrl !== 'string') return null;
  if (fullUrl.startsWith('urn:uuid:')) {
    const id = fullUrl.slice('urn:uuid:'.length);
    return FHIR_ID.test(id) ? id : null;
  }
  return parseTypeAndId(fullUrl)?.id ?? null;
}

/** rewriteReferences replaces, in place, every `reference` that names a Bundle entry's fullUrl. */
function rewriteReferences(value: unknown, references: ReadonlyMap<string, string>): void {
  if (Array.isArray(value)) {
    for (const item of value) if (typeof item === 'object' && item !== null) rewriteReferences(item, references);
    return;
  }
  if (!isObject(value)) return;
  for (const key of Object.keys(value)) {
    const child = value[key];
    if (key === 'reference' && typeof child === 'string') {
      const target = references.get(child);
      if (target) value[key] = target;
    } else if (typeof child === 'object' && child !== null) {
      rewriteReferences(child, references);
    }
  }
}
