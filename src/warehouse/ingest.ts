/**
 * Ingest: decide on keys, then store only what changed, in one transaction.
 *
 * 1. Keys (before the transaction, into connection-local temp tables): DuckDB reads each Bulk NDJSON
 *    file itself (`read_csv` with one column per line) and keeps, per line, only what deciding needs:
 *    type, id, version keys, a 64-bit hash of the text and why the line is refused, if it is. Not the
 *    text: staging every resource's JSON doubled the bytes written and made memory grow with the
 *    input. Files are read on all threads without line numbers, and again in order only when line
 *    numbers matter (see stageNdjson). Lines that are Bundles, and files DuckDB refuses (invalid
 *    UTF-8, truncated gzip, over-long lines), go through JavaScript (sources.ts); their texts are
 *    kept in `staging_raw`.
 * 2. Decide (in the transaction): the newest copy per (type, id) against the stored one and the
 *    tombstones, on keys alone; a tie is "unchanged" when the text hashes equal the stored resource's.
 * 3. Store (same transaction): delete the replaced rows, then read each file again and insert only the
 *    lines to store, found by their hash; extraction of the query columns happens only for them.
 *    Re-ingesting unchanged data never gets here.
 *
 * Everything the reading statements produce is in temp tables, so a crash or kill at any point before
 * COMMIT leaves the previous consistent copy (DuckDB's WAL). While ingesting, DuckDB's memory_limit is
 * capped (INGEST_MEMORY_LIMIT) so large inputs spill to its temp directory beside the database file
 * instead of growing the process, and two more global settings change (INGEST_SETTINGS); all are set
 * back afterwards.
 *
 * Versions: for each (resource type, id) the newest of (meta.lastUpdated, numeric versionId,
 * versionId text) wins, missing parts counting as oldest; on a tie the resource replaces the stored
 * one only when its JSON differs (the last one read wins). A deletion leaves a tombstone so an
 * older copy read later is not resurrected; a copy with a newer meta.lastUpdated is.
 */
import { createReadStream } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { DuckDBAppender, DuckDBConnection } from '@duckdb/node-api';
import { CairnError } from '../domain/errors.ts';
import { capMemory, closeAppenders, type Warehouse } from './database.ts';
import { keySelect, MACROS, resourceSelect } from './extract.ts';
import { columnNames, GENERIC_TABLE, RESOURCE_TABLES, TYPED_TABLES } from './schema.ts';
import { BUNDLE_TYPES, listInputs, MAX_QUARANTINE_CONTENT, readInput, readLine, type InputFile, type IngestSink, type QuarantineRecord } from './sources.ts';

/** IngestOptions: time is an input, so a run is reproducible. */
export interface IngestOptions {
  /** now stamps the run and dates deletions whose input carries no time. */
  readonly now: Date;
  /**
   * onProgress gets bytes consumed across all files and the total. Files are read twice (keys, then
   * the resources to store) and each pass counts for half of the total.
   */
  readonly onProgress?: (done: number, total: number, file: string) => void;
  /** onFile is told when a file starts, for logs. */
  readonly onFile?: (file: InputFile) => void;
  /** onPhase is told how long each phase took (`keys`, `decide`, `store`, `commit`), for benchmarks. */
  readonly onPhase?: (phase: IngestPhase, milliseconds: number) => void;
  /** quarantine adds records found outside the files (e.g. a Bulk Data error file). */
  readonly quarantine?: readonly QuarantineRecord[];
  /** memoryLimit caps DuckDB's memory_limit while ingesting (default INGEST_MEMORY_LIMIT). */
  readonly memoryLimit?: string;
  /** sources overrides what the run log records as its sources (e.g. an export URL). */
  readonly sources?: readonly string[];
}

/** IngestPhase names the steps of an ingest, in order. */
export type IngestPhase = 'keys' | 'decide' | 'store' | 'commit';

/** IngestCounts is what one ingest did. */
export interface IngestCounts {
  readonly runId: number;
  readonly files: number;
  readonly bytes: number;
  /** read counts resources and deletions that were readable. */
  readonly read: number;
  /** loaded counts resources new to the warehouse. */
  readonly loaded: number;
  readonly replaced: number;
  /** unchanged counts resources identical to the stored version (plus duplicates within the input). */
  readonly unchanged: number;
  /** skipped counts resources older than the stored version or than their deletion. */
  readonly skipped: number;
  readonly deleted: number;
  readonly quarantined: number;
}

