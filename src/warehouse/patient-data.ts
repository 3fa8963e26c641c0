import { MEDICATION_REFERENCE_HOLDERS } from '../domain/medication.ts';
import { queryRows, type Warehouse } from './database.ts';
import type { FhirResource } from './read.ts';
import { RESOURCE_TABLES, tableFor } from './schema.ts';

/** Tables of the resources that may name their drug by reference (`medicationReference`). */
const MEDICATION_HOLDERS = MEDICATION_REFERENCE_HOLDERS.map(tableFor);

/**
 * readPatientResources returns one patient's stored resources of the given types (all types when
 * the list is empty): the Patient first (when stored: its absence says the copy does not know the
 * patient), then every resource that references the patient, then, for `Medication`, the
 * Medications those resources reference and those named in `medicationIds` (a Medication belongs
 * to no patient; a draft order may name one no stored record does). It backs the CDS Hooks
 * service's fallback when an EHR sent no prefetch for some data.
 */
export async function readPatientResources(warehouse: Warehouse, patientId: string, resourceTypes: readonly string[] = [], medicationIds: readonly string[] = []): Promise<FhirResource[]> {
  const all = resourceTypes.length === 0;
  const tables = all ? RESOURCE_TABLES.filter((t) => t !== 'patient') : [...new Set(resourceTypes.filter((t) => t !== 'Patient' && t !== 'Medication').map(tableFor))];
  const references = MEDICATION_HOLDERS.map((table) => `SELECT json_extract_string(resource, '$.medicationReference.reference') FROM ${table} WHERE patient_id = $1`).join(' UNION ALL ');
  // Named ids are parameters ($2...), never SQL text.
  const named = medicationIds.map((_, i) => `$${i + 2}`).join(', ');
  const selects = [
    `SELECT 0 AS rank, resource FROM patient WHERE id = $1`,
    ...tables.map((table) => `SELECT 1, resource FROM ${table} WHERE patient_id = $1`),
    ...(all || resourceTypes.includes('Medication')
      ? [`SELECT 2, resource FROM ${tableFor('Medication')} WHERE resource_type = 'Medication' AND ('Medication/' || id IN (${references})${named ? ` OR id IN (${named})` : ''})`]
      : []),
  ];
  const rows = await queryRows(warehouse.connection, `${selects.join(' UNION ALL ')} ORDER BY 1`, [patientId, ...medicationIds]);
  const wanted = new Set(resourceTypes);
  return rows
    .map((row) => JSON.parse(String(row.resource)) as FhirResource)
    .filter((r) => wanted.size === 0 || r.resourceType === 'Patient' || wanted.has(r.resourceType));
}
