/**
 * The warehouse layout: one table per FHIR resource type we query, a generic table for every other
 * type, plus quarantine, tombstones and an ingest log. docs/warehouse.md documents each column.
 * This module only builds SQL text; database.ts runs it.
 */

/** SCHEMA_VERSION is stored in cairn_meta; bump it with a migration when a column changes. */
export const SCHEMA_VERSION = 1;

/** TYPED_TABLES maps each resource type with its own table to the table name. */
export const TYPED_TABLES: Readonly<Record<string, string>> = Object.freeze({
  Patient: 'patient',
  Encounter: 'encounter',
  Condition: 'condition',
  Observation: 'observation',
  MedicationRequest: 'medication_request',
  MedicationStatement: 'medication_statement',
  MedicationDispense: 'medication_dispense',
  MedicationAdministration: 'medication_administration',
  Procedure: 'procedure',
  Immunization: 'immunization',
  AllergyIntolerance: 'allergy_intolerance',
  DiagnosticReport: 'diagnostic_report',
  ServiceRequest: 'service_request',
  Coverage: 'coverage',
  Practitioner: 'practitioner',
  PractitionerRole: 'practitioner_role',
  Organization: 'organization',
  Location: 'location',
  Device: 'device',
});

/** GENERIC_TABLE keeps every resource whose type has no table of its own, so nothing is dropped. */
export const GENERIC_TABLE = 'other_resource';

/** RESOURCE_TABLES lists every table that holds resources, typed tables first. */
export const RESOURCE_TABLES: readonly string[] = Object.freeze([...Object.values(TYPED_TABLES), GENERIC_TABLE]);

/** tableFor returns the table that stores resources of `resourceType`. */
export function tableFor(resourceType: string): string {
  return TYPED_TABLES[resourceType] ?? GENERIC_TABLE;
}

/**
 * COLUMNS is the column list shared by every resource table, in order. Extra per-type facts
 * (gender, values) are nullable so all tables share one shape and one merge statement.
 */
export const COLUMNS = [
  ['resource_type', 'VARCHAR NOT NULL'],
  ['id', 'VARCHAR NOT NULL'],
  ['patient_id', 'VARCHAR'],
  ['status', 'VARCHAR'],
  ['code_system', 'VARCHAR'],
  ['code', 'VARCHAR'],
  ['effective_start', 'TIMESTAMP'],
  ['effective_end', 'TIMESTAMP'],
  ['last_updated', 'TIMESTAMP'],
  ['version_id', 'VARCHAR'],
  // VARCHAR holding JSON text: DuckDB's JSON functions read it as is; a JSON column would re-parse it on insert.
  // FSST is what DuckDB picks for it anyway; naming it skips trying the others on every row group,
  // about a third of the cost of writing the column (tables created before keep choosing each time).
  ['resource', 'VARCHAR NOT NULL USING COMPRESSION fsst'],
  ['source', 'VARCHAR'],
  ['ingest_run', 'BIGINT'],
] as const;

/** PATIENT_COLUMNS are the extra demographic columns of the patient table. */
export const PATIENT_COLUMNS = [
  ['gender', 'VARCHAR'],
  ['birth_date', 'DATE'],
  ['deceased', 'BOOLEAN'],
] as const;

/** OBSERVATION_COLUMNS are the extra result columns of the observation table. */
export const OBSERVATION_COLUMNS = [
  ['category', 'VARCHAR'],
  ['value_number', 'DOUBLE'],
  ['value_unit', 'VARCHAR'],
] as const;

/** extraColumns returns the type-specific columns of `table`. */
export function extraColumns(table: string): readonly (readonly [string, string])[] {
  if (table === 'patient') return PATIENT_COLUMNS;
  if (table === 'observation') return OBSERVATION_COLUMNS;
  return [];
}

/** columnNames returns every column of `table`, in order. */
export function columnNames(table: string): string[] {
  return [...COLUMNS, ...extraColumns(table)].map(([name]) => name);
}

/** schemaStatements returns idempotent DDL that creates every warehouse table. */
export function schemaStatements(): string[] {
  const statements = [
    `CREATE TABLE IF NOT EXISTS cairn_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS ingest_run (
       run_id BIGINT PRIMARY KEY, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP,
       sources JSON, read BIGINT, loaded BIGINT, replaced BIGINT, unchanged BIGINT,
       skipped BIGINT, deleted BIGINT, quarantined BIGINT)`,
    `CREATE TABLE IF NOT EXISTS quarantine (
       source VARCHAR NOT NULL, line BIGINT, path VARCHAR, reason VARCHAR NOT NULL,
       content VARCHAR, ingest_run BIGINT)`,
    `CREATE TABLE IF NOT EXISTS tombstone (
       resource_type VARCHAR NOT NULL, id VARCHAR NOT NULL, deleted_at TIMESTAMP NOT NULL,
       source VARCHAR, ingest_run BIGINT)`,
  ];
  for (const table of RESOURCE_TABLES) {
    const columns = [...COLUMNS, ...extraColumns(table)].map(([name, type]) => `${name} ${type}`).join(', ');
    statements.push(`CREATE TABLE IF NOT EXISTS ${table} (${columns})`);
  }
  return statements;
}