/**
 * INGEST_MEMORY_LIMIT caps DuckDB's memory while ingesting (when its limit is higher), so peak memory
 * does not grow with the input: sorts, joins and temp tables spill to `<database>.tmp` instead.
 */
export const INGEST_MEMORY_LIMIT = '1GiB';

function appendText(appender: DuckDBAppender, value: string | null): void {
  if (value === null) appender.appendNull();
  else appender.appendVarchar(value);
}

/** Progress reports both passes over the files as one byte count (each pass is half of it). */
class Progress {
  constructor(
    private readonly total: number,
    private readonly report: IngestOptions['onProgress'],
  ) {}

  /** at reports `bytes` consumed of the file starting at `offset` (bytes before it) in `pass` (0: keys, 1: store). */
  at(pass: 0 | 1, offset: number, bytes: number, file: string): void {
    this.report?.(Math.round((pass * this.total + offset + bytes) / 2), this.total, file);
  }
}

/** StagingSink appends what the JavaScript reader produces to the temporary staging tables. */
class StagingSink implements IngestSink {
  removals = 0;
  quarantined = 0;
  /** seq numbers what JavaScript staged in the order read (DuckDB's lines are ordered by line number). */
  seq = 0;
  fileNo = 0;
  private fileOffset = 0;
  private file = '';

  constructor(
    private readonly texts: DuckDBAppender,
    private readonly deletions: DuckDBAppender,
    private readonly bad: DuckDBAppender,
    private readonly progressOf: Progress,
  ) {}

  startFile(fileNo: number, file: InputFile, offset: number): void {
    this.fileNo = fileNo;
    this.file = file.path;
    this.fileOffset = offset;
  }

  text(json: string, _source: string, line: number | null, path: string | null): void {
    const a = this.texts;
    a.appendBigInt(BigInt(++this.seq));
    a.appendInteger(this.fileNo);
    if (line === null) a.appendNull();
    else a.appendBigInt(BigInt(line));
    appendText(a, path);
    a.appendVarchar(json);
    a.endRow();
  }

  remove(resourceType: string, id: string, deletedAt: string | null, source: string): void {
    const a = this.deletions;
    this.removals++;
    a.appendBigInt(BigInt(++this.seq));
    a.appendVarchar(resourceType);
    a.appendVarchar(id);
    appendText(a, deletedAt);
    a.appendVarchar(source);
    a.endRow();
  }

  quarantine(record: QuarantineRecord): void {
    const a = this.bad;
    this.quarantined++;
    a.appendVarchar(record.source);
    if (record.line === null) a.appendNull();
    else a.appendBigInt(BigInt(record.line));
    appendText(a, record.path);
    a.appendVarchar(record.reason);
    appendText(a, record.content);
    a.endRow();
  }

  progress(bytes: number): void {
    this.progressOf.at(0, this.fileOffset, bytes, this.file);
  }
}

/** ingestPaths expands files/folders and ingests them all in one transaction. */
export async function ingestPaths(warehouse: Warehouse, paths: readonly string[], options: IngestOptions): Promise<IngestCounts> {
  const files = await listInputs(paths);
  return ingestFiles(warehouse, files, { ...options, sources: options.sources ?? paths });
}

/** ingestFiles ingests already-listed files in one transaction and records the run. */
export async function ingestFiles(warehouse: Warehouse, files: readonly InputFile[], options: IngestOptions): Promise<IngestCounts> {
  if (warehouse.readOnly) throw new CairnError('WAREHOUSE_FAILED', `The analytical database ${warehouse.path} was opened read-only; ingest needs write access.`);
  const c = warehouse.connection;
  const fail = (error: unknown, what: string): CairnError => error instanceof CairnError
    ? error
    : new CairnError('WAREHOUSE_FAILED', `Ingest into ${warehouse.path} failed ${what}: ${(error as Error).message}`, { cause: error, context: { path: warehouse.path } });
  const restoreMemory = await capMemory(warehouse, options.memoryLimit ?? INGEST_MEMORY_LIMIT);
  const restoreSettings = await override(c, INGEST_SETTINGS);
  const phase = phaseTimer(options.onPhase);
  const progress = new Progress(files.reduce((sum, file) => sum + file.bytes, 0), options.onProgress);
  try {
    let staged: Staged;
    try {
      staged = await stage(c, files, progress, options);
    } catch (error) {
      throw fail(error, 'while reading its input; nothing was changed');
    }
    phase('keys');
    await c.run('BEGIN TRANSACTION');
    try {
      const counts = await merge(c, files, staged, progress, phase, options);
      await c.run('COMMIT');
      phase('commit');
      return counts;
    } catch (error) {
      await c.run('ROLLBACK').catch(() => undefined);
      throw fail(error, 'and was rolled back');
    }
  } finally {
    for (const table of STAGING_TABLES) await c.run(`DROP TABLE IF EXISTS temp.main.${table}`).catch(() => undefined);
    await restoreSettings().catch(() => undefined);
    await restoreMemory();
  }
}

