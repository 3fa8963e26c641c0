import { queryRows, type Warehouse } from './database.ts';
import type { FhirResource } from './read.ts';
import { RESOURCE_TABLES, tableFor } from './schema.ts';

/**
 * readPatientResources returns one patient's stored resources of the given types (all types when
 * the list is empty): the Patient first, then every resource that references the patient. It backs
 * the CDS Hooks service's fallback when an EHR sent no prefetch for some data.
 */
export async function readPatientResources(warehouse: Warehouse, patientId: string, resourceTypes: readonly string[] = []): Promise<FhirResource[]> {
  const tables = resourceTypes.length === 0 ? RESOURCE_TABLES.filter((t) => t !== 'patient') : [...new Set(resourceTypes.filter((t) => t !== 'Patient').map(tableFor))];
  const selects = [`SELECT 0 AS rank, resource FROM patient WHERE id = $1`, ...tables.map((table) => `SELECT 1, resource FROM ${table} WHERE patient_id = $1`)];
  const rows = await queryRows(warehouse.connection, `${selects.join(' UNION ALL ')} ORDER BY 1`, [patientId]);
  const wanted = new Set(resourceTypes);
  return rows
    .map((row) => JSON.parse(String(row.resource)) as FhirResource)
    .filter((r) => wanted.size === 0 || r.resourceType === 'Patient' || wanted.has(r.resourceType));
}
