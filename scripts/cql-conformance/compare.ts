/**
 * Compares a cql-execution result with the value of the test's expected-output expression.
 *
 * The comparison is our own, written to the CQL spec rather than delegated to the engine under
 * test, so an engine bug in `=` cannot make a wrong result pass. It is "same value" in the sense
 * a conformance test needs: null matches only null (not CQL's null-propagating `=`), lists and
 * tuples compare element by element, temporal values must agree on precision and every field,
 * and decimals compare at CQL's decimal scale of 8 (cql-execution holds Decimal as a JS double,
 * so digits past the 8th are representation noise, not results).
 *
 * Where CQL equality itself looks through representation, so does this: interval bounds are
 * compared closed (Interval[1, 4) is Interval[1, 3]), a Date equals a DateTime of day precision
 * (implicit conversion), and an uncertainty equals the closed interval the tests write it as.
 */

/** DECIMAL_SCALE is the CQL Decimal scale (spec: 28 digits of precision, 8 of scale). */
const DECIMAL_SCALE = 8;

interface TemporalLike {
  readonly isDate?: boolean;
  readonly isDateTime?: boolean;
  isTime?(): boolean;
  readonly year: number | null;
  readonly month: number | null;
  readonly day: number | null;
  readonly hour?: number | null;
  readonly minute?: number | null;
  readonly second?: number | null;
  readonly millisecond?: number | null;
  readonly timezoneOffset?: number | null;
}

type Kind =
  | 'null'
  | 'boolean'
  | 'number'
  | 'long'
  | 'string'
  | 'list'
  | 'interval'
  | 'date'
  | 'datetime'
  | 'time'
  | 'quantity'
  | 'ratio'
  | 'code'
  | 'concept'
  | 'uncertainty'
  | 'tuple'
  | 'other';

function flag(value: object, name: string): boolean {
  return (value as Record<string, unknown>)[name] === true;
}

function kindOf(value: unknown): Kind {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return 'boolean';
  if (typeof value === 'number') return 'number';
  if (typeof value === 'bigint') return 'long';
  if (typeof value === 'string') return 'string';
  if (Array.isArray(value)) return 'list';
  if (typeof value !== 'object') return 'other';
  if (flag(value, 'isInterval')) return 'interval';
  if (flag(value, 'isQuantity')) return 'quantity';
  if (flag(value, 'isRatio')) return 'ratio';
  if (flag(value, 'isCode')) return 'code';
  if (flag(value, 'isConcept')) return 'concept';
  if (flag(value, 'isUncertainty')) return 'uncertainty';
  if (flag(value, 'isDate')) return 'date';
  if (flag(value, 'isDateTime')) return (value as TemporalLike).isTime?.() ? 'time' : 'datetime';
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) return 'tuple';
  return 'other';
}

function field(value: unknown, name: string): unknown {
  return (value as Record<string, unknown>)[name];
}

/** decimalsEqual compares two numbers at CQL decimal scale; integers compare exactly. */
export function decimalsEqual(a: number, b: number): boolean {
  if (a === b) return true;
  if (!Number.isFinite(a) || !Number.isFinite(b)) return false;
  if (Math.abs(a) >= 1e12 || Math.abs(b) >= 1e12) {
    // Beyond ~1e12 a double has fewer than 8 fractional digits; compare at the double's precision.
    return Math.abs(a - b) <= Math.max(Math.abs(a), Math.abs(b)) * 1e-15;
  }
  return a.toFixed(DECIMAL_SCALE) === b.toFixed(DECIMAL_SCALE);
}

const TEMPORAL_FIELDS = ['year', 'month', 'day', 'hour', 'minute', 'second', 'millisecond'] as const;

function compareTemporal(actual: TemporalLike, expected: TemporalLike, at: string): string | null {
  for (const name of TEMPORAL_FIELDS) {
    const a = actual[name] ?? null;
    const e = expected[name] ?? null;
    if (a !== e) return `${at}: ${name} is ${String(a)}, expected ${String(e)}`;
  }
  const aZone = actual.timezoneOffset ?? null;
  const eZone = expected.timezoneOffset ?? null;
  if (aZone !== eZone) return `${at}: timezone offset is ${String(aZone)}, expected ${String(eZone)}`;
  return null;
}

function normalizeUnit(unit: unknown): string {
  return unit === undefined || unit === null || unit === '' ? '1' : String(unit);
}

function compareQuantity(actual: unknown, expected: unknown, at: string): string | null {
  const aUnit = normalizeUnit(field(actual, 'unit'));
  const eUnit = normalizeUnit(field(expected, 'unit'));
  if (aUnit !== eUnit) return `${at}: unit is '${aUnit}', expected '${eUnit}'`;
  return compareAt(field(actual, 'value'), field(expected, 'value'), `${at}.value`, true);
}