function phaseTimer(onPhase: IngestOptions['onPhase']): (name: IngestPhase) => void {
  let last = performance.now();
  return (name) => {
    const now = performance.now();
    onPhase?.(name, now - last);
    last = now;
  };
}

const TABLE_SQL = `CASE resource_type ${Object.entries(TYPED_TABLES).map(([type, table]) => `WHEN '${type}' THEN '${table}'`).join(' ')} ELSE '${GENERIC_TABLE}' END`;
const BUNDLE_TYPES_SQL = [...BUNDLE_TYPES].map((t) => `'${t}'`).join(', ');
const STAGING_TABLES = ['staging_file', 'staging_raw', 'staging_key', 'staging_delete', 'staging_quarantine', 'staging_dup', 'staging_win', 'decided'];

/** Staged is what reading left in the temp tables, with what only the reader knows. */
interface Staged {
  /** removals counts deletions read. */
  readonly removals: number;
  /** quarantined counts records refused while reading (not yet those DuckDB refuses). */
  readonly quarantined: number;
  /** ordered tells, per file, whether its lines are numbered (and found again by number and hash, else by hash). */
  readonly ordered: readonly boolean[];
  /** duplicates tells whether some resource was read more than once (so a winner must be chosen). */
  readonly duplicates: boolean;
}

/**
 * csvLines reads every line of `path` as one VARCHAR; with `ordered`, also its 1-based line number,
 * which forces DuckDB to read the file in order on one thread, so only files that need line numbers
 * (see stageNdjson) pay for it.
 */
function csvLines(path: string, ordered: boolean): string {
  // A column delimiter and quote that valid JSON text never contains raw (control characters must be
  // escaped in JSON strings): each line is one value. Blank lines come back as NULL, keeping numbering.
  const read = `read_csv('${path.replaceAll("'", "''")}', columns = {'text': 'VARCHAR'}, delim = E'\\x01', quote = '', escape = '',
    header = false, auto_detect = false)`;
  return ordered ? `(SELECT row_number() OVER () AS line, text FROM ${read})` : `(SELECT NULL::BIGINT AS line, text FROM ${read})`;
}

