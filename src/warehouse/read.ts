/**
 * The read side the nightly batch uses: count patients and stream them in chunks, each patient as
 * their Patient resource plus every resource that references them. One sorted streaming query, so
 * JavaScript memory stays flat in N (DuckDB sorts out of core past its memory limit).
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { CairnError } from '../domain/errors.ts';
import type { Warehouse } from './database.ts';
import { RESOURCE_TABLES } from './schema.ts';

/** FhirResource is a parsed FHIR R4 resource as stored. */
export type FhirResource = Readonly<{ resourceType: string; id: string } & Record<string, unknown>>;

/** PatientRecord is one patient's data: `resources[0]` is the Patient. */
export interface PatientRecord {
  readonly patientId: string;
  readonly resources: readonly FhirResource[];
}

/** StreamOptions tune chunking. */
export interface StreamOptions {
  /** chunkSize is how many patients each yielded array holds (default 500). */
  readonly chunkSize?: number;
}

async function scalar(connection: DuckDBConnection, sql: string): Promise<number> {
  try {
    const reader = await connection.runAndReadAll(sql);
    return Number(reader.getRowsJS()[0]?.[0] ?? 0);
  } catch (error) {
    throw new CairnError('WAREHOUSE_FAILED', `A warehouse query failed: ${(error as Error).message}`, { cause: error });
  }
}

/** countPatients returns how many Patient resources the warehouse holds. */
export function countPatients(warehouse: Warehouse): Promise<number> {
  return scalar(warehouse.connection, 'SELECT count(*) FROM patient');
}

/** countByTable returns the row count of every resource table (for reports and tests). */
export async function countByTable(warehouse: Warehouse): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of RESOURCE_TABLES) out[table] = await scalar(warehouse.connection, `SELECT count(*) FROM ${table}`);
  return out;
}

/** countByResourceType returns how many resources of each type are stored. */
export async function countByResourceType(warehouse: Warehouse): Promise<Record<string, number>> {
  const union = RESOURCE_TABLES.map((table) => `SELECT resource_type FROM ${table}`).join(' UNION ALL ');
  const reader = await warehouse.connection.runAndReadAll(`SELECT resource_type, count(*)::BIGINT FROM (${union}) GROUP BY ALL ORDER BY 1`);
  return Object.fromEntries(reader.getRowsJS().map(([type, n]) => [String(type), Number(n)]));
}

/**
 * The resources of the patients whose ids lie in [$1, $2], Patient first, then each table's rows in
 * stored order: the order is fully determined, so CQL that keeps data order (a retrieve without a
 * sort) sees the same list in every run.
 */
function partitionQuery(): string {
  const tables = RESOURCE_TABLES.filter((table) => table !== 'patient');
  const others = tables
    .map((table, i) => `SELECT patient_id, ${i + 1} AS rank, rowid AS position, resource FROM ${table} WHERE patient_id BETWEEN $1 AND $2`)
    .join(' UNION ALL ');
  return `SELECT patient_id, resource FROM (
      SELECT id AS patient_id, 0 AS rank, rowid AS position, resource FROM patient WHERE id BETWEEN $1 AND $2
      UNION ALL SELECT * FROM (${others}) WHERE patient_id IN (SELECT id FROM patient WHERE id BETWEEN $1 AND $2)
    ) ORDER BY patient_id, rank, position`;
}

/** Patients per partition query: each sorts this many patients' rows, not the whole warehouse's. */
const PARTITION = 5000;

/** One patient's stored resources as JSON texts, Patient first. */
interface PatientTexts {
  readonly patientId: string;
  readonly texts: string[];
}

/**
 * Patients in chunks, each resource as the JSON text the warehouse stores. The patients are read in
 * id ranges of {@link PARTITION}: one sorted query over everything made DuckDB sort every stored
 * resource before the first row came out (and hold it, in memory or spilled), where a range query
 * sorts a few thousand patients' rows and yields the first ones at once.
 */
async function* streamPatientTexts(warehouse: Warehouse, chunkSize: number): AsyncGenerator<PatientTexts[]> {
  // A dedicated connection, so callers may query the warehouse while iterating.
  const connection = await warehouse.connect();
  try {
    const ids = (await connection.runAndReadAll('SELECT id FROM patient ORDER BY id')).getColumnsJS()[0] ?? [];
    const query = partitionQuery();
    let batch: PatientTexts[] = [];
    for (let from = 0; from < ids.length; from += PARTITION) {
      const range = [String(ids[from]), String(ids[Math.min(from + PARTITION, ids.length) - 1])];
      const result = await connection.stream(query, range);
      let current: PatientTexts | undefined;
      for (;;) {
        const chunk = await result.fetchChunk();
        if (!chunk || chunk.rowCount === 0) break;
        const patientIds = chunk.getColumnValues(0);
        const texts = chunk.getColumnValues(1);
        for (let i = 0; i < patientIds.length; i++) {
          const id = String(patientIds[i]);
          if (id !== current?.patientId) {
            if (current !== undefined) {
              batch.push(current);
              if (batch.length >= chunkSize) {
                yield batch;
                batch = [];
              }
            }
            current = { patientId: id, texts: [] };
          }
          current.texts.push(String(texts[i]));
        }
      }
      if (current !== undefined) batch.push(current);
    }
    if (batch.length > 0) yield batch;
  } catch (error) {
    if (error instanceof CairnError) throw error;
    throw new CairnError('WAREHOUSE_FAILED', `Streaming patients from ${warehouse.path} failed: ${(error as Error).message}`, { cause: error });
  } finally {
    connection.closeSync();
  }
}

/**
 * streamPatients yields arrays of up to `chunkSize` patients, ordered by patient id. Resources
 * whose patient has no Patient resource are not returned (they have no one to belong to).
 */
export async function* streamPatients(warehouse: Warehouse, options: StreamOptions = {}): AsyncGenerator<PatientRecord[]> {
  for await (const chunk of streamPatientTexts(warehouse, options.chunkSize ?? 500)) {
    yield chunk.map(({ patientId, texts }) => ({ patientId, resources: texts.map((text) => JSON.parse(text) as FhirResource) }));
  }
}

/** PatientJson is one patient's resources as one JSON array text, Patient first: parsed only where it is evaluated. */
export interface PatientJson {
  readonly patientId: string;
  readonly resourcesJson: string;
}

/**
 * streamPatientJson is {@link streamPatients} without parsing: each patient's stored JSON texts
 * joined into one array text. The nightly batch hands these to worker threads, so the thread that
 * reads DuckDB neither parses resources nor copies them as object graphs between threads.
 */
export async function* streamPatientJson(warehouse: Warehouse, options: StreamOptions = {}): AsyncGenerator<PatientJson[]> {
  for await (const chunk of streamPatientTexts(warehouse, options.chunkSize ?? 500)) {
    yield chunk.map(({ patientId, texts }) => ({ patientId, resourcesJson: `[${texts.join(',')}]` }));
  }
}
