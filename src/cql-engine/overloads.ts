import { Code, Concept, Date as CqlDate, DateTime, Expression, type Context, type Library } from 'cql-execution';
import { FunctionRef } from 'cql-execution/lib/elm/reusable.js';

/**
 * Static function-overload binding for cql-execution 3.3.2.
 *
 * Why: `FunctionRef.exec` (lib/elm/reusable.js) looks up every overload of the function by name on
 * every call, filters by arity, then runs `ctx.matchesTypeSpecifier` against every remaining
 * overload and takes the last match. FHIRHelpers has ~250 one-argument overloads (ToString,
 * ToConcept, ...) that the translator inserts as implicit conversions, so this was the largest
 * cost left in evaluation. The translator has already resolved the overload: with signatures
 * enabled a FunctionRef carries `signature` (its operands' declared types). Here each FunctionRef
 * instance whose signature equals exactly one FunctionDef's parameter types is bound to that def
 * once per prepared library. Everything else keeps runtime resolution.
 *
 * The static choice is the compiler's; the runtime's "last type match" can differ only when
 * several overloads accept the runtime values: a null argument, a FHIR.id (also a FHIR.string), or
 * a System value (cql-execution lets it pass any model type test). There the compiler's pick is
 * the one CQL's semantics call for; on the 301 eCQM test cases both give identical results.
 *
 * Bound calls of pure one-argument functions (FHIRHelpers' conversions) also remember their result
 * per data-layer record, since a join re-converts the same element for every pair it compares.
 */

/** What {@link bindOverloads} did, for tests and diagnostics. */
export interface OverloadBinding {
  /** Function references now bound to one FunctionDef. */
  readonly bound: number;
  /** Function references left to cql-execution's runtime resolution (ambiguous or unmatched). */
  readonly unbound: number;
  /** Bound references to pure one-argument functions, whose results are remembered per record. */
  readonly remembered: number;
}

/** The part of cql-execution's FunctionDef the binding reads (`parameters` is the ELM `operand` list). */
export interface FunctionDefLike {
  readonly parameters: readonly ElmOperand[];
  readonly expression: { execute(ctx: Context): Promise<unknown> } | null | undefined;
}

interface ElmOperand {
  readonly name: string;
  readonly operandType?: string;
  readonly operandTypeSpecifier?: unknown;
}

/** Fields that say where a node is or what the translator inferred, not which type it names. */
const NOT_TYPE = new Set(['localId', 'locator', 'annotation', 'resultTypeName']);

/** typeKey renders a type specifier as a canonical string (sorted keys, location fields dropped). */
function typeKey(spec: unknown): string {
  if (Array.isArray(spec)) return `[${spec.map(typeKey).join(',')}]`;
  if (typeof spec !== 'object' || spec === null) return JSON.stringify(spec) ?? 'undefined';
  const record = spec as Record<string, unknown>;
  const keys = Object.keys(record).filter((k) => !NOT_TYPE.has(k) && record[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${typeKey(record[k])}`).join(',')}}`;
}

/** The operand types of a FunctionDef, read the way FunctionRef.exec reads them. */
function parameterKey(def: FunctionDefLike): string {
  return typeKey(def.parameters.map((p) => p.operandTypeSpecifier ?? (p.operandType === undefined ? undefined : { name: p.operandType, type: 'NamedTypeSpecifier' })));
}

/** Identifies the ELM node(s) a built FunctionRef may have come from. */
function refKey(libraryName: unknown, name: unknown, localId: unknown, locator: unknown): string {
  return JSON.stringify([libraryName ?? null, name ?? null, localId ?? null, locator ?? null]);
}

const AMBIGUOUS = Symbol('ambiguous');
type SignatureIndex = ReadonlyMap<string, { readonly operands: number; readonly signature: string | undefined } | typeof AMBIGUOUS>;

/**
 * signatureIndex maps each FunctionRef key of one ELM library to its signature. A built FunctionRef
 * keeps only name, library alias, localId and locator, so a key shared by ELM nodes with different
 * signatures (the translator reuses localIds for copied subtrees) is marked ambiguous.
 */
function signatureIndex(elm: unknown): SignatureIndex {
  const index = new Map<string, { operands: number; signature: string | undefined } | typeof AMBIGUOUS>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) visit(item);
      return;
    }
    if (typeof node !== 'object' || node === null) return;
    const record = node as Record<string, unknown>;
    if (record.type === 'FunctionRef') {
      const key = refKey(record.libraryName, record.name, record.localId, record.locator);
      const operands = Array.isArray(record.operand) ? record.operand.length : -1;
      // The translator writes `signature: []` for calls it did not need to disambiguate.
      const signed = Array.isArray(record.signature) && record.signature.length === operands && operands > 0;
      const entry = { operands, signature: signed ? typeKey(record.signature) : undefined };
      const known = index.get(key);
      if (known === undefined) index.set(key, entry);
      else if (known === AMBIGUOUS || known.operands !== entry.operands || known.signature !== entry.signature) index.set(key, AMBIGUOUS);
    }
    for (const value of Object.values(record)) visit(value);
  };
  visit(elm);
  return index;
}

