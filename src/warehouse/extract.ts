/**
 * Extraction of the query columns from FHIR R4 JSON, done inside DuckDB: one multi-path
 * json_extract_string per row parses each resource once in C++, which is several times faster
 * than JSON.parse plus per-value appends from JavaScript. The full resource is always stored too,
 * so these only cover what queries filter on.
 */

/** FHIR_ID matches a valid FHIR id ({@link https://hl7.org/fhir/R4/datatypes.html#id}). */
export const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;
const FHIR_ID_SQL = `'^[A-Za-z0-9.-]{1,64}$'`;

/** PATHS are the JSON paths read from every resource, by name; order fixes the list index. */
const PATHS = {
  resourceType: '$.resourceType',
  id: '$.id',
  lastUpdated: '$.meta.lastUpdated',
  versionId: '$.meta.versionId',
  subject: '$.subject.reference',
  patient: '$.patient.reference',
  beneficiary: '$.beneficiary.reference',
  status: '$.status',
  verification: '$.verificationStatus.coding[0].code',
  clinical: '$.clinicalStatus.coding[0].code',
  active: '$.active',
  codeSystem: '$.code.coding[0].system',
  code: '$.code.coding[0].code',
  medSystem: '$.medicationCodeableConcept.coding[0].system',
  medCode: '$.medicationCodeableConcept.coding[0].code',
  vaccineSystem: '$.vaccineCode.coding[0].system',
  vaccineCode: '$.vaccineCode.coding[0].code',
  typeListSystem: '$.type[0].coding[0].system',
  typeListCode: '$.type[0].coding[0].code',
  typeSystem: '$.type.coding[0].system',
  typeCode: '$.type.coding[0].code',
  effectiveDateTime: '$.effectiveDateTime',
  effectiveInstant: '$.effectiveInstant',
  effectiveStart: '$.effectivePeriod.start',
  effectiveEnd: '$.effectivePeriod.end',
  performedDateTime: '$.performedDateTime',
  performedStart: '$.performedPeriod.start',
  performedEnd: '$.performedPeriod.end',
  occurrenceDateTime: '$.occurrenceDateTime',
  occurrenceStart: '$.occurrencePeriod.start',
  occurrenceEnd: '$.occurrencePeriod.end',
  onsetDateTime: '$.onsetDateTime',
  onsetStart: '$.onsetPeriod.start',
  abatementDateTime: '$.abatementDateTime',
  abatementEnd: '$.abatementPeriod.end',
  periodStart: '$.period.start',
  periodEnd: '$.period.end',
  authoredOn: '$.authoredOn',
  whenHandedOver: '$.whenHandedOver',
  whenPrepared: '$.whenPrepared',
  dateAsserted: '$.dateAsserted',
  recordedDate: '$.recordedDate',
  issued: '$.issued',
  date: '$.date',
  created: '$.created',
  birthDate: '$.birthDate',
  deceasedBoolean: '$.deceasedBoolean',
  deceasedDateTime: '$.deceasedDateTime',
  gender: '$.gender',
  category: '$.category[0].coding[0].code',
  valueNumber: '$.valueQuantity.value',
  valueCode: '$.valueQuantity.code',
  valueUnit: '$.valueQuantity.unit',
} as const;

type PathName = keyof typeof PATHS;
const NAMES = Object.keys(PATHS) as PathName[];

function pathList(names: readonly PathName[]): string {
  return `[${names.map((name) => `'${PATHS[name]}'`).join(', ')}]`;
}

/** v returns the SQL for the extracted value `name` from list column `list`. */
function v(name: PathName): string {
  return `x[${NAMES.indexOf(name) + 1}]`;
}

/**
 * MACROS defines fhir_ts: a FHIR date/dateTime/instant as a UTC TIMESTAMP (partial dates take day 1,
 * no offset reads as UTC). The offset is applied by arithmetic rather than a TIMESTAMPTZ cast, which
 * is several times slower (ICU) and would depend on the session time zone.
 */
export const MACROS = [
  `CREATE OR REPLACE TEMP MACRO fhir_ts(t) AS CASE
     WHEN t IS NULL THEN NULL
     WHEN length(t) = 4 THEN TRY_CAST(t || '-01-01' AS TIMESTAMP)
     WHEN length(t) = 7 THEN TRY_CAST(t || '-01' AS TIMESTAMP)
     WHEN length(t) = 10 THEN TRY_CAST(t AS TIMESTAMP)
     WHEN NOT regexp_matches(t, '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?(Z|[+-]\\d\\d:\\d\\d)?$') THEN NULL
     WHEN suffix(t, 'Z') OR substr(t, length(t) - 5, 1) NOT IN ('+', '-') THEN TRY_CAST(rtrim(t, 'Z') AS TIMESTAMP)
     ELSE TRY_CAST(left(t, -6) AS TIMESTAMP)
       - (CASE substr(t, length(t) - 5, 1) WHEN '-' THEN -1 ELSE 1 END)
       * (TRY_CAST(substr(t, length(t) - 4, 2) AS INTEGER) * 60 + TRY_CAST(substr(t, length(t) - 1, 2) AS INTEGER)) * INTERVAL 1 MINUTE END`,
];

