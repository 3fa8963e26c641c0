/**
 * Opening the DuckDB file. DuckDB lets one process hold a database file for writing (or several
 * processes read-only, with no writer); a collision becomes CairnError WAREHOUSE_BUSY naming the
 * file, the holder's PID and what to do. Extension auto-install/auto-load are off: this machine is
 * offline and only the built-in json, parquet and icu extensions exist.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DuckDBInstance, type DuckDBAppender, type DuckDBConnection } from '@duckdb/node-api';
import { CairnError } from '../domain/errors.ts';
import { SCHEMA_VERSION, schemaStatements } from './schema.ts';

/** DEFAULT_DATABASE_PATH is where the warehouse lives unless configured otherwise. */
export const DEFAULT_DATABASE_PATH = './data/cairn.duckdb';

/** OpenOptions choose the file and access mode. */
export interface OpenOptions {
  readonly path: string;
  /** readOnly opens without a write lock; several readers may share the file, but no writer. */
  readonly readOnly?: boolean;
  /** waitMs keeps retrying for this long while another process holds the file (default 0). */
  readonly waitMs?: number;
  /** memoryLimit is DuckDB's memory_limit, e.g. `2GB`; larger work spills to disk. */
  readonly memoryLimit?: string;
}

/** Warehouse is an open database: one connection plus a way to make more for parallel streams. */
export interface Warehouse {
  readonly path: string;
  readonly readOnly: boolean;
  /** memoryLimit is the memory_limit the database was opened with; undefined: DuckDB's default. */
  readonly memoryLimit: string | undefined;
  readonly connection: DuckDBConnection;
  connect(): Promise<DuckDBConnection>;
  close(): void;
}

const LOCK_MESSAGE = /Could not set lock on file|Conflicting lock is held/i;

function busyError(path: string, error: Error): CairnError {
  const pid = /\(PID (\d+)\)/.exec(error.message)?.[1];
  const holder = pid ? `process ${pid}` : 'another process';
  return new CairnError(
    'WAREHOUSE_BUSY',
    `The analytical database ${path} is locked by ${holder}. Only one process may write it at a time: ` +
      `stop that process (for example a running \`cairn serve\` or another \`cairn ingest\`) or wait for it to finish, then retry; ` +
      `or point this command at another database file.`,
    { context: { path, pid: pid ? Number(pid) : undefined }, cause: error },
  );
}

/** openWarehouse opens (and, for writing, creates and migrates) the database at `options.path`. */
export async function openWarehouse(options: OpenOptions): Promise<Warehouse> {
  const path = resolve(options.path);
  const readOnly = options.readOnly ?? false;
  if (readOnly && !existsSync(path)) {
    throw new CairnError('WAREHOUSE_FAILED', `There is no analytical database at ${path}; run \`cairn ingest\` first.`, { context: { path } });
  }
  if (!readOnly) await mkdir(dirname(path), { recursive: true });
  const settings: Record<string, string> = {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
    access_mode: readOnly ? 'READ_ONLY' : 'READ_WRITE',
  };
  if (options.memoryLimit) settings.memory_limit = options.memoryLimit;
  const deadline = Date.now() + (options.waitMs ?? 0);
  let instance: DuckDBInstance;
  for (;;) {
    try {
      instance = await DuckDBInstance.create(path, settings);
      break;
    } catch (error) {
      const err = error as Error;
      if (!LOCK_MESSAGE.test(err.message)) {
        throw new CairnError('WAREHOUSE_FAILED', `Could not open the analytical database ${path}: ${err.message}`, { context: { path }, cause: err });
      }
      if (Date.now() >= deadline) throw busyError(path, err);
      await sleep(200);
    }
  }
  const connection = await instance.connect();
  const warehouse: Warehouse = {
    path,
    readOnly,
    memoryLimit: options.memoryLimit,
    connection,
    connect: () => instance.connect(),
    close: () => {
      connection.closeSync();
      instance.closeSync();
    },
  };
  if (!readOnly) {
    try {
      await migrate(connection);
    } catch (error) {
      warehouse.close();
      throw new CairnError('WAREHOUSE_FAILED', `Could not create the warehouse schema in ${path}: ${(error as Error).message}`, { context: { path }, cause: error });
    }
  }
  return warehouse;
}