function compareList(actual: readonly unknown[], expected: readonly unknown[], at: string, ordered: boolean): string | null {
  if (actual.length !== expected.length) return `${at}: list has ${actual.length} elements, expected ${expected.length}`;
  if (ordered) {
    for (let i = 0; i < actual.length; i++) {
      const problem = compareAt(actual[i], expected[i], `${at}[${i}]`, true);
      if (problem) return problem;
    }
    return null;
  }
  const unmatched = [...actual];
  for (let i = 0; i < expected.length; i++) {
    const match = unmatched.findIndex((a) => compareAt(a, expected[i], at, false) === null);
    if (match < 0) return `${at}: expected element [${i}] ${formatValue(expected[i])} is missing`;
    unmatched.splice(match, 1);
  }
  return null;
}

function compareTuple(actual: object, expected: object, at: string, ordered: boolean): string | null {
  // An absent element and an element whose value is null are the same in a CQL tuple.
  const keys = new Set([...Object.keys(actual), ...Object.keys(expected)]);
  for (const key of [...keys].sort()) {
    const problem = compareAt(field(actual, key), field(expected, key), `${at}.${key}`, ordered);
    if (problem) return problem;
  }
  return null;
}

function compareFields(actual: unknown, expected: unknown, names: readonly string[], at: string): string | null {
  for (const name of names) {
    const problem = compareAt(field(actual, name), field(expected, name), `${at}.${name}`, true);
    if (problem) return problem;
  }
  return null;
}

/**
 * closedCandidates returns the closed-bound equivalents of one interval bound: an open bound is
 * replaced by the successor (low) or predecessor (high) of its value (CQL §Interval Operators,
 * Equal). A JS number does not say whether it is an Integer or a Decimal, so an integral open
 * bound gets both steps, 1 and 10^-8.
 */
function closedCandidates(interval: unknown, side: 'low' | 'high'): unknown[] {
  const value = field(interval, side);
  if (field(interval, `${side}Closed`) === true || value === null || value === undefined) return [value];
  const direction = side === 'low' ? 1 : -1;
  const stepNumber = (n: number): number[] =>
    (Number.isInteger(n) ? [1, 10 ** -DECIMAL_SCALE] : [10 ** -DECIMAL_SCALE]).map((step) => n + direction * step);
  switch (kindOf(value)) {
    case 'number':
      return stepNumber(value as number);
    case 'quantity': {
      const unit = field(value, 'unit');
      return stepNumber(Number(field(value, 'value'))).map((v) => ({ isQuantity: true, value: v, unit }));
    }
    case 'date':
    case 'datetime':
    case 'time': {
      // Successor/predecessor at the value's own precision is datatype arithmetic, not an operator under test.
      const step = field(value, side === 'low' ? 'successor' : 'predecessor');
      return typeof step === 'function' ? [step.call(value) as unknown] : [];
    }
    default:
      return [];
  }
}

function compareInterval(actual: unknown, expected: unknown, at: string): string | null {
  const sameClosure = field(actual, 'lowClosed') === field(expected, 'lowClosed') && field(actual, 'highClosed') === field(expected, 'highClosed');
  if (sameClosure) return compareFields(actual, expected, ['low', 'high'], at);
  for (const side of ['low', 'high'] as const) {
    if (field(actual, `${side}Closed`) === field(expected, `${side}Closed`)) {
      const problem = compareAt(field(actual, side), field(expected, side), `${at}.${side}`, true);
      if (problem) return problem;
      continue;
    }
    const actualBounds = closedCandidates(actual, side);
    const expectedBounds = closedCandidates(expected, side);
    const same = actualBounds.some((a) => expectedBounds.some((e) => compareAt(a, e, at, true) === null));
    if (!same) {
      return `${at}: ${formatValue(actual)} does not have the ${side} bound of ${formatValue(expected)}`;
    }
  }
  return null;
}

/** dayPrecision is true for a DateTime with no time components (what a Date converts to). */
function dayPrecision(value: TemporalLike): boolean {
  return [value.hour, value.minute, value.second, value.millisecond].every((v) => v === null || v === undefined);
}

/**
 * compareMixed handles pairs of different kinds that CQL still calls equal: a Date against a
 * DateTime of day precision or coarser (implicit Date-to-DateTime conversion), and an uncertainty
 * against the closed interval the tests write it as. Returns undefined when no rule applies.
 */