/** stage reads the keys of every file into temp tables (outside any transaction: nothing persistent is touched). */
async function stage(c: DuckDBConnection, files: readonly InputFile[], progress: Progress, options: IngestOptions): Promise<Staged> {
  for (const macro of MACROS) await c.run(macro);
  await c.run(`CREATE OR REPLACE TEMP TABLE staging_file (file_no INTEGER, source VARCHAR)`);
  // Texts read by JavaScript (Bundle entries, files DuckDB refuses): kept until their rows are stored.
  await c.run(`CREATE OR REPLACE TEMP TABLE staging_raw (seq BIGINT, file_no INTEGER, line BIGINT, path VARCHAR, text VARCHAR)`);
  // One row per candidate resource, in reading order by (file_no, line, seq). `text` only for refused
  // lines (quarantine) and Bundles to expand; `raw` says the text is in staging_raw, else in the file,
  // and `seq` is set only then.
  await c.run(`CREATE OR REPLACE TEMP TABLE staging_key (seq BIGINT, file_no INTEGER, line BIGINT, path VARCHAR,
    resource_type VARCHAR, id VARCHAR, lu TIMESTAMP, vn BIGINT, version_id VARCHAR, h UBIGINT, problem VARCHAR,
    tbl VARCHAR, bundle BOOLEAN, text VARCHAR, raw BOOLEAN)`);
  await c.run(`CREATE OR REPLACE TEMP TABLE staging_delete (seq BIGINT, resource_type VARCHAR, id VARCHAR, deleted_at VARCHAR, source VARCHAR)`);
  await c.run(`CREATE OR REPLACE TEMP TABLE staging_quarantine (source VARCHAR, line BIGINT, path VARCHAR, reason VARCHAR, content VARCHAR)`);
  const appenders = await Promise.all([
    c.createAppender('staging_file', 'main', 'temp'),
    c.createAppender('staging_raw', 'main', 'temp'),
    c.createAppender('staging_delete', 'main', 'temp'),
    c.createAppender('staging_quarantine', 'main', 'temp'),
  ]);
  const [fileList, texts, deletions, bad] = appenders;
  const sink = new StagingSink(texts, deletions, bad, progress);
  const ordered: boolean[] = [];
  try {
    for (const [fileNo, file] of files.entries()) {
      fileList.appendInteger(fileNo);
      fileList.appendVarchar(file.path);
      fileList.endRow();
    }
    for (const record of options.quarantine ?? []) sink.quarantine(record);
    let offset = 0;
    for (const [fileNo, file] of files.entries()) {
      sink.startFile(fileNo, file, offset);
      options.onFile?.(file);
      const read = file.format === 'ndjson' ? await stageNdjson(c, file, fileNo, sink) : null;
      if (read === null) await readInput(file, sink);
      ordered.push(read ?? true);
      progress.at(0, offset, file.bytes, file.path);
      offset += file.bytes;
    }
  } finally {
    closeAppenders(...appenders);
  }
  // Keys of the texts JavaScript staged; their line numbers came with them.
  await c.run(`INSERT INTO staging_key SELECT seq, file_no, line, path, resource_type, id, lu, vn, version_id, h, problem,
    ${TABLE_SQL}, false, CASE WHEN problem IS NOT NULL THEN left(text, ${MAX_QUARANTINE_CONTENT}) END, true
    FROM (${keySelect('staging_raw')})`);
  const duplicates = await numberRepeats(c, files, ordered);
  return { removals: sink.removals, quarantined: sink.quarantined, ordered, duplicates };
}

/**
 * numberRepeats finds the resources read more than once. When one repeats inside a file read
 * without line numbers, that file is read again in order: which copy came last may decide. It
 * returns whether anything repeats at all (only then must a winner be chosen, which costs a sort).
 */
async function numberRepeats(c: DuckDBConnection, files: readonly InputFile[], ordered: boolean[]): Promise<boolean> {
  await c.run(`CREATE OR REPLACE TEMP TABLE staging_dup AS SELECT resource_type, id FROM staging_key WHERE problem IS NULL
    GROUP BY ALL HAVING count(*) > 1`);
  if (Number((await c.runAndReadAll('SELECT count(*) FROM staging_dup')).getRowsJS()[0]?.[0] ?? 0) === 0) return false;
  const unnumbered = await c.runAndReadAll(`SELECT DISTINCT file_no FROM staging_key k SEMI JOIN staging_dup d USING (resource_type, id)
    WHERE k.line IS NULL AND NOT k.raw GROUP BY k.file_no, k.resource_type, k.id HAVING count(*) > 1`);
  for (const [fileNo] of unnumbered.getRowsJS()) {
    await c.run(`DELETE FROM staging_key WHERE file_no = ${Number(fileNo)}`);
    await inOrder(c, keysInsert(files[Number(fileNo)]!, Number(fileNo), true));
    ordered[Number(fileNo)] = true;
  }
  return true;
}

/** keysInsert stages the keys of every non-blank line of `file`, with its line number when `ordered`. */
function keysInsert(file: InputFile, fileNo: number, ordered: boolean): string {
  // Whitespace-only lines are not candidates, as in the JavaScript reader ('{' skips the regexp).
  const lines = `(SELECT * FROM ${csvLines(file.path, ordered)}
    WHERE text IS NOT NULL AND (starts_with(text, '{') OR NOT regexp_full_match(text, '[\\s\\x{feff}]*')))`;
  return `INSERT INTO staging_key SELECT NULL, ${fileNo}, line, NULL, resource_type, id, lu, vn,
      version_id, h, problem, ${TABLE_SQL}, bundle,
      CASE WHEN bundle THEN text WHEN problem IS NOT NULL THEN left(text, ${MAX_QUARANTINE_CONTENT}) END, false
    FROM (SELECT *, CASE WHEN resource_type = 'Bundle'
        THEN COALESCE(json_extract_string(text, '$.type') IN (${BUNDLE_TYPES_SQL}), false) ELSE false END AS bundle
      FROM (${keySelect(lines)}))`;
}

