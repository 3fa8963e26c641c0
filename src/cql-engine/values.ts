import { Code, Concept, Date as CqlDate, DateTime, Interval, Quantity, Ratio } from 'cql-execution';

/** A CQL result in plain JSON: what rules' conditions, card text and tests see. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * toJsonValue converts a cql-execution result to plain JSON: dates and date-times as ISO strings
 * (keeping their precision), quantities as `{value, unit}`, codes and concepts as FHIR-shaped
 * objects, intervals as `{low, high, lowClosed, highClosed}`, FHIR records as their resource JSON.
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
    const record = value as { _json?: unknown };
    // cql-exec-fhir records keep the resource (or element) they wrap in `_json`.
    if (record._json !== undefined) return toJsonValue(record._json);
    const out: Record<string, JsonValue> = {};
    for (const [key, field] of Object.entries(value)) out[key] = toJsonValue(field);
    return out;
  }
  return null;
}

function compact(object: Record<string, JsonValue | undefined>): Record<string, JsonValue> {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined && v !== null)) as Record<string, JsonValue>;
}
