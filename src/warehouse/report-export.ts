/**
 * Streaming a report list out of DuckDB: column chunks (about 2,048 rows each) straight from a
 * streaming result, or a Parquet / CSV file written by DuckDB's own writers. Memory stays flat in
 * the number of rows either way.
 */
import { DuckDBDateValue, type DuckDBValue } from '@duckdb/node-api';
import { CairnError } from '../domain/errors.ts';
import type { ListQuery, ReportStore } from './reports.ts';

type Target = 'rows' | 'parquet' | 'csv';

/**
 * orderedSql is the list in its stable order, columns in declared order. Parquet gets typed
 * timestamps; CSV text that a spreadsheet would run as a formula gets a leading `'`.
 */
function orderedSql(list: ListQuery, target: Target): string {
  const columns = list.columns.map((c) => {
    if (target === 'parquet' && c.kind === 'timestamp') return `${c.name}::TIMESTAMPTZ AS ${c.name}`;
    if (target === 'csv' && c.kind === 'string') return `CASE WHEN regexp_matches(${c.name}, '^[=+@\t\r]') THEN '''' || ${c.name} ELSE ${c.name} END AS ${c.name}`;
    return c.name;
  }).join(', ');
  return `SELECT ${columns} FROM (${list.sql}) ORDER BY ${list.order}`;
}

/** A chunk of a list, column by column: strings, numbers (integers, doubles, days since 1970 for dates) or null. */
export interface ColumnChunk {
  readonly length: number;
  readonly columns: readonly (readonly (string | number | null)[])[];
}

function plainValue(value: DuckDBValue): string | number | null {
  if (value === null || typeof value === 'string' || typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (value instanceof DuckDBDateValue) return value.days;
  return String(value);
}

/**
 * streamListColumns yields the whole list in its order as column chunks (about 2,048 rows each),
 * on a connection of its own that is closed when iteration ends or is abandoned.
 */
export async function* streamListColumns(store: ReportStore, list: ListQuery): AsyncGenerator<ColumnChunk> {
  const connection = await store.warehouse.connect();
  try {
    const result = await connection.stream(orderedSql(list, 'rows'), [...list.values]);
    for (;;) {
      const chunk = await result.fetchChunk();
      if (!chunk || chunk.rowCount === 0) break;
      const columns = chunk.getColumns().map((values) => values.map(plainValue));
      yield { length: chunk.rowCount, columns };
    }
  } catch (error) {
    throw new CairnError('WAREHOUSE_FAILED', `Streaming a report list failed: ${(error as Error).message}`, { cause: error });
  } finally {
    connection.closeSync();
  }
}

/**
 * copyListToFile writes the whole list to `file` with DuckDB's own writers: Parquet (zstd,
 * timestamps typed) or CSV (RFC 4180 quoting, header line). DuckDB streams the rows to disk.
 */
export async function copyListToFile(store: ReportStore, list: ListQuery, file: string, format: 'parquet' | 'csv'): Promise<void> {
  const connection = await store.warehouse.connect();
  try {
    const target = file.replaceAll("'", "''");
    const options = format === 'parquet' ? `FORMAT parquet, COMPRESSION zstd` : `FORMAT csv, HEADER true, DELIMITER ',', QUOTE '"', ESCAPE '"', NULLSTR ''`;
    await connection.run(`COPY (${orderedSql(list, format)}) TO '${target}' (${options})`, [...list.values]);
  } catch (error) {
    throw new CairnError('WAREHOUSE_FAILED', `Writing a ${format} export failed: ${(error as Error).message}`, { cause: error });
  } finally {
    connection.closeSync();
  }
}