/**
 * stageNdjson lets DuckDB read a Bulk NDJSON file (gzipped or not) and stage the keys of its lines,
 * then hands the lines that are Bundles to the JavaScript reader. It returns whether the file's lines
 * are numbered (`ordered`), or null when DuckDB cannot read the file as UTF-8 lines, so the
 * JavaScript reader (which quarantines what it cannot read and keeps the rest) takes the whole file
 * instead; the failed statement stages nothing, since it runs outside a transaction.
 *
 * The file is first read on all threads without line numbers. Those are needed only when a line is
 * refused (the quarantine says where), is a Bundle, or when one text appears twice (storing finds
 * lines by their hash); then the file is read again in order. (A resource repeated with other text:
 * see numberRepeats.)
 */
async function stageNdjson(c: DuckDBConnection, file: InputFile, fileNo: number, sink: StagingSink): Promise<boolean | null> {
  // DuckDB reads a truncated gzip up to the cut without complaint; zlib, in parallel, says so.
  const intact = file.gzip ? gzipIntact(file.path) : Promise.resolve(true);
  try {
    await c.run(keysInsert(file, fileNo, false));
  } catch {
    await intact;
    return null;
  }
  if (!(await intact)) {
    await c.run(`DELETE FROM staging_key WHERE file_no = ${fileNo}`);
    return null;
  }
  const [special, texts, distinctTexts] = (await c.runAndReadAll(`SELECT count(*) FILTER (WHERE problem IS NOT NULL OR bundle),
      count(*), count(DISTINCT h) FROM staging_key WHERE file_no = ${fileNo}`)).getRowsJS()[0]!.map(Number);
  if (special === 0 && texts === distinctTexts) return false;
  await c.run(`DELETE FROM staging_key WHERE file_no = ${fileNo}`);
  await inOrder(c, keysInsert(file, fileNo, true));
  // Bundles are expanded in JavaScript (ids, urn:uuid references, DELETE entries); every other line stays.
  const bundles = (await c.runAndReadAll(`SELECT line, text FROM staging_key WHERE file_no = ${fileNo} AND bundle ORDER BY line`)).getRowsJS();
  if (bundles.length > 0) {
    await c.run(`DELETE FROM staging_key WHERE file_no = ${fileNo} AND bundle`);
    for (const [line, text] of bundles) readLine(String(text), file.path, Number(line), sink);
  }
  return true;
}

/** gzipIntact decompresses `path` to nowhere and tells whether the whole stream is there. */
async function gzipIntact(path: string): Promise<boolean> {
  try {
    await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), createGunzip(), new Writable({ write: (_chunk, _encoding, done) => done() }));
    return true;
  } catch {
    return false;
  }
}

const STORE = `action IN ('insert', 'replace')`;