/** Every FunctionRef instance in one built library (not its includes). */
function functionRefsOf(library: Library): FunctionRef[] {
  const refs: FunctionRef[] = [];
  const seen = new Set<object>();
  const visit = (node: unknown): void => {
    if (typeof node !== 'object' || node === null || seen.has(node)) return;
    seen.add(node);
    if (node instanceof FunctionRef) refs.push(node);
    for (const value of Object.values(node)) visit(value);
  };
  for (const part of [library.parameters, library.codesystems, library.valuesets, library.codes, library.concepts, library.expressions, library.functions]) {
    visit(part);
  }
  return refs;
}

/** The overload a reference must call: the sole def with its signature, or (no signature) the sole def with its arity. */
function resolve(defs: readonly FunctionDefLike[], operands: number, signature: string | undefined): FunctionDefLike | undefined {
  const sameArity = defs.filter((def) => def.parameters.length === operands);
  // Without a signature the translator saw no overloads; runtime resolution then skips type tests too.
  const candidates = signature === undefined ? sameArity : sameArity.filter((def) => parameterKey(def) === signature);
  const [only] = candidates;
  return candidates.length === 1 && only?.expression != null ? only : undefined;
}

type Exec = (this: FunctionRef, ctx: Context) => Promise<unknown>;

/** One FunctionRef instance and the overload it is bound to. */
interface Binding {
  readonly ref: FunctionRef;
  readonly def: FunctionDefLike;
  /** The overload list the runtime lookup must find for the binding to apply. */
  readonly defs: readonly FunctionDefLike[];
  readonly alias: string | undefined;
  readonly included: Library | undefined;
}

/**
 * Expression classes whose result depends only on their operands and the values of the aliases
 * and operands in scope: no data, parameters, terminology, clock, timezone or message listener.
 * (FHIRHelpers' conversion functions are written with these.) FunctionRef counts only when bound
 * to a function that is itself pure.
 */
const PURE_NODES = new Set([
  'AliasRef', 'QueryLetRef', 'OperandRef', 'Property', 'Literal', 'Null', 'If', 'Case', 'CaseItem', 'Coalesce', 'IsNull',
  'Not', 'And', 'Or', 'Equal', 'Concatenate', 'As', 'Is', 'Instance', 'Interval', 'Query', 'With', 'Without',
  'ByDirection', 'ByExpression', 'ByColumn', 'FunctionRef',
]);

