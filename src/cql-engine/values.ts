import { Code, Concept, Date as CqlDate, DateTime, Interval, Quantity, Ratio } from 'cql-execution';

/** A CQL result in plain JSON: what rules' conditions, card text and tests see. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * toJsonValue converts a cql-execution result to plain JSON: dates and date-times as ISO strings
 * (keeping their precision), quantities as `{value, unit}`, codes and concepts as FHIR-shaped
 * objects, intervals as `{low, high, lowClosed, highClosed}`, FHIR records as their resource JSON,
 * and FHIR primitive elements (`Patient.id`, `MedicationRequest.status`) as their value, as in FHIR JSON.
 */
export function toJsonValue(value: unknown): JsonValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value instanceof DateTime || value instanceof CqlDate) return value.toString();
  if (value instanceof Quantity) return { value: value.value, unit: value.unit };
  if (value instanceof Ratio) return { numerator: toJsonValue(value.numerator), denominator: toJsonValue(value.denominator) };
  if (value instanceof Code) return compact({ system: value.system, code: value.code, display: value.display, version: value.version });
  if (value instanceof Concept) return compact({ codes: toJsonValue(value.codes), display: value.display });
  if (value instanceof Interval) {
    return { low: toJsonValue(value.low), high: toJsonValue(value.high), lowClosed: value.lowClosed ?? null, highClosed: value.highClosed ?? null };
  }
  if (typeof value === 'object') {
    const record = value as { _json?: unknown; _typeInfo?: ClassInfo; value?: unknown };
    // cql-exec-fhir records keep the resource (or element) they wrap in `_json`; a primitive's is
    // `{ value }`, which card text would show as JSON.
    if (record._json !== undefined) return isFhirPrimitive(record._typeInfo) ? toJsonValue(record.value) : toJsonValue(record._json);
    const out: Record<string, JsonValue> = {};
    for (const [key, field] of Object.entries(value)) out[key] = toJsonValue(field);
    return out;
  }
  return null;
}

/** The part of cql-exec-fhir's class info read here. */
interface ClassInfo {
  findElement(name: string): { readonly typeSpecifier?: { readonly namespace?: string } } | undefined;
}

const primitiveClasses = new WeakMap<ClassInfo, boolean>();

/** A FHIR primitive type (`id`, `dateTime`, `code` and its bindings such as `AdministrativeGender`) is a class whose `value` is a System type. */
function isFhirPrimitive(typeInfo: ClassInfo | undefined): boolean {
  if (typeInfo === undefined || typeof typeInfo.findElement !== 'function') return false;
  let primitive = primitiveClasses.get(typeInfo);
  if (primitive === undefined) {
    primitive = typeInfo.findElement('value')?.typeSpecifier?.namespace === 'System';
    primitiveClasses.set(typeInfo, primitive);
  }
  return primitive;
}

function compact(object: Record<string, JsonValue | undefined>): Record<string, JsonValue> {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined && v !== null)) as Record<string, JsonValue>;
}
