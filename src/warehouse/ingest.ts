/**
 * Ingest: read inputs into temporary staging tables, then merge them into the resource tables in
 * one transaction. Staging runs before that transaction and touches only connection-local temp
 * tables, so a crash or kill at any point before COMMIT leaves the previous consistent copy (DuckDB's
 * WAL), and DuckDB can spill staging to disk instead of holding it all in memory.
 *
 * Bulk NDJSON files are read by DuckDB itself (`read_csv` with one column per line, so every line,
 * valid or not, keeps its line number); only lines that are Bundles, and files DuckDB refuses
 * (invalid UTF-8, CRLF, truncated gzip, over-long lines), go through JavaScript (sources.ts).
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
import type { Warehouse } from './database.ts';
import { MACROS, stagingSelect } from './extract.ts';
import { columnNames, GENERIC_TABLE, RESOURCE_TABLES, TYPED_TABLES } from './schema.ts';
import { BUNDLE_TYPES, listInputs, MAX_QUARANTINE_CONTENT, readInput, readLine, type InputFile, type IngestSink, type QuarantineRecord } from './sources.ts';

/** IngestOptions: time is an input, so a run is reproducible. */
export interface IngestOptions {
  /** now stamps the run and dates deletions whose input carries no time. */
  readonly now: Date;
  /** onProgress gets bytes consumed across all files and the total. */
  readonly onProgress?: (done: number, total: number, file: string) => void;
  /** onFile is told when a file starts, for logs. */
  readonly onFile?: (file: InputFile) => void;
  /** quarantine adds records found outside the files (e.g. a Bulk Data error file). */
  readonly quarantine?: readonly QuarantineRecord[];
  /** sources overrides what the run log records as its sources (e.g. an export URL). */
  readonly sources?: readonly string[];
}

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

function appendText(appender: DuckDBAppender, value: string | null): void {
  if (value === null) appender.appendNull();
  else appender.appendVarchar(value);
}

/** StagingSink appends everything read to the temporary staging tables. */
class StagingSink implements IngestSink {
  read = 0;
  texts = 0;
  quarantined = 0;
  seq = 0;
  private base = 0;
  private fileBytes = 0;

  constructor(
    private readonly resources: DuckDBAppender,
    private readonly deletions: DuckDBAppender,
    private readonly bad: DuckDBAppender,
    private readonly total: number,
    private readonly onProgress: IngestOptions['onProgress'],
    private file = '',
  ) {}

  startFile(file: InputFile): void {
    this.base += this.fileBytes;
    this.fileBytes = 0;
    this.file = file.path;
  }

  text(json: string, source: string, line: number | null, path: string | null): void {
    const a = this.resources;
    this.texts++;
    a.appendBigInt(BigInt(++this.seq));
    a.appendVarchar(source);
    if (line === null) a.appendNull();
    else a.appendBigInt(BigInt(line));
    appendText(a, path);
    a.appendVarchar(json);
    a.endRow();
  }

