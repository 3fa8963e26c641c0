import { Code, CodeSystem, Concept, Date as CqlDate, DateTime, Interval, Quantity, Ratio, ValueSet } from 'cql-execution';

/**
 * structural renders a cql-execution result as JSON-safe data that keeps every distinction that
 * matters for "same result": null vs undefined, CQL datatype (DateTime vs Date, with precision),
 * interval closedness, and for FHIR records the model class they are read as plus the exact JSON
 * they wrap. Used by the equivalence tests and the bench to compare two data layers' results.
 */
export function structural(value: unknown): unknown {
  if (value === undefined) return { $: 'undefined' };
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'number') return Number.isNaN(value) ? { $: 'NaN' } : value;
  if (Array.isArray(value)) return value.map(structural);
  if (value instanceof DateTime) return { $: 'DateTime', value: value.toString() };
  if (value instanceof CqlDate) return { $: 'Date', value: value.toString() };
  if (value instanceof Quantity) return { $: 'Quantity', value: value.value, unit: value.unit };
  if (value instanceof Ratio) return { $: 'Ratio', numerator: structural(value.numerator), denominator: structural(value.denominator) };
  if (value instanceof Code) return { $: 'Code', code: value.code, system: value.system, version: value.version, display: value.display };
  if (value instanceof Concept) return { $: 'Concept', codes: structural(value.codes), display: value.display };
  if (value instanceof ValueSet) return { $: 'ValueSet', oid: value.oid, version: value.version, codes: structural(value.codes) };
  if (value instanceof CodeSystem) return { $: 'CodeSystem', id: value.id, version: value.version };
  if (value instanceof Interval) {
    return { $: 'Interval', low: structural(value.low), high: structural(value.high), lowClosed: value.lowClosed, highClosed: value.highClosed };
  }
  if (typeof value === 'object') {
    const record = value as { _json?: unknown; getTypeInfo?: () => { name?: unknown } | undefined };
    if (typeof record.getTypeInfo === 'function') {
      // cql-exec-fhir records: the class they are read as, and the JSON they wrap.
      return { $: 'FHIR', type: record.getTypeInfo()?.name, json: record._json === undefined ? { $: 'undefined' } : record._json };
    }
    const fields = Object.keys(value).sort();
    return { $: (value as object).constructor?.name ?? 'Object', ...Object.fromEntries(fields.map((k) => [k, structural((value as Record<string, unknown>)[k])])) };
  }
  return { $: typeof value, value: String(value) };
}

/** sameStructure says whether two results render to the same structure. */
export function sameStructure(a: unknown, b: unknown): boolean {
  return JSON.stringify(structural(a)) === JSON.stringify(structural(b));
}