/**
 * stagingSelect returns a SELECT over `raw` (seq, source, line, path, text) that parses each text
 * once (into a list `x` of path values), and yields every extracted column, the identity and version
 * keys, and the reason a row is refused (`problem`, null when the row is a storable resource).
 */
export function stagingSelect(raw: string): string {
  const columns = Object.entries(columnExpressions()).map(([name, sql]) => `${sql} AS ${name}`).join(',\n      ');
  return `SELECT seq, source, line, path, text, ${columns}, ${v('resourceType')} AS resource_type, ${v('id')} AS id,
      fhir_ts(${v('lastUpdated')}) AS lu, ${v('versionId')} AS version_id, TRY_CAST(${v('versionId')} AS BIGINT) AS vn,
      CASE
        WHEN x IS NULL THEN 'not JSON'
        WHEN ${v('resourceType')} IS NULL THEN 'not a FHIR resource: resourceType is missing'
        WHEN NOT regexp_full_match(${v('resourceType')}, '[A-Z][A-Za-z]{1,63}') THEN 'not a FHIR resource: resourceType is not a type name'
        WHEN ${v('id')} IS NULL OR ${v('id')} = '' THEN ${v('resourceType')} || ' has no id'
        WHEN NOT regexp_matches(${v('id')}, ${FHIR_ID_SQL}) THEN ${v('resourceType')} || ' id is not a valid FHIR id'
      END AS problem
    FROM (SELECT *, TRY(json_extract_string(text, ${pathList(NAMES)})) AS x FROM ${raw})`;
}

const PATIENT_REF = `'(?:^|/)Patient/([A-Za-z0-9.-]{1,64})(?:/_history/[^/]*)?$'`;

/**
 * columnExpressions returns SQL expressions (aliased with the table column names, see schema.ts) for
 * every extracted column, reading list column `x` produced by {@link stagingSelect}.
 */
export function columnExpressions(): Record<string, string> {
  const codePairs: [PathName, PathName][] = [['codeSystem', 'code'], ['medSystem', 'medCode'], ['vaccineSystem', 'vaccineCode'], ['typeListSystem', 'typeListCode'], ['typeSystem', 'typeCode']];
  const start: PathName[] = ['effectiveDateTime', 'effectiveInstant', 'effectiveStart', 'performedDateTime', 'performedStart', 'occurrenceDateTime', 'occurrenceStart', 'onsetDateTime', 'onsetStart', 'periodStart', 'authoredOn', 'whenHandedOver', 'whenPrepared', 'dateAsserted', 'recordedDate', 'issued', 'date', 'created', 'birthDate'];
  const end: PathName[] = ['effectiveEnd', 'performedEnd', 'occurrenceEnd', 'abatementDateTime', 'abatementEnd', 'periodEnd', 'deceasedDateTime'];
  const patientRef = `NULLIF(regexp_extract(COALESCE(${v('subject')}, ${v('patient')}, ${v('beneficiary')}), ${PATIENT_REF}, 1), '')`;
  return {
    patient_id: `CASE WHEN ${v('resourceType')} = 'Patient' THEN ${v('id')} ELSE ${patientRef} END`,
    status: `CASE WHEN ${v('verification')} = 'entered-in-error' THEN 'entered-in-error'
      ELSE COALESCE(${v('status')}, ${v('clinical')}, CASE ${v('active')} WHEN 'true' THEN 'active' WHEN 'false' THEN 'inactive' END) END`,
    code_system: `CASE ${codePairs.map(([s, c]) => `WHEN ${v(c)} IS NOT NULL THEN ${v(s)}`).join(' ')} END`,
    code: `COALESCE(${codePairs.map(([, c]) => v(c)).join(', ')})`,
    effective_start: `fhir_ts(COALESCE(${start.map((n) => v(n)).join(', ')}))`,
    effective_end: `fhir_ts(COALESCE(${end.map((n) => v(n)).join(', ')}))`,
    gender: v('gender'),
    birth_date: `TRY_CAST(fhir_ts(${v('birthDate')}) AS DATE)`,
    deceased: `CASE WHEN ${v('deceasedDateTime')} IS NOT NULL THEN true ELSE TRY_CAST(${v('deceasedBoolean')} AS BOOLEAN) END`,
    category: v('category'),
    value_number: `TRY_CAST(${v('valueNumber')} AS DOUBLE)`,
    value_unit: `COALESCE(${v('valueCode')}, ${v('valueUnit')})`,
  };
}

/** normalizeDateTime turns a FHIR date/dateTime/instant into UTC `YYYY-MM-DD HH:MM:SS.sss`, or null. */
export function normalizeDateTime(value: string): string | null {
  const dateOnly = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$/.exec(value);
  if (dateOnly) return `${dateOnly[1]}-${dateOnly[2] ?? '01'}-${dateOnly[3] ?? '01'} 00:00:00.000`;
  const hasZone = /(Z|[+-]\d{2}:\d{2})$/.test(value);
  const ms = Date.parse(hasZone ? value : `${value}Z`);
  if (Number.isNaN(ms)) return null;
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
}