async function migrate(connection: DuckDBConnection): Promise<void> {
  for (const statement of schemaStatements()) await connection.run(statement);
  const reader = await connection.runAndReadAll(`SELECT value FROM cairn_meta WHERE key = 'schema_version'`);
  const found = reader.getRowsJS()[0]?.[0];
  if (found === undefined) {
    await connection.run(`INSERT INTO cairn_meta VALUES ('schema_version', $1)`, [String(SCHEMA_VERSION)]);
  } else if (Number(found) !== SCHEMA_VERSION) {
    throw new Error(`schema version ${String(found)} found, this Cairn expects ${SCHEMA_VERSION}`);
  }
}

/** withWarehouse opens the database, runs `work`, and always closes it, so the lock is held briefly. */
export async function withWarehouse<T>(options: OpenOptions, work: (warehouse: Warehouse) => Promise<T>): Promise<T> {
  const warehouse = await openWarehouse(options);
  try {
    return await work(warehouse);
  } finally {
    warehouse.close();
  }
}

/** queryRows runs `sql` and returns plain JS row objects (bigints stay bigints). */
export async function queryRows(connection: DuckDBConnection, sql: string, values?: readonly (string | number | boolean | null)[]): Promise<Record<string, unknown>[]> {
  try {
    const reader = await connection.runAndReadAll(sql, values ? [...values] : undefined);
    return reader.getRowObjectsJS() as Record<string, unknown>[];
  } catch (error) {
    throw new CairnError('WAREHOUSE_FAILED', `A warehouse query failed: ${(error as Error).message}`, { context: { sql: sql.slice(0, 200) }, cause: error });
  }
}

/**
 * closeAppenders writes each appender's rows and throws the first failure once all were tried. An
 * appender that fails has its rows dropped first: a failed appender keeps them and writes them
 * again when the collector finalizes it, which aborts whatever transaction its connection has
 * open by then (seen: a later feedback answered 500).
 */
export function closeAppenders(...appenders: readonly DuckDBAppender[]): void {
  const failures: unknown[] = [];
  for (const appender of appenders) {
    try {
      appender.closeSync();
    } catch (error) {
      appender.clear();
      failures.push(error);
    }
  }
  if (failures.length > 0) throw failures[0];
}

const MEMORY_UNITS: Readonly<Record<string, number>> = { bytes: 1, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12 };

/** memoryBytes reads a DuckDB memory setting such as `18.8 GiB` (NaN when it cannot). */
function memoryBytes(setting: string): number {
  const match = /^([\d.]+)\s*([A-Za-z]+)$/.exec(setting.trim());
  return match ? Number(match[1]) * (MEMORY_UNITS[match[2]?.toLowerCase() ?? ''] ?? Number.NaN) : Number.NaN;
}

/**
 * capMemory lowers DuckDB's memory_limit to `limit` (e.g. `1GiB`) when it is higher, so large work
 * spills to the temp directory beside the database file instead of growing the process (DuckDB's
 * default is 80% of RAM), and returns the undo. The undo goes back to what the warehouse was opened
 * with, not to the limit read (DuckDB prints limits rounded). memory_limit is global: other
 * connections of the same open database are capped meanwhile.
 */
export async function capMemory(warehouse: Warehouse, limit: string): Promise<() => Promise<void>> {
  const c = warehouse.connection;
  const current = String((await c.runAndReadAll(`SELECT current_setting('memory_limit')`)).getRowsJS()[0]?.[0] ?? '');
  if (!(memoryBytes(current) > memoryBytes(limit))) return async () => undefined;
  await c.run(`SET memory_limit = '${limit.replaceAll("'", "''")}'`);
  const restore = warehouse.memoryLimit === undefined ? 'RESET memory_limit' : `SET memory_limit = '${warehouse.memoryLimit.replaceAll("'", "''")}'`;
  return async () => {
    await c.run(restore).catch(() => undefined);
  };
}