function compareMixed(actual: unknown, expected: unknown, aKind: Kind, eKind: Kind, at: string): string | null | undefined {
  const kinds = new Set([aKind, eKind]);
  if (kinds.has('date') && kinds.has('datetime')) {
    const dateTime = (aKind === 'datetime' ? actual : expected) as TemporalLike;
    if (!dayPrecision(dateTime)) return undefined;
    for (const name of ['year', 'month', 'day'] as const) {
      const a = (actual as TemporalLike)[name] ?? null;
      const e = (expected as TemporalLike)[name] ?? null;
      if (a !== e) return `${at}: ${name} is ${String(a)}, expected ${String(e)}`;
    }
    return null;
  }
  if (kinds.has('uncertainty') && kinds.has('interval')) {
    const interval = aKind === 'interval' ? actual : expected;
    if (field(interval, 'lowClosed') !== true || field(interval, 'highClosed') !== true) return undefined;
    return compareFields(actual, expected, ['low', 'high'], at);
  }
  return undefined;
}

function compareAt(actual: unknown, expected: unknown, at: string, ordered: boolean): string | null {
  const aKind = kindOf(actual);
  const eKind = kindOf(expected);
  if (aKind !== eKind) {
    const mixed = compareMixed(actual, expected, aKind, eKind, at);
    if (mixed !== undefined) return mixed;
    return `${at}: got ${aKind} ${formatValue(actual)}, expected ${eKind} ${formatValue(expected)}`;
  }
  switch (aKind) {
    case 'null':
      return null;
    case 'boolean':
    case 'string':
    case 'long':
      return actual === expected ? null : `${at}: got ${formatValue(actual)}, expected ${formatValue(expected)}`;
    case 'number':
      return decimalsEqual(actual as number, expected as number)
        ? null
        : `${at}: got ${formatValue(actual)}, expected ${formatValue(expected)}`;
    case 'list':
      return compareList(actual as unknown[], expected as unknown[], at, ordered);
    case 'interval':
      return compareInterval(actual, expected, at);
    case 'date':
    case 'datetime':
    case 'time':
      return compareTemporal(actual as TemporalLike, expected as TemporalLike, at);
    case 'quantity':
      return compareQuantity(actual, expected, at);
    case 'ratio':
      return compareQuantity(field(actual, 'numerator'), field(expected, 'numerator'), `${at}.numerator`) ??
        compareQuantity(field(actual, 'denominator'), field(expected, 'denominator'), `${at}.denominator`);
    case 'code':
      return compareFields(actual, expected, ['code', 'system', 'version', 'display'], at);
    case 'concept':
      return compareFields(actual, expected, ['codes', 'display'], at);
    case 'uncertainty':
      return compareFields(actual, expected, ['low', 'high'], at);
    case 'tuple':
      return compareTuple(actual as object, expected as object, at, ordered);
    case 'other':
      return `${at}: cannot compare values of unknown type ${formatValue(actual)}`;
  }
}

/**
 * compareResults returns null when `actual` is the same CQL value as `expected`, otherwise a
 * one-line description of the first difference. With `ordered: false`, lists may differ in order.
 */
export function compareResults(actual: unknown, expected: unknown, options: { ordered: boolean } = { ordered: true }): string | null {
  return compareAt(actual, expected, 'result', options.ordered);
}

/** formatValue renders a cql-execution value as CQL-like text for failure reports. */
export function formatValue(value: unknown): string {
  switch (kindOf(value)) {
    case 'null':
      return 'null';
    case 'boolean':
      return String(value);
    case 'number':
      return String(value);
    case 'long':
      return `${String(value)}L`;
    case 'string':
      return `'${String(value).replace(/'/g, "\\'")}'`;
    case 'list':
      return `{ ${(value as unknown[]).map(formatValue).join(', ')} }`;
    case 'interval': {
      const open = field(value, 'lowClosed') ? '[' : '(';
      const close = field(value, 'highClosed') ? ']' : ')';
      return `Interval${open}${formatValue(field(value, 'low'))}, ${formatValue(field(value, 'high'))}${close}`;
    }
    case 'date':
    case 'time':
      return `@${String(value)}`;
    case 'datetime': {
      // cql-execution prints a DateTime of day precision or coarser without the 'T' CQL needs.
      const text = String(value);
      return text.includes('T') ? `@${text}` : `@${text}T`;
    }
    case 'quantity':
      return `${formatValue(field(value, 'value'))} '${normalizeUnit(field(value, 'unit'))}'`;
    case 'ratio':
      return `${formatValue(field(value, 'numerator'))}:${formatValue(field(value, 'denominator'))}`;
    case 'code':
      return `Code { code: ${formatValue(field(value, 'code'))}, system: ${formatValue(field(value, 'system'))} }`;
    case 'concept':
      return `Concept { codes: ${formatValue(field(value, 'codes'))} }`;
    case 'uncertainty':
      return `Uncertainty[${formatValue(field(value, 'low'))}, ${formatValue(field(value, 'high'))}]`;
    case 'tuple':
      return `Tuple { ${Object.entries(value as object)
        .map(([k, v]) => `${k}: ${formatValue(v)}`)
        .join(', ')} }`;
    case 'other':
      try {
        return JSON.stringify(value) ?? String(value);
      } catch {
        return String(value);
      }
  }
}
