/**
 * Extraction of the query columns from FHIR R4 JSON, done inside DuckDB: one multi-path
 * json_extract_string per row parses each resource once in C++, which is several times faster
 * than JSON.parse plus per-value appends from JavaScript. The full resource is always stored too,
 * so these only cover what queries filter on.
 */

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

/**
 * pathList renders paths as a DuckDB list of JSON Pointers (`$.code.coding[0].system` becomes
 * `/code/coding/0/system`): same values, and DuckDB looks pointers up about 15% faster.
 */
function pathList(paths: readonly string[]): string {
  return `[${paths.map((path) => `'${path.slice(1).replace(/\[(\d+)\]/g, '.$1').replaceAll('.', '/')}'`).join(', ')}]`;
}

/** PathRefs hands out `x[i]` for a path's value and remembers the paths asked for, in list order. */
class PathRefs {
  readonly used: PathName[] = [];

  v = (name: PathName): string => {
    if (!this.used.includes(name)) this.used.push(name);
    return `x[${this.used.indexOf(name) + 1}]`;
  };
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

const PATIENT_REF = `'(?:^|/)Patient/([A-Za-z0-9.-]{1,64})(?:/_history/[^/]*)?$'`;

type PathRef = (name: PathName) => string;
const CODE_PAIRS: [PathName, PathName][] = [['codeSystem', 'code'], ['medSystem', 'medCode'], ['vaccineSystem', 'vaccineCode'], ['typeListSystem', 'typeListCode'], ['typeSystem', 'typeCode']];
const START: PathName[] = ['effectiveDateTime', 'effectiveInstant', 'effectiveStart', 'performedDateTime', 'performedStart', 'occurrenceDateTime', 'occurrenceStart', 'onsetDateTime', 'onsetStart', 'periodStart', 'authoredOn', 'whenHandedOver', 'whenPrepared', 'dateAsserted', 'recordedDate', 'issued', 'date', 'created', 'birthDate'];
const END: PathName[] = ['effectiveEnd', 'performedEnd', 'occurrenceEnd', 'abatementDateTime', 'abatementEnd', 'periodEnd', 'deceasedDateTime'];

/**
 * COLUMN_SQL gives, per extracted column (named as in schema.ts), its SQL expression over the path
 * values read through `v` (see {@link resourceSelect}).
 */
const COLUMN_SQL: Readonly<Record<string, (v: PathRef) => string>> = {
  // The usual `Patient/<id>` is checked first: a match without a capture group is several times
  // cheaper for RE2, and gives the same id as the general pattern.
  patient_id: (v) => {
    const ref = `COALESCE(${v('subject')}, ${v('patient')}, ${v('beneficiary')})`;
    return `CASE WHEN ${v('resourceType')} = 'Patient' THEN ${v('id')}
      WHEN regexp_full_match(${ref}, 'Patient/[A-Za-z0-9.-]{1,64}') THEN substr(${ref}, 9)
      ELSE NULLIF(regexp_extract(${ref}, ${PATIENT_REF}, 1), '') END`;
  },
  status: (v) => `CASE WHEN ${v('verification')} = 'entered-in-error' THEN 'entered-in-error'
      ELSE COALESCE(${v('status')}, ${v('clinical')}, CASE ${v('active')} WHEN 'true' THEN 'active' WHEN 'false' THEN 'inactive' END) END`,
  code_system: (v) => `CASE ${CODE_PAIRS.map(([s, c]) => `WHEN ${v(c)} IS NOT NULL THEN ${v(s)}`).join(' ')} END`,
  code: (v) => `COALESCE(${CODE_PAIRS.map(([, c]) => v(c)).join(', ')})`,
  effective_start: (v) => `fhir_ts(COALESCE(${START.map((n) => v(n)).join(', ')}))`,
  effective_end: (v) => `fhir_ts(COALESCE(${END.map((n) => v(n)).join(', ')}))`,
  gender: (v) => v('gender'),
  birth_date: (v) => `TRY_CAST(fhir_ts(${v('birthDate')}) AS DATE)`,
  deceased: (v) => `CASE WHEN ${v('deceasedDateTime')} IS NOT NULL THEN true ELSE TRY_CAST(${v('deceasedBoolean')} AS BOOLEAN) END`,
  category: (v) => v('category'),
  value_number: (v) => `TRY_CAST(${v('valueNumber')} AS DOUBLE)`,
  value_unit: (v) => `COALESCE(${v('valueCode')}, ${v('valueUnit')})`,
};

/** KEY_PATHS are what deciding needs: identity and version (a small list parses much faster). */
const KEY_PATHS = ['$.resourceType', '$.id', '$.meta.lastUpdated', '$.meta.versionId'];

/**
 * keySelect returns a SELECT over `raw` (any columns, including `text`) that adds what deciding needs,
 * without the query columns: `resource_type`, `id`, `lu` (meta.lastUpdated as UTC), `vn` (numeric
 * versionId), `version_id`, `h` (a hash of the text, which identifies the line when the file is
 * read again and tells whether a stored resource changed) and `problem`, the reason the text is
 * refused (null when it is a storable resource). Any text is accepted: invalid JSON is a problem.
 */
export function keySelect(raw: string): string {
  return `SELECT *, k[1] AS resource_type, k[2] AS id, fhir_ts(k[3]) AS lu, k[4] AS version_id,
      TRY_CAST(k[4] AS BIGINT) AS vn, hash(text) AS h,
      CASE
        WHEN k IS NULL THEN 'not JSON'
        WHEN k[1] IS NULL THEN 'not a FHIR resource: resourceType is missing'
        WHEN NOT regexp_full_match(k[1], '[A-Z][A-Za-z]{1,63}') THEN 'not a FHIR resource: resourceType is not a type name'
        WHEN k[2] IS NULL OR k[2] = '' THEN k[1] || ' has no id'
        WHEN NOT regexp_matches(k[2], ${FHIR_ID_SQL}) THEN k[1] || ' id is not a valid FHIR id'
      END AS problem
    FROM (SELECT *, TRY(json_extract_string(text, ${pathList(KEY_PATHS)})) AS k FROM ${raw})`;
}

/**
 * resourceSelect returns a SELECT over `raw` (any columns, including `text`) that adds the columns
 * of a resource table that come from the JSON (see schema.ts): `resource_type`, `id`,
 * `last_updated`, `version_id` and the query `columns` asked for (default: every one), extracting
 * only the paths those need. Only for texts {@link keySelect} accepted: without the TRY that invalid
 * JSON needs, extracting is about a third cheaper.
 */
export function resourceSelect(raw: string, columns?: readonly string[]): string {
  const refs = new PathRefs();
  const keys = `${refs.v('resourceType')} AS resource_type, ${refs.v('id')} AS id,
      fhir_ts(${refs.v('lastUpdated')}) AS last_updated, ${refs.v('versionId')} AS version_id`;
  const wanted = Object.entries(COLUMN_SQL).filter(([name]) => !columns || columns.includes(name));
  const extracted = wanted.map(([name, sql]) => `${sql(refs.v)} AS ${name}`).join(',\n      ');
  return `SELECT *, ${keys}, ${extracted}
    FROM (SELECT *, json_extract_string(text, ${pathList(refs.used.map((name) => PATHS[name]))}) AS x FROM ${raw})`;
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