/** merge applies what was staged to the resource tables; the caller holds the transaction. */
async function merge(c: DuckDBConnection, files: readonly InputFile[], staged: Staged, progress: Progress,
  phase: (name: IngestPhase) => void, options: IngestOptions): Promise<IngestCounts> {
  const now = options.now.toISOString().replace('T', ' ').replace('Z', '');
  const runRow = await c.runAndReadAll('SELECT COALESCE(max(run_id), 0)::BIGINT + 1 FROM ingest_run');
  const runId = Number(runRow.getRowsJS()[0]?.[0] ?? 1);
  await c.run(`INSERT INTO ingest_run (run_id, started_at, sources) VALUES ($1, $2::TIMESTAMP, $3::JSON)`, [runId, now, JSON.stringify(options.sources ?? files.map((f) => f.path))]);
  await c.run(`INSERT INTO staging_quarantine SELECT f.source, k.line, k.path, k.problem, k.text
    FROM staging_key k JOIN staging_file f USING (file_no) WHERE k.problem IS NOT NULL`);
  const [texts = 0, badTexts = 0] = (await c.runAndReadAll('SELECT count(*), count(problem) FROM staging_key')).getRowsJS()[0]!.map(Number);

  const deleted = await applyDeletions(c, now, runId);
  // The winner per (type, id) among the staged copies (the last read among equals); losers count as
  // unchanged duplicates. Without repeats every valid row wins, and the sort is skipped.
  let winners = '(SELECT * FROM staging_key WHERE problem IS NULL)';
  if (staged.duplicates) {
    await c.run(`CREATE OR REPLACE TEMP TABLE staging_win AS SELECT * FROM staging_key WHERE problem IS NULL
      QUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY lu DESC NULLS LAST, vn DESC NULLS LAST, version_id DESC NULLS LAST,
        file_no DESC, line DESC NULLS LAST, seq DESC NULLS LAST) = 1`);
    winners = 'staging_win';
  }
  const tables = (await c.runAndReadAll(`SELECT DISTINCT tbl FROM ${winners}`)).getRowsJS().map((row) => String(row[0])).filter((t) => RESOURCE_TABLES.includes(t));
  await decide(c, winners, tables);
  const actions = new Map<string, number>();
  for (const [action, n] of (await c.runAndReadAll('SELECT action, count(*)::BIGINT FROM decided GROUP BY action')).getRowsJS()) {
    actions.set(String(action), Number(n));
  }
  phase('decide');
  await store(c, files, tables, staged, runId, progress);
  phase('store');

  const merged = { loaded: actions.get('insert') ?? 0, replaced: actions.get('replace') ?? 0, unchanged: actions.get('same') ?? 0, skipped: actions.get('skip') ?? 0 };
  const valid = texts - badTexts;
  merged.unchanged += valid - (merged.loaded + merged.replaced + merged.unchanged + merged.skipped);
  // The same bad line read twice is stored once, so re-ingesting changes nothing.
  await c.run(`INSERT INTO quarantine SELECT s.source, s.line, s.path, s.reason, s.content, $1 FROM
    (SELECT DISTINCT * FROM staging_quarantine) s WHERE NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.source = s.source
      AND q.line IS NOT DISTINCT FROM s.line AND q.path IS NOT DISTINCT FROM s.path AND q.reason = s.reason
      AND q.content IS NOT DISTINCT FROM s.content)`, [runId]);
  const counts: IngestCounts = {
    runId,
    files: files.length,
    bytes: files.reduce((sum, file) => sum + file.bytes, 0),
    read: valid + staged.removals,
    ...merged,
    deleted,
    quarantined: staged.quarantined + badTexts,
  };
  await c.run(`UPDATE ingest_run SET finished_at = $2::TIMESTAMP, read = $3, loaded = $4, replaced = $5, unchanged = $6,
    skipped = $7, deleted = $8, quarantined = $9 WHERE run_id = $1`,
  [runId, now, counts.read, counts.loaded, counts.replaced, counts.unchanged, counts.skipped, counts.deleted, counts.quarantined]);
  return counts;
}

async function applyDeletions(c: DuckDBConnection, now: string, runId: number): Promise<number> {
  const any = await c.runAndReadAll('SELECT count(*)::INTEGER FROM staging_delete');
  if (Number(any.getRowsJS()[0]?.[0] ?? 0) === 0) return 0;
  await c.run(`CREATE OR REPLACE TEMP TABLE delete_latest AS
    SELECT resource_type, id, COALESCE(max(TRY_CAST(deleted_at AS TIMESTAMP)), $1::TIMESTAMP) AS deleted_at,
      bool_or(deleted_at IS NOT NULL) AS has_time, arg_max(source, seq) AS source
    FROM staging_delete GROUP BY resource_type, id`, [now]);
  let deleted = 0;
  for (const table of RESOURCE_TABLES) {
    const result = await c.run(`DELETE FROM ${table} USING delete_latest d WHERE ${table}.resource_type = d.resource_type
      AND ${table}.id = d.id AND (${table}.last_updated IS NULL OR ${table}.last_updated <= d.deleted_at)`);
    deleted += result.rowsChanged;
  }
  // A deletion without its own time never moves an existing tombstone, so re-ingesting is a no-op.
  await c.run(`DELETE FROM tombstone USING delete_latest d WHERE tombstone.resource_type = d.resource_type
    AND tombstone.id = d.id AND d.has_time AND tombstone.deleted_at < d.deleted_at`);
  await c.run(`INSERT INTO tombstone SELECT d.resource_type, d.id, d.deleted_at, d.source, $1 FROM delete_latest d
    WHERE NOT EXISTS (SELECT 1 FROM tombstone t WHERE t.resource_type = d.resource_type AND t.id = d.id)`, [runId]);
  await c.run('DROP TABLE temp.main.delete_latest');
  return deleted;
}