  remove(resourceType: string, id: string, deletedAt: string | null, source: string): void {
    const a = this.deletions;
    this.read++;
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

  /** skip reserves `count` sequence numbers for rows staged by DuckDB directly. */
  skip(count: number): number {
    const base = this.seq;
    this.seq += count;
    return base;
  }

  progress(bytes: number): void {
    this.fileBytes = bytes;
    this.onProgress?.(this.base + bytes, this.total, this.file);
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
  const total = files.reduce((sum, file) => sum + file.bytes, 0);
  const fail = (error: unknown, what: string): CairnError => error instanceof CairnError
    ? error
    : new CairnError('WAREHOUSE_FAILED', `Ingest into ${warehouse.path} failed ${what}: ${(error as Error).message}`, { cause: error, context: { path: warehouse.path } });
  try {
    let staged: Staged;
    try {
      staged = await stage(c, files, total, options);
    } catch (error) {
      throw fail(error, 'while reading its input; nothing was changed');
    }
    await c.run('BEGIN TRANSACTION');
    try {
      const counts = await merge(c, files, staged, options);
      await c.run('COMMIT');
      return counts;
    } catch (error) {
      await c.run('ROLLBACK').catch(() => undefined);
      throw fail(error, 'and was rolled back');
    }
  } finally {
    for (const table of STAGING_TABLES) await c.run(`DROP TABLE IF EXISTS temp.main.${table}`).catch(() => undefined);
  }
}

const TABLE_MAP_SQL = `(VALUES ${Object.entries(TYPED_TABLES).map(([type, table]) => `('${type}', '${table}')`).join(', ')}) AS m(resource_type, tbl)`;

const STAGING_TABLES = ['staging_raw', 'staging', 'staging_win', 'staging_delete', 'staging_quarantine', 'delete_latest', 'decided'];

/** Staged is what reading left in the temp tables, with the counts only the reader knows. */
interface Staged {
  /** texts counts candidate resources staged (valid or not). */
  readonly texts: number;
  /** removals counts deletions read. */
  readonly removals: number;
  /** quarantined counts records refused while reading (not yet those DuckDB refuses). */
  readonly quarantined: number;
}

/** csvLines reads every line of `path` as one VARCHAR with its 1-based line number, in file order. */
function csvLines(path: string): string {
  // A column delimiter and quote that valid JSON text never contains raw (control characters must be
  // escaped in JSON strings): each line is one value. Blank lines come back as NULL, keeping numbering.
  return `(SELECT row_number() OVER () AS line, text FROM read_csv('${path.replaceAll("'", "''")}',
    columns = {'text': 'VARCHAR'}, delim = E'\\x01', quote = '', escape = '', header = false, auto_detect = false))`;
}

function stagingInsert(raw: string): string {
  return `INSERT INTO staging SELECT k.*, COALESCE(m.tbl, '${GENERIC_TABLE}') AS tbl FROM (${stagingSelect(raw)}) k LEFT JOIN ${TABLE_MAP_SQL} USING (resource_type)`;
}

/** stage reads every file into temp tables (outside any transaction: nothing persistent is touched). */
async function stage(c: DuckDBConnection, files: readonly InputFile[], total: number, options: IngestOptions): Promise<Staged> {
  for (const macro of MACROS) await c.run(macro);
  await c.run(`CREATE OR REPLACE TEMP TABLE staging_raw (seq BIGINT, source VARCHAR, line BIGINT, path VARCHAR, text VARCHAR)`);
  await c.run(`CREATE OR REPLACE TEMP TABLE staging AS SELECT k.*, NULL::VARCHAR AS tbl FROM (${stagingSelect('staging_raw')}) k LIMIT 0`);
  await c.run(`CREATE OR REPLACE TEMP TABLE staging_delete (seq BIGINT, resource_type VARCHAR, id VARCHAR, deleted_at VARCHAR, source VARCHAR)`);
  await c.run(`CREATE OR REPLACE TEMP TABLE staging_quarantine (source VARCHAR, line BIGINT, path VARCHAR, reason VARCHAR, content VARCHAR)`);
  const appenders = await Promise.all([
    c.createAppender('staging_raw', 'main', 'temp'),
    c.createAppender('staging_delete', 'main', 'temp'),
    c.createAppender('staging_quarantine', 'main', 'temp'),
  ]);
  const [resources, deletions, bad] = appenders;
  const sink = new StagingSink(resources, deletions, bad, total, options.onProgress);
  let direct = 0;
  try {
    for (const record of options.quarantine ?? []) sink.quarantine(record);
    for (const file of files) {
      sink.startFile(file);
      options.onFile?.(file);
      const staged = file.format === 'ndjson' ? await stageNdjson(c, file, sink) : null;
      if (staged === null) await readInput(file, sink);
      else direct += staged;
      sink.progress(file.bytes);
    }
  } finally {
    for (const appender of appenders) appender.closeSync();
  }
  // Rows the JavaScript reader staged (Bundle entries, refused files) are parsed by DuckDB here.
  await c.run(stagingInsert('staging_raw'));
  await c.run('DROP TABLE temp.main.staging_raw');
  return { texts: sink.texts + direct, removals: sink.read, quarantined: sink.quarantined };
}

/**
 * stageNdjson lets DuckDB read, split and parse a Bulk NDJSON file (gzipped or not) straight into
 * staging, then hands the lines that are Bundles to the JavaScript reader. It returns how many texts
 * it staged, or null when DuckDB cannot read the file as UTF-8 lines, so the JavaScript reader (which
 * quarantines what it cannot read and keeps the rest) takes the whole file instead; the failed
 * statement stages nothing, since it runs outside a transaction.
 */
async function stageNdjson(c: DuckDBConnection, file: InputFile, sink: StagingSink): Promise<number | null> {
  const start = sink.seq;
  // DuckDB reads a truncated gzip up to the cut without complaint; zlib, in parallel, says so.
  const intact = file.gzip ? gzipIntact(file.path) : Promise.resolve(true);
  let inserted: number;
  try {
    // Whitespace-only lines are not candidates, as in the JavaScript reader.
    const lines = `(SELECT ${start}::BIGINT + line AS seq, '${file.path.replaceAll("'", "''")}' AS source, line, NULL::VARCHAR AS path, text
      FROM ${csvLines(file.path)} WHERE text IS NOT NULL AND NOT regexp_full_match(text, '[\\s\\x{feff}]*'))`;
    inserted = (await c.run(stagingInsert(lines))).rowsChanged;
  } catch {
    await intact;
    return null;
  }
  if (!(await intact)) {
    await c.run(`DELETE FROM staging WHERE seq > ${start}`);
    return null;
  }
  const last = await c.runAndReadAll(`SELECT COALESCE(max(seq), ${start})::BIGINT FROM staging WHERE seq > ${start}`);
  sink.skip(Number(last.getRowsJS()[0]?.[0] ?? start) - start);
  // Bundles are expanded in JavaScript (ids, urn:uuid references, DELETE entries); every other line stays.
  const types = [...BUNDLE_TYPES].map((t) => `'${t}'`).join(', ');
  const bundles = await c.runAndReadAll(`SELECT seq, line, text FROM staging WHERE seq > ${start} AND resource_type = 'Bundle'
    AND json_extract_string(text, '$.type') IN (${types}) ORDER BY seq`);
  const rows = bundles.getRowsJS();
  if (rows.length === 0) return inserted;
  await c.run(`DELETE FROM staging WHERE seq IN (${rows.map((row) => String(row[0])).join(', ')})`);
  for (const [, line, text] of rows) readLine(String(text), file.path, Number(line), sink);
  return inserted - rows.length;
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

/** merge applies what was staged to the resource tables; the caller holds the transaction. */
async function merge(c: DuckDBConnection, files: readonly InputFile[], staged: Staged, options: IngestOptions): Promise<IngestCounts> {
  const now = options.now.toISOString().replace('T', ' ').replace('Z', '');
  const runRow = await c.runAndReadAll('SELECT COALESCE(max(run_id), 0)::BIGINT + 1 FROM ingest_run');
  const runId = Number(runRow.getRowsJS()[0]?.[0] ?? 1);
  await c.run(`INSERT INTO ingest_run (run_id, started_at, sources) VALUES ($1, $2::TIMESTAMP, $3::JSON)`, [runId, now, JSON.stringify(options.sources ?? files.map((f) => f.path))]);
  await c.run(`INSERT INTO staging_quarantine SELECT source, line, path, problem, left(text, ${MAX_QUARANTINE_CONTENT})
    FROM staging WHERE problem IS NOT NULL`);
  const badTexts = Number((await c.runAndReadAll('SELECT count(*) FROM staging WHERE problem IS NOT NULL')).getRowsJS()[0]?.[0] ?? 0);

  const deleted = await applyDeletions(c, now, runId);
  // The winner per (type, id) among the staged copies; losers count as unchanged duplicates.
  await c.run(`CREATE OR REPLACE TEMP TABLE staging_win AS SELECT seq, tbl, resource_type, id, lu, vn, version_id FROM staging WHERE problem IS NULL
    QUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY lu DESC NULLS LAST, vn DESC NULLS LAST, version_id DESC NULLS LAST, seq DESC) = 1`);
  const merged = { loaded: 0, replaced: 0, unchanged: 0, skipped: 0 };
  const tables = (await c.runAndReadAll('SELECT DISTINCT tbl FROM staging_win')).getRowsJS().map((row) => String(row[0]));
  for (const table of tables.filter((t) => RESOURCE_TABLES.includes(t))) {
    const result = await mergeTable(c, table, runId);
    merged.loaded += result.loaded;
    merged.replaced += result.replaced;
    merged.unchanged += result.unchanged;
    merged.skipped += result.skipped;
  }
  const valid = staged.texts - badTexts;
  const winners = merged.loaded + merged.replaced + merged.unchanged + merged.skipped;
  merged.unchanged += valid - winners;
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

async function mergeTable(c: DuckDBConnection, table: string, runId: number): Promise<{ loaded: number; replaced: number; unchanged: number; skipped: number }> {
  const cmp = (a: string, b: string) => `WHEN ${a} > ${b} THEN 1 WHEN ${a} < ${b} THEN -1`;
  // Decide on keys only; resource text is touched only for ties and for the rows inserted.
  await c.run(`CREATE OR REPLACE TEMP TABLE decided AS
    SELECT w.seq, w.resource_type, w.id, CASE
      WHEN ts.deleted_at IS NOT NULL AND (w.lu IS NULL OR w.lu <= ts.deleted_at) THEN 'tombstoned'
      WHEN t.id IS NULL THEN 'insert'
      ELSE CASE
        ${cmp(`COALESCE(w.lu, '-infinity'::TIMESTAMP)`, `COALESCE(t.last_updated, '-infinity'::TIMESTAMP)`)}
        ${cmp('COALESCE(w.vn, -1)', 'COALESCE(TRY_CAST(t.version_id AS BIGINT), -1)')}
        ${cmp(`COALESCE(w.version_id, '')`, `COALESCE(t.version_id, '')`)}
        ELSE 0 END::VARCHAR END AS action
    FROM (SELECT * FROM staging_win WHERE tbl = $1) w
    LEFT JOIN (SELECT resource_type, id, last_updated, version_id FROM ${table}) t ON t.resource_type = w.resource_type AND t.id = w.id
    LEFT JOIN (SELECT resource_type, id, max(deleted_at) AS deleted_at FROM tombstone GROUP BY ALL) ts
      ON ts.resource_type = w.resource_type AND ts.id = w.id`, [table]);
  // Same version keys: replace only when the JSON differs (last read wins), else nothing changes.
  const ties = Number((await c.runAndReadAll(`SELECT count(*) FROM decided WHERE action = '0'`)).getRowsJS()[0]?.[0] ?? 0);
  if (ties > 0) {
    await c.run(`UPDATE decided SET action = CASE WHEN s.text = t.resource THEN 'same' ELSE '1' END
      FROM staging s, ${table} t WHERE decided.action = '0' AND s.seq = decided.seq
        AND t.resource_type = decided.resource_type AND t.id = decided.id`);
  }
  const actions = new Map<string, number>();
  for (const [action, n] of (await c.runAndReadAll('SELECT action, count(*)::BIGINT FROM decided GROUP BY action')).getRowsJS()) {
    actions.set(String(action), Number(n));
  }
  const replaced = actions.get('1') ?? 0;
  if (replaced > 0) {
    await c.run(`DELETE FROM ${table} USING decided d WHERE d.action = '1'
      AND ${table}.resource_type = d.resource_type AND ${table}.id = d.id`);
  }
  const loaded = actions.get('insert') ?? 0;
  if (loaded + replaced > 0) {
    const select = columnNames(table).map((name) => (name === 'last_updated' ? 'lu' : name === 'resource' ? 'text' : name === 'ingest_run' ? '$1' : name));
    // The tbl filter is pushed into the scan, so each table reads only its own staged rows.
    await c.run(`INSERT INTO ${table} (${columnNames(table).join(', ')})
      SELECT ${select.join(', ')} FROM staging
      WHERE tbl = $2 AND seq IN (SELECT seq FROM decided WHERE action IN ('insert', '1'))`, [runId, table]);
  }
  await c.run('DROP TABLE temp.main.decided');
  return {
    loaded,
    replaced,
    unchanged: actions.get('same') ?? 0,
    skipped: (actions.get('-1') ?? 0) + (actions.get('tombstoned') ?? 0),
  };
}
