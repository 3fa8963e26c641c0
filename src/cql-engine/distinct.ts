import { createRequire } from 'node:module';
import { Code, Concept } from 'cql-execution';
import { recordElementNames } from './fhir-model.ts';

/**
 * De-duplication of CQL lists for cql-execution 3.3.2: the same result as its `toDistinctList`,
 * for the records this engine builds, and fast.
 *
 * Why: every `union`, `distinct` and query `return` (distinct by default) runs `toDistinctList`,
 * which turns each item into an Immutable.js "normalized key" by walking it whole; for a model
 * object it enumerates the object's own properties. A FHIR record's key walked every element of
 * the resource (building each element's record on the way), so a union of two medication-request
 * lists cost more than the retrieves feeding it; and records here keep their element getters on a
 * prototype (fhir-model.ts), which that enumeration would not see.
 *
 * How: each item gets a string key that every item equal to it (by the normalized key) shares: a
 * resource record's type and id; an id-less record's type and its elements' keys; a primitive's
 * value; a list's or tuple's parts; any other CQL value the hash of its normalized key. Items
 * with the same string are then compared exactly (the same object, or part by part, with
 * cql-execution's own comparison for values that hold no records). First occurrences are kept,
 * in order. test/cql-engine/distinct.test.ts checks this against cql-execution on generated lists.
 */

type DistinctList = (list: readonly unknown[]) => unknown[];

const require = createRequire(import.meta.url);
// Loaded through the package's main module first: its internal modules require each other in a cycle.
require('cql-execution');
// cql-execution calls it as `(0, list_1.toDistinctList)(...)` (query.js) and
// `(0, exports.toDistinctList)(...)` (list.js): a lookup on the module's exports at each call.
const listModule = require('cql-execution/lib/elm/list.js') as { toDistinctList: DistinctList };
const { toNormalizedKey } = require('cql-execution/lib/util/immutableUtil.js') as { toNormalizedKey: (value: unknown) => unknown };

/** cql-execution's own implementation: the oracle for values that hold no records. */
export const originalDistinct: DistinctList = listModule.toDistinctList;

/** A model object as cql-execution recognises one (`_typeHierarchy`), as cql-exec-fhir builds it. */
interface RecordLike {
  readonly _json?: { readonly id?: unknown } | null;
  readonly _typeInfo?: { readonly name?: unknown } | null;
  _typeHierarchy(): unknown;
}

function isRecord(value: object): value is RecordLike {
  return typeof (value as Partial<RecordLike>)._typeHierarchy === 'function';
}

function isTuple(value: object): value is Record<string, unknown> {
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || prototype === null;
}

/**
 * A tuple's element names sorted, with their key labels (`"name":`), and the names of the groups
 * anchorOf files such tuples in: by a record element, or by the i-th element's primitive value.
 */
interface TupleShape {
  readonly sorted: readonly string[];
  readonly labels: readonly string[];
  readonly recordSpace: string;
  readonly primitiveSpaces: readonly string[];
}
let lastNames: readonly string[] = [];
let lastShape: TupleShape = { sorted: [], labels: [], recordSpace: '', primitiveSpaces: [] };

/** tupleShape: the last shape seen again (the tuples of one list share theirs) costs no sort. */
function tupleShape(value: object): TupleShape {
  const names = Object.keys(value);
  if (names.length === lastNames.length && names.every((name, i) => name === lastNames[i])) return lastShape;
  const sorted = [...names].sort();
  lastNames = names;
  const signature = sorted.join('\u0000');
  lastShape = { sorted, labels: sorted.map((name) => `${JSON.stringify(name)}:`), recordSpace: `${signature}\u0001r`, primitiveSpaces: sorted.map((_, i) => `${signature}\u0001${i}`) };
  return lastShape;
}

/** keyOf: a string every item equal to `value` (by cql-execution's normalized key) also gets. */
function keyOf(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'string':
      return `s${JSON.stringify(value)}`;
    case 'number':
      // 0 and -0 normalize to equal keys; String() prints both as "0".
      return `n${String(value)}`;
    case 'boolean':
      return value ? 'T' : 'F';
    case 'object':
      break;
    default:
      return `?${typeof value}`;
  }
  if (Array.isArray(value)) return `[${value.map(keyOf).join(',')}]`;
  if (isRecord(value)) {
    const type = String(value._typeInfo?.name ?? '');
    // Equal records have equal ids (an element) and one class; most resources carry an id.
    const id = value._json?.id;
    if (typeof id === 'string') return `r${type}/${JSON.stringify(id)}`;
    const elements = value as unknown as Readonly<Record<string, unknown>>;
    return `r${type}{${recordElementNames(value).map((name) => keyOf(elements[name])).join(',')}}`;
  }
  if (isTuple(value)) {
    const names = tupleShape(value);
    let key = '{';
    for (let i = 0; i < names.sorted.length; i++) key += `${i === 0 ? '' : ','}${names.labels[i] as string}${keyOf(value[names.sorted[i] as string])}`;
    return `${key}}`;
  }
  // Codes and Concepts, often returned by queries: what their normalized keys are built from
  // (a Code's code and system; a Concept's own fields, its codes among them), without building them.
  if (value.constructor === Code) {
    const code = value as Code;
    return `C${JSON.stringify(code.code ?? null)}|${JSON.stringify(code.system ?? null)}`;
  }
  if (value.constructor === Concept) return `K${keyOf((value as Concept).codes)}`;
  // Any other CQL value (DateTime, Interval, Quantity...): equal normalized keys hash alike.
  const normalized = toNormalizedKey(value) as { hashCode?: () => number } | string | number | boolean | null;
  if (typeof normalized === 'object' && normalized !== null && typeof normalized.hashCode === 'function') return `h${normalized.hashCode()}`;
  return `h${keyOf(normalized)}`;
}