/** purity answers, per FunctionDef, whether its body is built only from {@link PURE_NODES}. */
function purity(bindings: ReadonlyMap<FunctionRef, Binding> | WeakMap<FunctionRef, Binding>): (def: FunctionDefLike) => boolean {
  const known = new Map<FunctionDefLike, boolean>();
  const pure = (def: FunctionDefLike): boolean => {
    const answer = known.get(def);
    if (answer !== undefined) return answer;
    known.set(def, false); // CQL has no recursion; a cycle is simply not pure
    let ok = true;
    const seen = new Set<object>();
    const visit = (node: unknown): void => {
      if (!ok || typeof node !== 'object' || node === null || seen.has(node)) return;
      seen.add(node);
      if (node instanceof Expression) {
        if (!PURE_NODES.has(node.constructor.name)) ok = false;
        if (node instanceof FunctionRef) {
          const target = bindings.get(node)?.def;
          if (target === undefined || !pure(target)) ok = false;
        }
      }
      for (const value of Object.values(node)) visit(value);
    };
    visit(def.expression);
    known.set(def, ok);
    return ok;
  };
  return pure;
}

/** Results that can be handed out more than once: cql-execution never changes them in place. */
function shareable(value: unknown, isImmutable: (value: unknown) => boolean): boolean {
  return value == null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
    || value instanceof Code || value instanceof Concept || isImmutable(value);
}

/**
 * A FunctionRef bound to one overload: what its evaluation needs, shared by the asynchronous
 * `exec` below and the synchronous twin in sync-execute.ts.
 */
export interface BoundCall {
  readonly def: FunctionDefLike;
  /** The overload list the runtime lookup must find for the binding to apply. */
  readonly defs: readonly FunctionDefLike[];
  readonly alias: string | undefined;
  readonly included: Library | undefined;
  /** Results remembered per immutable first argument (pure one-argument functions only). */
  readonly results: WeakMap<object, unknown> | undefined;
  /** The key to remember a result under for this first argument, if any. */
  rememberFor(arg: unknown): object | undefined;
  /** Stores `value` under `key` when it can be handed out again; returns what the call returns. */
  remember(key: object | undefined, value: unknown): unknown;
  /** A remembered value as a call returns it (Dates copied). */
  handOut(value: unknown): unknown;
}

const boundCalls = new WeakMap<object, BoundCall>();

/** boundCallOf returns the binding of a FunctionRef instance, if bindOverloads bound it. */
export function boundCallOf(ref: object): BoundCall | undefined {
  return boundCalls.get(ref);
}

/**
 * bind replaces one FunctionRef's `exec` with a direct call of its def, building the child context
 * exactly as FunctionRef.exec does. The runtime scope check (the same lookups the original makes)
 * falls back to the original should a name ever resolve elsewhere, e.g. a shadowing alias. With
 * `results`, the def is pure and takes one argument: its result for an immutable argument (a data
 * layer record) is remembered; Date and DateTime results are handed out as copies, since
 * cql-execution adjusts some in place.
 */
function bind(binding: Binding, results: WeakMap<object, unknown> | undefined, isImmutable: (value: unknown) => boolean): void {
  const { ref, def, defs, alias, included } = binding;
  const original = FunctionRef.prototype.exec as Exec;
  const { name } = ref;
  const body = def.expression as NonNullable<FunctionDefLike['expression']>;
  const call: BoundCall = {
    def, defs, alias, included, results,
    rememberFor: (arg) => (results !== undefined && typeof arg === 'object' && arg !== null && isImmutable(arg) ? arg : undefined),
    remember(key, value) {
      if (key === undefined || !(shareable(value, isImmutable) || value instanceof CqlDate || value instanceof DateTime)) return value;
      results?.set(key, value);
      return handOut(value);
    },
    handOut,
  };
  boundCalls.set(ref, call);
  const exec: Exec = async function (this: FunctionRef, ctx: Context): Promise<unknown> {
    if (alias === undefined ? ctx.getFunction(name) !== defs : ctx.get(alias) !== included) return original.call(this, ctx);
    const args = (await this.execArgs(ctx)) as unknown[];
    const key = call.rememberFor(args[0]);
    if (key !== undefined && results?.has(key) === true) return handOut(results.get(key));
    const child = alias === undefined ? ctx.childContext() : (ctx.getLibraryContext(alias) as Context).childContext();
    for (let i = 0; i < def.parameters.length; i++) child.set((def.parameters[i] as ElmOperand).name, args[i]);
    return call.remember(key, await body.execute(child));
  };
  Object.defineProperty(ref, 'exec', { value: exec, configurable: true, writable: true });
}

