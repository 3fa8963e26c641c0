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

function patientQuery(): string {
  const others = RESOURCE_TABLES.filter((table) => table !== 'patient')
    .map((table) => `SELECT patient_id, 1 AS rank, resource FROM ${table} WHERE patient_id IS NOT NULL`)
    .join(' UNION ALL ');
  return `SELECT patient_id, resource FROM (
      SELECT id AS patient_id, 0 AS rank, resource FROM patient
      UNION ALL SELECT * FROM (${others}) WHERE patient_id IN (SELECT id FROM patient)
    ) ORDER BY patient_id, rank`;
}

/**
 * streamPatients yields arrays of up to `chunkSize` patients, ordered by patient id. Resources
 * whose patient has no Patient resource are not returned (they have no one to belong to).
 */
export async function* streamPatients(warehouse: Warehouse, options: StreamOptions = {}): AsyncGenerator<PatientRecord[]> {
  const chunkSize = options.chunkSize ?? 500;
  // A dedicated connection, so callers may query the warehouse while iterating.
  const connection = await warehouse.connect();
  try {
    const result = await connection.stream(patientQuery());
    let batch: PatientRecord[] = [];
    let currentId: string | null = null;
    let current: FhirResource[] = [];
    for (;;) {
      const chunk = await result.fetchChunk();
      if (!chunk || chunk.rowCount === 0) break;
      const ids = chunk.getColumnValues(0);
      const texts = chunk.getColumnValues(1);
      for (let i = 0; i < ids.length; i++) {
        const id = String(ids[i]);
        if (id !== currentId) {
          if (currentId !== null) {
            batch.push({ patientId: currentId, resources: current });
            if (batch.length >= chunkSize) {
              yield batch;
              batch = [];
            }
          }
          currentId = id;
          current = [];
        }
        current.push(JSON.parse(String(texts[i])) as FhirResource);
      }
    }
    if (currentId !== null) batch.push({ patientId: currentId, resources: current });
    if (batch.length > 0) yield batch;
  } catch (error) {
    if (error instanceof CairnError) throw error;
    throw new CairnError('WAREHOUSE_FAILED', `Streaming patients from ${warehouse.path} failed: ${(error as Error).message}`, { cause: error });
  } finally {
    connection.closeSync();
  }
}