/**
 * decide gives every winner an action against its table: `insert` (new), `replace` (newer, or the
 * same version keys with other JSON), `same` (same keys and JSON) or `skip` (older than the stored
 * copy or than its deletion). Only keys and hashes are read, never the stored JSON itself.
 */
async function decide(c: DuckDBConnection, winners: string, tables: readonly string[]): Promise<void> {
  await c.run(`CREATE OR REPLACE TEMP TABLE decided AS SELECT seq, file_no, line, raw, h, tbl, resource_type, id, NULL::VARCHAR AS action
    FROM staging_key LIMIT 0`);
  const cmp = (a: string, b: string) => `WHEN ${a} > ${b} THEN 'replace' WHEN ${a} < ${b} THEN 'skip'`;
  for (const table of tables) {
    await c.run(`INSERT INTO decided SELECT w.seq, w.file_no, w.line, w.raw, w.h, w.tbl, w.resource_type, w.id, CASE
        WHEN ts.deleted_at IS NOT NULL AND (w.lu IS NULL OR w.lu <= ts.deleted_at) THEN 'skip'
        WHEN t.id IS NULL THEN 'insert'
        ${cmp(`COALESCE(w.lu, '-infinity'::TIMESTAMP)`, `COALESCE(t.last_updated, '-infinity'::TIMESTAMP)`)}
        ${cmp('COALESCE(w.vn, -1)', 'COALESCE(TRY_CAST(t.version_id AS BIGINT), -1)')}
        ${cmp(`COALESCE(w.version_id, '')`, `COALESCE(t.version_id, '')`)}
        WHEN w.h = t.rh THEN 'same'
        ELSE 'replace' END
      FROM (SELECT * FROM ${winners} WHERE tbl = $1) w
      LEFT JOIN (SELECT resource_type, id, last_updated, version_id, hash(resource) AS rh FROM ${table}) t
        ON t.resource_type = w.resource_type AND t.id = w.id
      LEFT JOIN (SELECT resource_type, id, max(deleted_at) AS deleted_at FROM tombstone GROUP BY ALL) ts
        ON ts.resource_type = w.resource_type AND ts.id = w.id`, [table]);
  }
}

/**
 * INGEST_SETTINGS are DuckDB settings while ingesting. Not preserving insertion order lets DuckDB
 * read, extract and insert one file on all threads (with it, an INSERT from one file runs on one
 * thread); the statements that number lines turn it back on for themselves (see {@link inOrder}).
 */
const INGEST_SETTINGS: Readonly<Record<string, string>> = { preserve_insertion_order: 'false' };

/**
 * STORE_SETTINGS are added while reading files again to store: DuckDB estimates a file read by
 * read_csv at 42 rows, so it would build the hash table of the semi-join on the file (every text held
 * in memory) rather than on the hashes to store. Its build-side optimizer stays on for deciding.
 */
const STORE_SETTINGS: Readonly<Record<string, string>> = { disabled_optimizers: 'build_side_probe_side' };

/** inOrder runs `sql`, which numbers lines with row_number() OVER (), with insertion order preserved. */
async function inOrder(c: DuckDBConnection, sql: string, values?: (string | number)[]): Promise<number> {
  await c.run('SET preserve_insertion_order = true');
  try {
    return (await c.run(sql, values)).rowsChanged;
  } finally {
    await c.run('SET preserve_insertion_order = false');
  }
}

/** override changes DuckDB settings and returns what sets them back. */
async function override(c: DuckDBConnection, settings: Readonly<Record<string, string>>): Promise<() => Promise<void>> {
  const names = Object.keys(settings);
  const before = (await c.runAndReadAll(`SELECT name, value FROM duckdb_settings() WHERE name IN (${names.map((n) => `'${n}'`).join(', ')})`)).getRowsJS();
  const set = async (values: Iterable<readonly [string, string]>) => {
    for (const [name, value] of values) await c.run(`SET ${name} = '${value.replaceAll("'", "''")}'`);
  };
  await set(Object.entries(settings));
  return () => set(before.map(([name, value]) => [String(name), String(value)] as const));
}