function handOut(value: unknown): unknown {
  return value instanceof CqlDate || value instanceof DateTime ? value.copy() : value;
}

/** Libraries already bound, every binding made, and remembered results per pure function, across calls. */
const boundLibraries = new WeakSet<Library>();
const allBindings = new WeakMap<FunctionRef, Binding>();
const resultCaches = new WeakMap<FunctionDefLike, WeakMap<object, unknown>>();

/** Options for {@link bindOverloads}. */
export interface BindOverloadsOptions {
  /**
   * Says whether a value never changes once built (the data layer's records). A pure one-argument
   * function's result for such an argument is computed once: FHIRHelpers' ToConcept, ToString,
   * ToDateTime etc. are otherwise re-run for the same element on every comparison of a join.
   */
  readonly isImmutable?: (value: unknown) => boolean;
}

/**
 * bindOverloads binds, in `library` and every library it includes, each FunctionRef to the overload
 * the translator chose (see the module comment). Call once per built library, before any
 * evaluation: it changes that library's expression tree in place. Results of pure functions
 * remembered for a record are not recorded again under their localIds (cql-execution's
 * per-localId results, which Cairn does not read); define results are unchanged.
 */
export function bindOverloads(library: Library, options: BindOverloadsOptions = {}): OverloadBinding {
  const bindings = new Map<FunctionRef, Binding>();
  let unbound = 0;
  const indexes = new Map<unknown, SignatureIndex>();
  const visit = (lib: Library): void => {
    // A library shared by several main libraries (see LibraryRepository) is bound once.
    if (boundLibraries.has(lib)) return;
    boundLibraries.add(lib);
    let index = indexes.get(lib.source);
    if (index === undefined) indexes.set(lib.source, (index = signatureIndex(lib.source)));
    for (const ref of functionRefsOf(lib)) {
      const alias = typeof ref.library === 'string' ? ref.library : undefined;
      const included = alias === undefined ? undefined : (lib.includes as Record<string, Library | undefined>)[alias];
      // Mirrors the runtime lookup: `ctx.get(alias)` finds an expression of that name before an include.
      const target = alias === undefined ? lib : (lib.expressions as Record<string, unknown>)[alias] === undefined ? included : undefined;
      const defs = target?.getFunction(ref.name) as readonly FunctionDefLike[] | undefined;
      const entry = index.get(refKey(ref.library, ref.name, ref.localId, ref.locator));
      const def = defs === undefined || entry === undefined || entry === AMBIGUOUS || !Array.isArray(ref.args) || ref.args.length !== entry.operands
        ? undefined
        : resolve(defs, entry.operands, entry.signature);
      if (def === undefined || defs === undefined) unbound++;
      else bindings.set(ref, { ref, def, defs, alias, included });
    }
    for (const included of Object.values(lib.includes as Record<string, Library | undefined>)) if (included !== undefined) visit(included);
  };
  visit(library);

  for (const [ref, binding] of bindings) allBindings.set(ref, binding);
  const { isImmutable } = options;
  const pure = purity(allBindings);
  let remembered = 0;
  for (const binding of bindings.values()) {
    let results: WeakMap<object, unknown> | undefined;
    if (isImmutable !== undefined && binding.def.parameters.length === 1 && pure(binding.def)) {
      results = resultCaches.get(binding.def);
      if (results === undefined) resultCaches.set(binding.def, (results = new WeakMap()));
      remembered++;
    }
    bind(binding, results, isImmutable ?? (() => false));
  }
  return Object.freeze({ bound: bindings.size, unbound, remembered });
}