/** sameItem: equal by cql-execution's normalized key (nulls equal), reading records element by element. */
function sameItem(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || a === undefined || b === null || b === undefined) return (a ?? null) === (b ?? null);
  if (typeof a !== 'object' || typeof b !== 'object') return originalDistinct([a, b]).length === 1;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => sameItem(item, b[i]));
  }
  if (isRecord(a) || isRecord(b)) {
    if (!isRecord(a) || !isRecord(b) || a._typeInfo?.name !== b._typeInfo?.name || originalDistinct([a._typeHierarchy(), b._typeHierarchy()]).length !== 1) return false;
    const names = recordElementNames(a);
    const others = recordElementNames(b);
    if (names.length !== others.length || names.some((name, i) => name !== others[i])) return false;
    const x = a as unknown as Readonly<Record<string, unknown>>;
    const y = b as unknown as Readonly<Record<string, unknown>>;
    return names.every((name) => sameItem(x[name], y[name]));
  }
  if (isTuple(a) && isTuple(b)) {
    const names = Object.keys(a);
    if (names.length !== Object.keys(b).length) return false;
    return names.every((name) => Object.hasOwn(b, name) && sameItem(a[name], b[name]));
  }
  // CQL values without records inside: cql-execution's own comparison decides.
  return originalDistinct([a, b]).length === 1;
}

/** The spaces of items grouped by record (see anchorOf) and of Codes. */
const RECORDS = Symbol('records');
const CODES = Symbol('codes');

/** Where anchorOf files an item: a space, then two keys (raw values, compared as Map keys). */
interface Anchor {
  readonly space: unknown;
  readonly first: unknown;
  readonly second: unknown;
}

/**
 * anchorOf files an item by parts that every item equal to it shares, read without making a
 * string: a resource record by its type and id; a Code by its code and system (what its normalized
 * key is built from); a tuple by its first element (in name order) that is a record with an id,
 * else its first string, number or boolean element, within its names. Equal items always share an
 * anchor, so equal items always meet in one group (exact equality is decided there). Undefined:
 * the item is grouped by keyOf.
 */
function anchorOf(item: object): Anchor | undefined {
  if (isRecord(item)) {
    const id = item._json?.id;
    return typeof id === 'string' ? { space: RECORDS, first: item._typeInfo?.name, second: id } : undefined;
  }
  if (item.constructor === Code) return { space: CODES, first: (item as Code).code ?? null, second: (item as Code).system ?? null };
  if (!isTuple(item)) return undefined;
  const shape = tupleShape(item);
  let primitive: Anchor | undefined;
  for (let i = 0; i < shape.sorted.length; i++) {
    const value = item[shape.sorted[i] as string];
    if (typeof value === 'object' && value !== null && isRecord(value)) {
      const id = value._json?.id;
      if (typeof id === 'string') return { space: shape.recordSpace, first: value._typeInfo?.name, second: id };
    } else if (primitive === undefined && (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')) {
      primitive = { space: shape.primitiveSpaces[i], first: value, second: undefined };
    }
  }
  return primitive;
}

/**
 * distinctList is cql-execution's toDistinctList (see above). The commonest items are grouped
 * without a string key built for each: primitives by value; records, Codes and tuples by anchorOf.
 */
export function distinctList(list: readonly unknown[]): unknown[] {
  if (list.length < 2) return [...list];
  const kept: unknown[] = [];
  /** Anchored items (see anchorOf): by space, then the anchor's two parts. */
  const anchored = new Map<unknown, Map<unknown, Map<unknown, unknown[]>>>();
  /** null, undefined (as null), strings, numbers and booleans, by value: Map keys are SameValueZero, as the normalized key treats 0 and -0, and NaN. */
  const primitives = new Set<unknown>();
  const byKey = new Map<string, unknown[]>();
  for (const item of list) {
    const kind = typeof item;
    if (item === null || item === undefined || kind === 'string' || kind === 'number' || kind === 'boolean') {
      const value = item ?? null;
      if (primitives.has(value)) continue;
      primitives.add(value);
      kept.push(item);
      continue;
    }
    let same: unknown[] | undefined;
    const anchor = kind === 'object' ? anchorOf(item as object) : undefined;
    if (anchor !== undefined) {
      let space = anchored.get(anchor.space);
      if (space === undefined) anchored.set(anchor.space, (space = new Map()));
      let byFirst = space.get(anchor.first);
      if (byFirst === undefined) space.set(anchor.first, (byFirst = new Map()));
      same = byFirst.get(anchor.second);
      if (same === undefined) byFirst.set(anchor.second, [item]);
    } else {
      const key = keyOf(item);
      same = byKey.get(key);
      if (same === undefined) byKey.set(key, [item]);
    }
    if (same !== undefined) {
      if (same.some((earlier) => sameItem(earlier, item))) continue;
      same.push(item);
    }
    kept.push(item);
  }
  return kept;
}

let installed = false;

/** installFastDistinct routes cql-execution's de-duplication through {@link distinctList}; idempotent. */
export function installFastDistinct(): void {
  if (installed) return;
  listModule.toDistinctList = distinctList;
  installed = true;
}