/** insertColumns maps a table's columns to what {@link resourceSelect} yields. */
function insertColumns(table: string): string {
  return columnNames(table).map((name) => (name === 'resource' ? 'text' : name === 'ingest_run' ? '$1' : name)).join(', ');
}

/**
 * store deletes the stored copies being replaced and inserts the rows to store: texts JavaScript
 * read from staging_raw, the rest by reading each file again (storeFiles).
 */
async function store(c: DuckDBConnection, files: readonly InputFile[], tables: readonly string[], staged: Staged, runId: number, progress: Progress): Promise<void> {
  // Statements with nothing to do are skipped: planning the extraction alone takes a noticeable time.
  const todo = (await c.runAndReadAll(`SELECT tbl, bool_or(action = 'replace'), bool_or(raw AND ${STORE}) FROM decided GROUP BY tbl`)).getRowsJS()
    .map(([table, replaces, raw]) => ({ table: String(table), replaces: replaces === true, raw: raw === true }))
    .filter(({ table }) => tables.includes(table));
  for (const { table, replaces, raw } of todo) {
    if (replaces) {
      await c.run(`DELETE FROM ${table} USING decided d WHERE d.tbl = $1 AND d.action = 'replace'
        AND ${table}.resource_type = d.resource_type AND ${table}.id = d.id`, [table]);
    }
    if (raw) {
      await c.run(`INSERT INTO ${table} (${columnNames(table).join(', ')}) SELECT ${insertColumns(table)} FROM (${resourceSelect(`(
          SELECT f.source, r.text FROM staging_raw r JOIN staging_file f USING (file_no)
          WHERE r.seq IN (SELECT seq FROM decided WHERE raw AND tbl = $2 AND ${STORE}))`, columnNames(table))})`, [runId, table]);
    }
  }
  const wanted = (await c.runAndReadAll(`SELECT file_no, tbl, count(*)::BIGINT FROM decided WHERE NOT raw AND ${STORE} GROUP BY ALL`)).getRowsJS()
    .map(([fileNo, table, count]) => ({ fileNo: Number(fileNo), table: String(table), count: Number(count) }));
  const restore = await override(c, STORE_SETTINGS);
  try {
    await storeFiles(c, files, wanted, staged, runId, progress);
  } finally {
    await restore();
  }
}

/**
 * storeFiles reads each file again and inserts the lines `wanted` into each table. An unordered
 * file's lines are found by their hash, which stageNdjson checked is unique in the file; an ordered
 * file's by line number and hash. Either way the count must match what was decided, else the file
 * changed under us; only lines with the decided texts are ever stored.
 */
async function storeFiles(c: DuckDBConnection, files: readonly InputFile[], wanted: readonly { fileNo: number; table: string; count: number }[],
  staged: Staged, runId: number, progress: Progress): Promise<void> {
  let offset = 0;
  for (const [fileNo, file] of files.entries()) {
    for (const { table, count } of wanted.filter((w) => w.fileNo === fileNo)) {
      const pick = `(SELECT line, h FROM decided WHERE NOT raw AND file_no = ${fileNo} AND tbl = '${table}' AND ${STORE})`;
      const ordered = staged.ordered[fileNo] === true;
      const lines = ordered
        ? `(SELECT l.text FROM ${csvLines(file.path, true)} l SEMI JOIN ${pick} p ON l.line = p.line AND hash(l.text) = p.h)`
        : `(SELECT text FROM ${csvLines(file.path, false)} WHERE text IS NOT NULL AND hash(text) IN (SELECT h FROM ${pick}))`;
      const source = `'${file.path.replaceAll("'", "''")}' AS source`;
      const insert = `INSERT INTO ${table} (${columnNames(table).join(', ')})
        SELECT ${insertColumns(table)} FROM (${resourceSelect(`(SELECT ${source}, text FROM ${lines})`, columnNames(table))})`;
      const inserted = ordered ? await inOrder(c, insert, [runId]) : (await c.run(insert, [runId])).rowsChanged;
      if (inserted !== count) {
        throw new CairnError('WAREHOUSE_FAILED', `${file.path} changed while it was being ingested (${inserted} of ${count} resources found again); nothing was changed, ingest it again.`, { context: { path: file.path } });
      }
    }
    offset += file.bytes;
    progress.at(1, offset, 0, file.path);
  }
}
