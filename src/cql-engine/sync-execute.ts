/* eslint-disable @typescript-eslint/no-explicit-any -- the twins read cql-execution's untyped JavaScript nodes and values field by field, as its own code does. */
import { createRequire } from 'node:module';
import type { Library } from 'cql-execution';
import { ELEMENT_IS, NOT_PLAIN, plainCoding, PRIMITIVE_VALUE } from './fhir-model.ts';
import { boundCallOf, type BoundCall } from './overloads.ts';

/**
 * Synchronous evaluation of ELM subtrees, for cql-execution 3.3.2, with the same results.
 *
 * Why: cql-execution evaluates every node through an `async` method, so each of the thousands of
 * nodes an evaluation runs (an order-sign call runs ~4,000) costs a promise, a suspension and a
 * microtask even though nearly all of them only read a property or compare two values. That
 * machinery, not the work, was most of the time left in evaluating the sample rules.
 *
 * How: each supported node type below has a synchronous twin that does exactly what its `exec`
 * does (read side by side with lib/elm/*.js), calling the same cql-execution helpers. At prepare
 * time every maximal subtree built only of supported nodes gets an `execute` that runs the twin
 * and returns a plain value (cql-execution awaits it like any other). Whatever the twins do not
 * take on (a define not computed yet whose body is not synchronous, a terminology or data source
 * that answers with a promise, any error) makes the subtree give up and run the original
 * asynchronous `execute` from the start instead: the twins have no side effects until a value is
 * complete (a define's result is stored only once computed; a Message for a listener other than
 * cql-execution's silent one is left to cql-execution), so starting again changes nothing but
 * time, and errors are raised by cql-execution's own code, with its own annotations.
 *
 * Requires lean-execute (no per-node result recording) and the overload binding; installed by
 * prepareLibrary. test/cql-engine/sync-execute.test.ts compares both evaluations.
 */

/** A node's synchronous twin: its value in `ctx`, or a throw (anything thrown means: run the original). */
type SyncFn = (ctx: Ctx) => unknown;

/** The part of cql-execution's Context the twins use. */
interface Ctx {
  get(name: string): unknown;
  set(name: string, value: unknown): void;
  rootContext(): Ctx;
  getLibraryContext(alias: string): Ctx;
  getFunction(name: string): unknown;
  getValueSet(name: string, library?: string): unknown;
  getCodeSystem(name: string, library?: string): unknown;
  getCode(name: string): unknown;
  getParameter(name: string): unknown;
  getParentParameter(name: string): unknown;
  getTimezoneOffset(): unknown;
  getExecutionDateTime(): { readonly timezoneOffset: unknown };
  getMessageListener(): { onMessage?: (...args: unknown[]) => void } | undefined;
  matchesTypeSpecifier(value: unknown, spec: unknown): boolean;
  readonly codeService: { findValueSet(id: string, version?: string): unknown } | undefined;
  readonly parameters: Record<string, unknown>;
  readonly context_values: Record<string, unknown>;
  readonly evaluatedRecords: unknown[];
  readonly patient?: { findRecords(profile: string, details: unknown): unknown };
}

/** Any built ELM node; fields are read per type below. */
type Node = any;
type Compile = (node: Node, child: (node: unknown) => SyncFn | undefined) => SyncFn | undefined;

const require = createRequire(import.meta.url);
require('cql-execution');
const lib = (path: string): Record<string, any> => require(`cql-execution/lib/${path}.js`) as Record<string, any>;
const expression = lib('elm/expression');
const literal = lib('elm/literal');
const reusable = lib('elm/reusable');
const query = lib('elm/query');
const structured = lib('elm/structured');
const type = lib('elm/type');
const conditional = lib('elm/conditional');
const logical = lib('elm/logical');
const nullological = lib('elm/nullological');
const overloaded = lib('elm/overloaded');
const comparisonOps = lib('elm/comparison');
const list = lib('elm/list');
const string = lib('elm/string');
const clinical = lib('elm/clinical');
const instanceNodes = lib('elm/instance');
const parameters = lib('elm/parameters');
const external = lib('elm/external');
const interval = lib('elm/interval');
const aggregate = lib('elm/aggregate');
const arithmetic = lib('elm/arithmetic');
const datetimeOps = lib('elm/datetime');
const message = lib('elm/message');
const messageListeners = lib('runtime/messageListeners');
const quantityNode = lib('elm/quantity');
const comparison = lib('util/comparison');
const math = lib('util/math');
const datatypes = lib('datatypes/datatypes');
const quantity = lib('datatypes/quantity');

const ExpressionClass = expression.Expression as abstract new (...args: never[]) => object;
/** The original (lean) Expression.prototype.execute, read when a subtree gives up. */
const originalExecute = (node: Node, ctx: Ctx): unknown => (expression.Expression.prototype.execute as (this: Node, ctx: Ctx) => unknown).call(node, ctx);

/** Thrown by a twin that cannot go on synchronously; never escapes a subtree. */
class GiveUp extends Error {}
const GIVE_UP = new GiveUp('run asynchronously');

/**
 * childOf(parent, values) is `parent.childContext(values)` (runtime/context.js) without the four
 * objects cql-execution's Context constructor makes that a query row or function call scope never
 * touches (`library_context`, `localId_context`, `evaluatedRecords`, `_parameters`, each an empty
 * object or list): each is made on first use instead, so the child behaves the same for any code
 * that reads it, cql-execution's own included. Rows and calls are the twins' commonest
 * allocation; a child context is never read by anything after its twin returns.
 */
const LIGHT_CHILD: object = Object.create(
  (require('cql-execution/lib/runtime/context.js') as { Context: { prototype: object } }).Context.prototype,
  Object.fromEntries(
    (['library_context', 'localId_context', 'evaluatedRecords', '_parameters'] as const).map((name) => {
      const own = (target: object, value: unknown): unknown => {
        Object.defineProperty(target, name, { value, writable: true, enumerable: true, configurable: true });
        return value;
      };
      return [name, { get(this: object) { return own(this, name === 'evaluatedRecords' ? [] : {}); }, set(this: object, value: unknown) { own(this, value); }, configurable: true }];
    }),
  ),
);

export function childOf(parent: Ctx, values?: unknown): Ctx {
  const ctx = Object.create(LIGHT_CHILD) as { parent: Ctx; _codeService: unknown; context_values: unknown; executionDateTime: unknown; messageListener: unknown };
  ctx.parent = parent;
  ctx._codeService = undefined;
  ctx.context_values = values ?? {};
  ctx.executionDateTime = undefined;
  ctx.messageListener = undefined;
  return ctx as unknown as Ctx;
}

function isThenable(value: unknown): boolean {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** The value of `args`/`arg` as Expression.execArgs gives it. */
function argsOf(node: Node, child: (node: unknown) => SyncFn | undefined): SyncFn | undefined {
  if (node.args != null) {
    const fns = (node.args as unknown[]).map(child);
    if (fns.some((fn) => fn === undefined)) return undefined;
    const all = fns as SyncFn[];
    return (ctx) => all.map((fn) => fn(ctx));
  }
  if (node.arg != null) return child(node.arg);
  return () => null;
}

/**
 * A binary operator (its two operands in `args`): both evaluated in order, as Expression.execArgs
 * does, then `op` on their values.
 */
function binary(op: (x: any, y: any, ctx: Ctx, node: Node) => unknown): Compile {
  return (node, child) => {
    if (!Array.isArray(node.args) || node.args.length !== 2) return undefined;
    const first = child(node.args[0]);
    const second = child(node.args[1]);
    if (!first || !second) return undefined;
    return (ctx) => {
      const x = first(ctx);
      return op(x, second(ctx), ctx, node);
    };
  };
}

/** A define's value in `ctx`, as ExpressionRef.exec gets it: stored, or computed now and stored. */
function defineValue(ctx: Ctx, name: string): unknown {
  const value = ctx.get(name);
  if (!(value instanceof ExpressionClass)) return value;
  const def = value as Node;
  const body = def.expression == null ? undefined : compiledBodies.get(def.expression as object);
  if (def.expression != null && body === undefined) throw GIVE_UP;
  // ExpressionDef.exec: evaluate, then store the result on the root context.
  const result = body === undefined ? undefined : body(ctx);
  ctx.rootContext().set(def.name as string, result);
  return result;
}

/** The value set a ValueSetRef names, as ValueSetRef.exec and ValueSetDef.exec build it. */
function valueSetOf(node: Node): SyncFn | undefined {
  if (node.constructor !== clinical.ValueSetRef) return undefined;
  return (ctx) => {
    const valueSet = ctx.getValueSet(node.name as string, node.libraryName as string | undefined);
    if (!(valueSet instanceof ExpressionClass)) return valueSet;
    const def = valueSet as Node;
    if (!(def instanceof clinical.ValueSetDef)) throw GIVE_UP;
    const codeSystems = def.codesystems?.map((ref: Node) => codeSystemOf(ctx, ref.name, ref.libraryName));
    return new datatypes.CQLValueSet(def.id, def.version, def.name, codeSystems);
  };
}

/** CodeSystemRef.exec / CodeSystemDef.exec: the named code system. */
function codeSystemOf(ctx: Ctx, name: string, library?: string): unknown {
  const def = ctx.getCodeSystem(name, library) as Node;
  if (!(def instanceof clinical.CodeSystemDef)) throw GIVE_UP;
  return new datatypes.CodeSystem(def.id, def.version, def.name);
}

/** resolveValueSet (lib/util/util.js) without awaiting: the code service's expansion. */
function expansionOf(valueSet: { id: string; version?: string }, ctx: Ctx): { hasMatch(code: unknown): boolean } {
  const expansion = ctx.codeService?.findValueSet(valueSet.id, valueSet.version);
  if (!expansion || isThenable(expansion)) throw GIVE_UP;
  return expansion as { hasMatch(code: unknown): boolean };
}

/** cql-execution's asyncMergeSort, synchronously: the same stable merge, so ties keep the same order. */
function mergeSort<T>(items: T[], compare: (a: T, b: T) => number): T[] {
  if (items.length <= 1) return items;
  const middle = Math.floor(items.length / 2);
  const left = mergeSort(items.slice(0, middle), compare);
  const right = mergeSort(items.slice(middle), compare);
  const sorted: T[] = [];
  let i = 0;
  let j = 0;
  while (i < left.length && j < right.length) sorted.push(compare(left[i] as T, right[j] as T) <= 0 ? (left[i++] as T) : (right[j++] as T));
  while (i < left.length) sorted.push(left[i++] as T);
  while (j < right.length) sorted.push(right[j++] as T);
  return sorted;
}

/** One sort item's order of a and b (ByDirection, ByExpression, ByColumn in lib/elm/query.js). */
function sortItem(item: Node, child: (node: unknown) => SyncFn | undefined): ((ctx: Ctx, a: any, b: any) => number) | undefined {
  const { low_order: low, high_order: high } = item as { low_order: number; high_order: number };
  if (item.constructor === query.ByDirection) {
    return (_ctx, a, b) => (a === b ? 0 : a.isQuantity && b.isQuantity ? (a.before(b) ? low : high) : a < b ? low : high);
  }
  if (item.constructor !== query.ByExpression && item.constructor !== query.ByColumn) return undefined;
  const by = child(item.expression);
  if (!by) return undefined;
  return (ctx, a, b) => {
    const x: any = by(childOf(ctx, a));
    const y: any = by(childOf(ctx, b));
    if (x === y || (x == null && y == null)) return 0;
    if (x == null || y == null) return x == null ? low : high;
    if (x.isQuantity && y.isQuantity) return x.before(y) ? low : high;
    return x < y ? low : high;
  };
}

const compileQuery: Compile = (node, child) => {
  const sources = (node.sources as Node[]).map((s) => child(s.expression));
  const lets = (node.letClauses as Node[]).map((l) => ({ identifier: l.identifier as string, value: child(l.expression) }));
  const relationships = (node.relationship as Node[]).map((r) => ({ node: r, alias: r.alias as string, source: child(r.expression), suchThat: child(r.suchThat) }));
  const where = node.where == null ? undefined : child(node.where);
  const returns = node.returnClause == null ? undefined : child(node.returnClause.expression);
  const aggregateClause = node.aggregateClause as Node | null;
  const aggregateStart = aggregateClause?.starting == null ? undefined : child(aggregateClause.starting);
  const aggregateStep = aggregateClause == null ? undefined : child(aggregateClause.expression);
  const sortBy = node.sortClause?.by == null ? [] : (node.sortClause.by as Node[]).map((item) => sortItem(item, child));
  if (sources.some((s) => !s) || lets.some((l) => !l.value) || relationships.some((r) => !r.source || !r.suchThat)) return undefined;
  if (relationships.some((r) => r.node.constructor !== query.With && r.node.constructor !== query.Without)) return undefined;
  if ((node.where != null && !where) || (node.returnClause != null && !returns) || sortBy.some((s) => !s)) return undefined;
  if (aggregateClause != null && (!aggregateStep || (aggregateClause.starting != null && !aggregateStart))) return undefined;
  const aliases = node.aliases as string[];
  const distinct = node.isDistinct() as boolean;
  const single = aliases.length === 1 && aggregateClause == null;
  return (ctx) => {
    const results = (sources as SyncFn[]).map((source) => source(ctx));
    if (results.every((r) => r == null)) return null;
    const isList = results.some((r) => Array.isArray(r));
    const lists = results.map((r) => (r == null ? [] : Array.isArray(r) ? r : [r]));
    // The cartesian product of the sources, in cql-execution's order; one source is its own list.
    let combos: unknown[][] | unknown[] = lists[0] as unknown[];
    if (lists.length > 1) {
      combos = [[]];
      for (const items of lists) combos = (combos as unknown[][]).flatMap((combo) => items.map((item) => [...combo, item]));
    }
    let returned: unknown[] = [];
    for (const combo of combos) {
      const rctx = childOf(ctx);
      if (lists.length === 1) rctx.set(aliases[0] as string, combo);
      else for (let i = 0; i < (combo as unknown[]).length; i++) rctx.set(aliases[i] as string, (combo as unknown[])[i]);
      for (const clause of lets) rctx.set(clause.identifier, (clause.value as SyncFn)(rctx));
      let related = true;
      for (const relationship of relationships) {
        // With.exec / Without.exec, each in a child of the row's context.
        const relationCtx = childOf(rctx);
        let records = (relationship.source as SyncFn)(relationCtx);
        if (!Array.isArray(records)) records = [records];
        const matches = (records as unknown[]).map((record) => {
          const recordCtx = childOf(relationCtx);
          recordCtx.set(relationship.alias, record);
          return (relationship.suchThat as SyncFn)(recordCtx);
        });
        const found = matches.some((x) => x);
        if (!(relationship.node.constructor === query.Without ? !found : found)) related = false;
      }
      if (!(related && (where ? where(rctx) : true))) continue;
      if (returns) returned.push(returns(rctx));
      else returned.push(single ? rctx.get(aliases[0] as string) : rctx.context_values);
    }
    if (distinct) returned = list.toDistinctList(returned) as unknown[];
    let value: unknown = returned;
    if (aggregateClause != null) {
      let accumulated = aggregateStart ? aggregateStart(ctx) : null;
      for (const row of returned) {
        const actx = childOf(ctx, row);
        actx.set(aggregateClause.identifier as string, accumulated);
        accumulated = (aggregateStep as SyncFn)(actx);
      }
      value = accumulated;
    }
    if (sortBy.length > 0) {
      value = mergeSort(value as unknown[], (a, b) => {
        let order = 0;
        for (const by of sortBy) {
          order = (by as NonNullable<typeof by>)(ctx, a, b);
          if (order !== 0) break;
        }
        return order;
      });
    }
    return isList || aggregateClause != null ? value : (value as unknown[])[0];
  };
};

const compileFunctionRef: Compile = (node, child) => {
  const call: BoundCall | undefined = boundCallOf(node);
  if (call === undefined) return compileRuntimeResolution(node, child);
  const args = (node.args as unknown[] | undefined ?? []).map(child);
  const body = compiledBodies.get(call.def.expression as object) ?? compile(call.def.expression, child);
  if (args.some((a) => !a) || !body) return undefined;
  const argFns = args as SyncFn[];
  const { name } = node as { name: string };
  const names = call.def.parameters.map((p) => p.name);
  /** The binding's own check (overloads.ts): the name must still resolve to the bound overloads. */
  const checkBound = (ctx: Ctx): void => {
    if (call.alias === undefined ? ctx.getFunction(name) !== call.defs : ctx.get(call.alias) !== call.included) throw GIVE_UP;
  };
  /** FunctionRef.exec with the bound def: a remembered result, else the body in a child of the def's library scope. */
  const invoke = (ctx: Ctx, values: readonly unknown[]): unknown => {
    const key = call.rememberFor(values[0]);
    if (key !== undefined && call.results?.has(key) === true) return call.handOut(call.results.get(key));
    const scope = call.alias === undefined ? ctx : (ctx.getLibraryContext(call.alias) as Ctx | null | undefined);
    if (scope == null) throw GIVE_UP;
    const childCtx = childOf(scope);
    for (let i = 0; i < names.length; i++) childCtx.set(names[i] as string, values[i]);
    return call.remember(key, body(childCtx));
  };
  const native = nativeOf(call.def);
  if (native !== undefined) {
    // One argument, its value computed without a call scope. An undefined argument would make the
    // body's OperandRef look further up the scope chain, so that case runs the body as written.
    const answer = (ctx: Ctx, value: unknown): unknown => {
      if (value !== undefined) {
        const result = native(value);
        if (result !== NOT_PLAIN) return result;
      }
      return invoke(ctx, [value]);
    };
    const fused = fusedPrimitiveRead(call.def, (node.args as Node[] | undefined)?.[0], child);
    if (fused !== undefined) {
      // `ToString(X.status)` and kin: the element's JSON value, without building the element; else as above.
      const { source, path, parts } = fused;
      return (ctx) => {
        checkBound(ctx);
        const object = source(ctx) as { [PRIMITIVE_VALUE]?: (field: string) => unknown } | null | undefined;
        const direct = object?.[PRIMITIVE_VALUE]?.call(object, path) ?? NOT_PLAIN;
        if (direct !== NOT_PLAIN) {
          fusedPrimitiveReads.count++;
          return direct;
        }
        return answer(ctx, propertyValue(object, path, parts));
      };
    }
    const [argFn] = argFns as [SyncFn];
    return (ctx) => {
      checkBound(ctx);
      return answer(ctx, argFn(ctx));
    };
  }
  return (ctx) => {
    checkBound(ctx);
    return invoke(ctx, argFns.map((fn) => fn(ctx)));
  };
};

/**
 * A FunctionRef left unbound (published ELM without signatures): FunctionRef.exec's own overload
 * resolution — same arity, then every argument matching the parameter's type, the last one left —
 * then that overload's body, which must itself run synchronously.
 */
const compileRuntimeResolution: Compile = (node, child) => {
  if (!Array.isArray(node.args)) return undefined;
  const args = (node.args as unknown[]).map(child);
  if (args.some((a) => !a)) return undefined;
  const argFns = args as SyncFn[];
  const { name, library } = node as { name: string; library?: string };
  return (ctx) => {
    let defs: any[] | undefined;
    let childCtx: Ctx | undefined;
    if (library) {
      const lib = ctx.get(library) as { getFunction(name: string): any[] } | null | undefined;
      defs = lib ? lib.getFunction(name) : undefined;
      const libraryCtx = ctx.getLibraryContext(library) as Ctx | null | undefined;
      childCtx = libraryCtx == null ? undefined : childOf(libraryCtx);
    } else {
      defs = ctx.getFunction(name) as any[] | undefined;
      childCtx = childOf(ctx);
    }
    const values = argFns.map((fn) => fn(ctx));
    if (!Array.isArray(defs) || childCtx === undefined) throw GIVE_UP;
    let candidates = defs.filter((def) => def.parameters.length === values.length);
    if (candidates.length > 1) {
      candidates = candidates.filter((def) => {
        for (let i = 0; i < values.length; i++) {
          if (values[i] === null) continue;
          const parameter = def.parameters[i];
          const spec = parameter.operandTypeSpecifier ?? (parameter.operandType != null ? { name: parameter.operandType, type: 'NamedTypeSpecifier' } : undefined);
          if (!ctx.matchesTypeSpecifier(values[i], spec)) return false;
        }
        return true;
      });
    }
    const def = candidates[candidates.length - 1];
    const body = def?.expression == null ? undefined : compiledBodies.get(def.expression as object);
    if (body === undefined) throw GIVE_UP; // no overload (an error), or one whose body runs asynchronously
    for (let i = 0; i < def.parameters.length; i++) childCtx.set(def.parameters[i].name as string, values[i]);
    return body(childCtx);
  };
};

/** Twins by node class. A class missing here (or a node whose parts are not all supported) keeps its asynchronous exec. */
const TWINS = new Map<unknown, Compile>([
  [literal.Literal, (node) => () => node.value],
  [literal.BooleanLiteral, (node) => () => node.value],
  [literal.IntegerLiteral, (node) => () => node.value],
  [literal.DecimalLiteral, (node) => () => node.value],
  [literal.StringLiteral, (node) => {
    const value = (node.value as string).replace(/\\'/g, "'").replace(/\\"/g, '"');
    return () => value;
  }],
  [nullological.Null, () => () => null],
  [reusable.OperandRef, (node) => (ctx) => ctx.get(node.name as string)],
  [query.AliasRef, (node) => (ctx) => (ctx != null ? ctx.get(node.name as string) : undefined)],
  [query.QueryLetRef, (node) => (ctx) => (ctx != null ? ctx.get(node.name as string) : undefined)],
  [reusable.ExpressionRef, (node) => {
    const { name, library } = node as { name: string; library?: string };
    return (ctx) => defineValue(library ? ctx.getLibraryContext(library) : ctx, name);
  }],
  [reusable.FunctionRef, compileFunctionRef],
  [reusable.IdentifierRef, (node) => {
    const { name, library } = node as { name: string; library?: string };
    const parts = name.split('.');
    return (ctx) => {
      const lib = library ? (ctx.get(library) as { get(name: string): unknown } | undefined) : undefined;
      let value: any = lib ? lib.get(name) : ctx.get(name);
      if (value == null) {
        value = ctx.get(parts[0] as string);
        if (value != null && parts.length > 1) {
          let current = value;
          for (const part of parts.slice(1)) {
            const next = property(current, part);
            current = next instanceof Function ? next.call(current) : next;
          }
          value = current;
        }
      }
      return value instanceof Function ? value.call(ctx.context_values) : value;
    };
  }],
  [parameters.ParameterRef, (node) => {
    const { name, library } = node as { name: string; library?: string };
    return (ctx) => {
      const paramCtx = library ? ctx.getLibraryContext(library) : ctx;
      const param = paramCtx.getParameter(name) as Node | null | undefined;
      if (param == null) return undefined;
      if (!(param instanceof parameters.ParameterDef)) throw GIVE_UP;
      // ParameterDef.exec: the value given to this context; else a parent's, which at the top is the
      // library's ParameterDef, whose default is evaluated; else it evaluates its own default and returns nothing.
      const given = paramCtx.parameters[param.name as string];
      if (given !== undefined) return given;
      const inherited = paramCtx.getParentParameter(param.name as string) as any;
      if (inherited !== undefined) {
        if (inherited.default == null) return inherited;
        const evaluateDefault = compiledBodies.get(inherited.default as object);
        if (evaluateDefault === undefined) throw GIVE_UP;
        return evaluateDefault(paramCtx);
      }
      if (param.default != null) {
        const evaluateDefault = compiledBodies.get(param.default as object);
        if (evaluateDefault === undefined) throw GIVE_UP;
        evaluateDefault(paramCtx);
      }
      return undefined;
    };
  }],
  [structured.Property, (node, child) => {
    const { scope, path } = node as { scope?: string; path: string };
    const source = scope != null || !(node.source instanceof ExpressionClass) ? undefined : child(node.source);
    if (scope == null && node.source instanceof ExpressionClass && !source) return undefined;
    const parts = path.split('.');
    return (ctx) => propertyValue(scope != null ? ctx.get(scope) : source ? source(ctx) : node.source, path, parts);
  }],
  [structured.Tuple, (node, child) => {
    const elements = (node.elements as { name: string; value: unknown }[]).map((e) => ({ name: e.name, value: e.value == null ? null : child(e.value) }));
    if (elements.some((e) => e.value === undefined)) return undefined;
    return (ctx) => {
      const tuple: Record<string, unknown> = {};
      for (const e of elements) tuple[e.name] = e.value === null ? undefined : (e.value as SyncFn)(ctx);
      return tuple;
    };
  }],
  [instanceNodes.Instance, (node, child) => {
    const elements = (node.element as { name: string; value: unknown }[]).map((e) => ({ name: e.name, value: e.value == null ? null : child(e.value) }));
    if (elements.some((e) => e.value === undefined)) return undefined;
    const classType = node.classType as string;
    return (ctx) => {
      const obj: Record<string, any> = {};
      for (const e of elements) obj[e.name] = e.value === null ? undefined : (e.value as SyncFn)(ctx);
      switch (classType) {
        case '{urn:hl7-org:elm-types:r1}Quantity':
          return new quantity.Quantity(obj.value, obj.unit);
        case '{urn:hl7-org:elm-types:r1}Code':
          return new datatypes.Code(obj.code, obj.system, obj.version, obj.display);
        case '{urn:hl7-org:elm-types:r1}Concept':
          return new datatypes.Concept(obj.codes, obj.display);
        default:
          return obj;
      }
    };
  }],
  [list.List, (node, child) => {
    const elements = (node.elements as unknown[]).map(child);
    if (elements.some((e) => !e)) return undefined;
    return (ctx) => (elements as SyncFn[]).map((e) => e(ctx));
  }],
  [type.Is, (node, child) => {
    const arg = argsOf(node, child);
    if (!arg) return undefined;
    const spec = node.isTypeSpecifier;
    const isOf = (ctx: Ctx, value: { _is?: unknown } | null): boolean => {
      if (value === null) return false;
      // Is.exec throws for a non-System type on a value without `_is`: left to it.
      if (typeof value?._is !== 'function' && !isSystemType(spec)) throw GIVE_UP;
      return ctx.matchesTypeSpecifier(value, spec);
    };
    const fused = onePropertyRead(node.arg, child);
    if (fused !== undefined) {
      // `M.medication is FHIR.Reference`: answered from the JSON form the element takes, without building it; else as below.
      const { source, path, parts } = fused;
      return (ctx) => {
        const object = source(ctx) as { [ELEMENT_IS]?: (field: string, spec: unknown) => unknown } | null | undefined;
        const answer = object?.[ELEMENT_IS]?.call(object, path, spec) ?? NOT_PLAIN;
        if (answer !== NOT_PLAIN) {
          fusedElementTests.count++;
          return answer;
        }
        return isOf(ctx, propertyValue(object, path, parts) as { _is?: unknown } | null);
      };
    }
    return (ctx) => isOf(ctx, arg(ctx) as { _is?: unknown } | null);
  }],
  [type.As, (node, child) => {
    const arg = argsOf(node, child);
    if (!arg) return undefined;
    const spec = node.asTypeSpecifier;
    const strict = node.strict === true;
    return (ctx) => {
      const value = arg(ctx);
      if (value == null) return null;
      if (ctx.matchesTypeSpecifier(value, spec)) return value;
      if (strict) throw GIVE_UP; // the cast error, raised by As.exec itself
      return null;
    };
  }],
  [conditional.If, (node, child) => {
    const condition = child(node.condition);
    const then = child(node.th);
    const otherwise = child(node.els);
    if (!condition || !then || !otherwise) return undefined;
    return (ctx) => (condition(ctx) ? then(ctx) : otherwise(ctx));
  }],
  [conditional.Case, (node, child) => {
    const comparand = node.comparand == null ? null : child(node.comparand);
    const items = (node.caseItems as { when: unknown; then: unknown }[]).map((ci) => ({ when: child(ci.when), then: child(ci.then) }));
    const otherwise = child(node.els);
    if (comparand === undefined || !otherwise || items.some((i) => !i.when || !i.then)) return undefined;
    return (ctx) => {
      const selected = comparand ? comparand(ctx) : undefined;
      for (const item of items) {
        const when = (item.when as SyncFn)(ctx);
        if (comparand ? comparison.equals(when, selected) : when) return (item.then as SyncFn)(ctx);
      }
      return otherwise(ctx);
    };
  }],
  // And / Or as short-circuit.ts evaluates them: stop at the first decisive operand.
  [logical.And, (node, child) => logicalTwin(node, child, false)],
  [logical.Or, (node, child) => logicalTwin(node, child, true)],
  [logical.Not, (node, child) => {
    const arg = argsOf(node, child);
    return arg && ((ctx) => datatypes.ThreeValuedLogic.not(arg(ctx)));
  }],
  [logical.IsTrue, (node, child) => {
    const arg = argsOf(node, child);
    return arg && ((ctx) => arg(ctx) === true);
  }],
  [logical.IsFalse, (node, child) => {
    const arg = argsOf(node, child);
    return arg && ((ctx) => arg(ctx) === false);
  }],
  [nullological.IsNull, (node, child) => {
    const arg = argsOf(node, child);
    return arg && ((ctx) => arg(ctx) == null);
  }],
  [nullological.Coalesce, (node, child) => {
    const args = ((node.args as unknown[] | undefined) ?? []).map(child);
    if (args.some((a) => !a)) return undefined;
    const single = args.length === 1;
    return (ctx) => {
      for (const arg of args as SyncFn[]) {
        const result = arg(ctx);
        if (single && Array.isArray(result)) {
          const item = result.find((x) => x != null);
          if (item != null) return item;
        } else if (result != null) {
          return result;
        }
      }
      return null;
    };
  }],
  [overloaded.Equal, binary((x, y) => (x == null || y == null ? null : comparison.equals(x, y)))],
  [overloaded.NotEqual, binary((x, y) => (x == null || y == null ? null : datatypes.ThreeValuedLogic.not(comparison.equals(x, y))))],
  [overloaded.Equivalent, binary((x, y, ctx) => {
    if (x == null && y == null) return true;
    if (x == null || y == null) return false;
    if (x.isValueSet && y.isValueSet && x.id === y.id && x.version === y.version) return true;
    return comparison.equivalent(x.isValueSet ? expansionOf(x, ctx) : x, y.isValueSet ? expansionOf(y, ctx) : y);
  })],
  [comparisonOps.Less, comparisonTwin('lessThan')],
  [comparisonOps.Greater, comparisonTwin('greaterThan')],
  [comparisonOps.LessOrEqual, comparisonTwin('lessThanOrEquals')],
  [comparisonOps.GreaterOrEqual, comparisonTwin('greaterThanOrEquals')],
  [overloaded.In, binary((item, container, _ctx, node) => contains(container, item, node.precision))],
  [overloaded.Contains, binary((container, item, _ctx, node) => contains(container, item, node.precision))],
  [overloaded.Union, binary((a, b, _ctx, node) => {
    if (a == null && b == null) return node.listTypeArgs() ? [] : null;
    if (a == null || b == null) {
      const notNull = a || b;
      return Array.isArray(notNull) ? notNull : null;
    }
    return (Array.isArray(a) ? list : interval).doUnion(a, b);
  })],
  [overloaded.Indexer, binary((operand, index) => {
    if (operand == null || index == null) return null;
    if (index < 0 || index >= operand.length) return null;
    return operand[index];
  })],
  [list.IndexOf, (node, child) => {
    const source = child(node.source);
    const element = child(node.element);
    if (!source || !element) return undefined;
    return (ctx) => {
      const src = source(ctx) as unknown[] | null;
      const el = element(ctx);
      if (src == null || el == null) return null;
      for (let i = 0; i < src.length; i++) if (comparison.equals(src[i], el)) return i;
      return -1;
    };
  }],
  [list.Exists, (node, child) => {
    const arg = argsOf(node, child);
    return arg && ((ctx) => {
      const items = arg(ctx) as unknown[] | null;
      return items ? items.some((item) => item != null) : false;
    });
  }],
  [list.Distinct, (node, child) => {
    const arg = argsOf(node, child);
    return arg && ((ctx) => {
      const items = arg(ctx);
      return items == null ? null : list.toDistinctList(items);
    });
  }],
  [list.SingletonFrom, (node, child) => {
    const arg = argsOf(node, child);
    return arg && ((ctx) => {
      const items = arg(ctx) as unknown[] | null;
      if (items != null && items.length > 1) throw GIVE_UP; // SingletonFrom.exec raises the error
      return items != null && items.length === 1 ? items[0] : null;
    });
  }],
  [list.ToList, (node, child) => {
    const arg = argsOf(node, child);
    return arg && ((ctx) => {
      const value = arg(ctx);
      return value != null ? [value] : [];
    });
  }],
  [list.First, (node, child) => {
    const source = child(node.source);
    return source && ((ctx) => {
      const src = source(ctx) as unknown[] | null;
      return src != null && Array.isArray(src) && src.length > 0 ? src[0] : null;
    });
  }],
  [list.Last, (node, child) => {
    const source = child(node.source);
    return source && ((ctx) => {
      const src = source(ctx) as unknown[] | null;
      return src != null && Array.isArray(src) && src.length > 0 ? src[src.length - 1] : null;
    });
  }],
  [aggregate.Count, (node, child) => {
    const source = child(node.source);
    return source && ((ctx) => {
      const items = source(ctx);
      return Array.isArray(items) ? items.filter((x) => x != null).length : 0;
    });
  }],
  [string.Concatenate, (node, child) => {
    const arg = argsOf(node, child);
    return arg && ((ctx) => {
      const args = arg(ctx) as string[];
      return args.some((x) => x == null) ? null : args.reduce((x, y) => x + y);
    });
  }],
  [string.Combine, (node, child) => {
    const source = child(node.source);
    const separator = node.separator == null ? null : child(node.separator);
    if (!source || separator === undefined) return undefined;
    return (ctx) => {
      const items = source(ctx) as unknown[] | null;
      const joiner = separator ? separator(ctx) : '';
      if (items == null) return null;
      const present = items.filter((x) => x != null);
      return present.length === 0 ? null : present.join(joiner as string);
    };
  }],
  [string.StartsWith, (node, child) => {
    const arg = argsOf(node, child);
    return arg && ((ctx) => {
      const args = arg(ctx) as string[];
      return args.some((x) => x == null) ? null : args[0]!.slice(0, args[1]!.length) === args[1];
    });
  }],
  [string.EndsWith, (node, child) => {
    const arg = argsOf(node, child);
    return arg && ((ctx) => {
      const args = arg(ctx) as string[];
      return args.some((x) => x == null) ? null : args[1] === '' || args[0]!.slice(-args[1]!.length) === args[1];
    });
  }],
  [clinical.ValueSetRef, (node) => valueSetOf(node)],
  [clinical.CodeRef, (node) => {
    const { name, library } = node as { name: string; library?: string };
    return (ctx) => {
      const codeCtx = library ? ctx.getLibraryContext(library) : ctx;
      const def = codeCtx.getCode(name) as Node;
      if (!def) return undefined;
      // CodeDef.exec: the code, with its system's id and version.
      if (!(def instanceof clinical.CodeDef)) throw GIVE_UP;
      const system = codeSystemOf(codeCtx, def.systemName) as { id: string; version?: string };
      return new datatypes.Code(def.id, system.id, system.version, def.display);
    };
  }],
  [clinical.InValueSet, (node, child) => {
    const code = child(node.code);
    const valueSet = node.valueset instanceof clinical.ValueSetRef ? valueSetOf(node.valueset as Node) : child(node.valueset);
    if (!code || !valueSet) return undefined;
    return (ctx) => {
      const value = code(ctx);
      if (value == null) return false;
      const vs = valueSet(ctx) as { isValueSet?: boolean; id: string; version?: string } | null;
      if (vs == null || !vs.isValueSet) throw GIVE_UP; // InValueSet.exec raises the error
      return expansionOf(vs, ctx).hasMatch(value);
    };
  }],
  [external.Retrieve, (node, child) => {
    const codes = node.codes == null ? null : child(node.codes);
    const dateRange = node.dateRange == null ? null : child(node.dateRange);
    if (codes === undefined || dateRange === undefined) return undefined;
    const { datatype, templateId, codeProperty, dateProperty } = node as { datatype: string; templateId?: string; codeProperty?: string; dateProperty?: string };
    return (ctx) => {
      const details: Record<string, unknown> = { datatype, ...(codeProperty ? { codeProperty } : {}), ...(dateProperty ? { dateProperty } : {}) };
      if (codes) {
        const executed = codes(ctx) as any;
        if (executed == null) return [];
        details.codes = Array.isArray(executed) ? executed : expansionOf(executed, ctx);
      }
      if (dateRange) details.dateRange = dateRange(ctx);
      if (templateId) details.templateId = templateId;
      // Context.findRecords passes the call up to the patient context, which asks its patient.
      const root = ctx.rootContext();
      if (typeof root.patient?.findRecords !== 'function') throw GIVE_UP;
      let records = root.patient.findRecords(templateId != null ? templateId : datatype, details) as any;
      if (records == null || isThenable(records)) throw GIVE_UP;
      if (details.codes) records = records.filter((r: unknown) => node.recordMatchesCodesOrVS(r, details.codes));
      if (details.dateRange && dateProperty) records = records.filter((r: any) => (details.dateRange as any)?.includes(r.getDateOrInterval(dateProperty)));
      if (Array.isArray(records)) ctx.evaluatedRecords.push(...records);
      else ctx.evaluatedRecords.push(records);
      return records;
    };
  }],
  [interval.Interval, (node, child) => {
    const low = child(node.low);
    const high = child(node.high);
    const lowClosed = node.lowClosed != null ? null : node.lowClosedExpression == null ? null : child(node.lowClosedExpression);
    const highClosed = node.highClosed != null ? null : node.highClosedExpression == null ? null : child(node.highClosedExpression);
    if (!low || !high || lowClosed === undefined || highClosed === undefined) return undefined;
    return (ctx) => {
      const lowValue = low(ctx);
      const highValue = high(ctx);
      const lc = node.lowClosed != null ? node.lowClosed : node.lowClosedExpression && (lowClosed as SyncFn)(ctx);
      const hc = node.highClosed != null ? node.highClosed : node.highClosedExpression && (highClosed as SyncFn)(ctx);
      let pointType: string | undefined;
      if (lowValue == null && highValue == null) {
        if (node.low.asTypeSpecifier && node.low.asTypeSpecifier.type === 'NamedTypeSpecifier') pointType = node.low.asTypeSpecifier.name;
        else if (node.high.asTypeSpecifier && node.high.asTypeSpecifier.type === 'NamedTypeSpecifier') pointType = node.high.asTypeSpecifier.name;
      }
      return new datatypes.Interval(lowValue, highValue, lc, hc, pointType);
    };
  }],
  [query.Query, compileQuery],
  // Operators measures use most (interval bounds, dates, ages, arithmetic, conversions).
  [interval.Start, (node, child) => boundTwin(node, child, 'start', math.MIN_DATETIME_VALUE)],
  [interval.End, (node, child) => boundTwin(node, child, 'end', math.MAX_DATETIME_VALUE)],
  [interval.Overlaps, binary((a, b, _ctx, node) => (a != null && b != null ? a.overlaps(b, node.precision) : null))],
  [overloaded.Includes, binary((container, contained, _ctx, node) => includes(container, contained, node.precision))],
  [overloaded.IncludedIn, binary((contained, container, _ctx, node) => includes(container, contained, node.precision))],
  [overloaded.Before, binary((a, b, _ctx, node) => (a == null || b == null ? null : (a instanceof datatypes.DateTime ? datetimeOps : interval).doBefore(a, b, node.precision)))],
  [overloaded.After, binary((a, b, _ctx, node) => (a == null || b == null ? null : (a instanceof datatypes.DateTime ? datetimeOps : interval).doAfter(a, b, node.precision)))],
  [overloaded.SameOrBefore, binary((a, b, _ctx, node) => (a != null && b != null ? a.sameOrBefore(b, node.precision != null ? node.precision.toLowerCase() : undefined) : null))],
  [overloaded.SameOrAfter, binary((a, b, _ctx, node) => (a != null && b != null ? a.sameOrAfter(b, node.precision != null ? node.precision.toLowerCase() : undefined) : null))],
  [datetimeOps.DateFrom, withArgs((_node, date) => (date != null ? date.getDate() : null))],
  [datetimeOps.DurationBetween, withArgs((node, args) => {
    if (args[0] == null || args[1] == null || typeof args[0].durationBetween !== 'function' || typeof args[1].durationBetween !== 'function') return null;
    const result = args[0].durationBetween(args[1], node.precision != null ? node.precision.toLowerCase() : undefined);
    return result != null && result.isPoint() ? result.low : result;
  })],
  [clinical.CalculateAgeAt, withArgs((node, [birthDate, asOf], ctx) => {
    // calculateAge (lib/elm/clinical.js): like types first, then the duration in the precision.
    if (birthDate == null || asOf == null) return null;
    let birth = birthDate;
    if (asOf.isDate && birth.isDateTime) birth = birth.getDate();
    else if (asOf.isDateTime && birth.isDate) birth = birth.getDateTime(ctx.getExecutionDateTime().timezoneOffset);
    const result = birth.durationBetween(asOf, node.precision.toLowerCase());
    return result?.isPoint() ? result.low : result;
  })],
  [arithmetic.Add, withArgs((_node, args) => arithmeticOf(args, add))],
  [arithmetic.Subtract, withArgs((_node, args) => arithmeticOf(args, subtract))],
  [arithmetic.Multiply, withArgs((_node, args) => arithmeticOf(args, multiply))],
  [arithmetic.Divide, withArgs((_node, args) => arithmeticOf(args, divide))],
  [quantityNode.Quantity, (node) => () => new quantity.Quantity(node.value, node.unit)],
  [type.ToQuantity, withArgs((node, arg) => node.convertValue(arg))],
  [list.Flatten, withArgs((_node, arg) => (Array.isArray(arg) && arg.every((x) => Array.isArray(x)) ? arg.reduce((x: unknown[], y: unknown[]) => x.concat(y), []) : arg))],
  [datetimeOps.DifferenceBetween, withArgs((node, args) => {
    if (args[0] == null || args[1] == null || typeof args[0].differenceBetween !== 'function' || typeof args[1].differenceBetween !== 'function') return null;
    const result = args[0].differenceBetween(args[1], node.precision != null ? node.precision.toLowerCase() : undefined);
    return result != null && result.isPoint() ? result.low : result;
  })],
  [type.ToConcept, withArgs((_node, arg) => (arg != null ? new datatypes.Concept([arg], arg.display) : null))],
  [type.ToString, withArgs((_node, arg) => (arg != null ? arg.toString() : null))],
  [type.ToDate, withArgs((_node, arg) => (arg == null ? null : arg.isDateTime ? arg.getDate() : datatypes.Date.parse(arg.toString())))],
  [type.ToDateTime, withArgs((_node, arg, ctx) => {
    if (arg == null) return null;
    return arg.isDate ? arg.getDateTime(ctx.getExecutionDateTime().timezoneOffset) : datatypes.DateTime.parse(arg.toString());
  })],
  [type.ToDecimal, withArgs((_node, arg) => {
    if (arg == null) return null;
    if (arg.isUncertainty) {
      return new datatypes.Uncertainty(math.limitDecimalPrecision(parseFloat(arg.low.toString())), math.limitDecimalPrecision(parseFloat(arg.high.toString())));
    }
    const decimal = math.limitDecimalPrecision(parseFloat(arg.toString()));
    return math.isValidDecimal(decimal) ? decimal : null;
  })],
  [type.ConvertQuantity, withArgs((_node, [value, unit]) => {
    if (value == null || unit == null) return undefined;
    try {
      return value.convertUnit(unit);
    } catch {
      return null; // not convertible to that unit: null, as the spec says
    }
  })],
  [string.Split, (node, child) => {
    const text = child(node.stringToSplit);
    const separator = child(node.separator);
    if (!text || !separator) return undefined;
    return (ctx) => {
      const value = text(ctx) as string | null;
      const by = separator(ctx) as string | null;
      if (value && by) return value.split(by);
      return value ? [value] : null;
    };
  }],
  [message.Message, (node, child) => {
    const parts = [node.source, node.condition, node.code, node.severity, node.message].map(child);
    if (parts.some((part) => !part)) return undefined;
    const [source, condition, code, severity, text] = parts as SyncFn[];
    return (ctx) => {
      const value = source!(ctx);
      if (condition!(ctx)) {
        // Evaluated as cql-execution does, for their errors; the silent listener ignores them.
        code!(ctx);
        severity!(ctx);
        text!(ctx);
        const listener = ctx.getMessageListener();
        // A listener that hears messages is told by cql-execution itself, so it hears each once
        // even if a later part of this subtree gives up and the subtree runs again.
        if (listener && typeof listener.onMessage === 'function' && !(listener instanceof messageListeners.NullMessageListener)) throw GIVE_UP;
      }
      return value;
    };
  }],
]);

/** A node that evaluates its operands (Expression.execArgs) and then `op` on their values, as most operators do. */
function withArgs(op: (node: Node, args: any, ctx: Ctx) => unknown): Compile {
  return (node, child) => {
    const args = argsOf(node, child);
    return args && ((ctx) => op(node, args(ctx), ctx));
  };
}

/** Start / End of an interval; the minimum / maximum DateTime takes the context's offset, as cql-execution sets it. */
function boundTwin(node: Node, child: (node: unknown) => SyncFn | undefined, bound: 'start' | 'end', extreme: unknown): SyncFn | undefined {
  const arg = node.arg == null ? () => undefined : child(node.arg);
  if (!arg) return undefined;
  return (ctx) => {
    const value = arg(ctx) as any;
    if (value == null) return null;
    const point = value[bound]();
    if (point && point.isDateTime && point.equals(extreme)) point.timezoneOffset = ctx.getTimezoneOffset();
    return point;
  };
}

/**
 * Add, Subtract, Multiply, Divide (lib/elm/arithmetic.js): null if an operand is; an uncertainty
 * meets a plain value as a point uncertainty; each pair combined by `step`; overflow is null.
 */
function arithmeticOf(args: any[] | null, step: (x: any, y: any) => unknown): unknown {
  if (args == null || args.some((x) => x == null)) return null;
  const result = args.reduce((x: any, y: any) => {
    if (x.isUncertainty && !y.isUncertainty) y = new datatypes.Uncertainty(y, y);
    else if (y.isUncertainty && !x.isUncertainty) x = new datatypes.Uncertainty(x, x);
    return step(x, y);
  });
  return math.overflowsOrUnderflows(result) ? null : result;
}

/** Quantities, dates and times, or (uncertain) numbers, as each operator's exec tells them apart. */
const isTemporal = (x: any, withTime: boolean): boolean => x.isQuantity || x.isDateTime || x.isDate || (withTime && x.isTime && x.isTime());

function add(x: any, y: any): unknown {
  if (isTemporal(x, true)) return quantity.doAddition(x, y);
  if (x.isUncertainty && y.isUncertainty) {
    return isTemporal(x.low, true)
      ? new datatypes.Uncertainty(quantity.doAddition(x.low, y.low), quantity.doAddition(x.high, y.high))
      : new datatypes.Uncertainty(x.low + y.low, x.high + y.high);
  }
  return x + y;
}

function subtract(x: any, y: any): unknown {
  if (isTemporal(x, false)) return quantity.doSubtraction(x, y);
  if (x.isUncertainty && y.isUncertainty) {
    return isTemporal(x.low, false)
      ? new datatypes.Uncertainty(quantity.doSubtraction(x.low, y.high), quantity.doSubtraction(x.high, y.low))
      : new datatypes.Uncertainty(x.low - y.high, x.high - y.low);
  }
  return x - y;
}

function multiply(x: any, y: any): unknown {
  if (x.isQuantity || y.isQuantity) return quantity.doMultiplication(x, y);
  if (x.isUncertainty && y.isUncertainty) {
    return x.low.isQuantity
      ? new datatypes.Uncertainty(quantity.doMultiplication(x.low, y.low), quantity.doMultiplication(x.high, y.high))
      : new datatypes.Uncertainty(x.low * y.low, x.high * y.high);
  }
  return x * y;
}

function divide(x: any, y: any): unknown {
  if (x.isQuantity) return quantity.doDivision(x, y);
  if (x.isUncertainty && y.isUncertainty) {
    return x.low.isQuantity
      ? new datatypes.Uncertainty(quantity.doDivision(x.low, y.high), quantity.doDivision(x.high, y.low))
      : new datatypes.Uncertainty(x.low / y.high, x.high / y.low);
  }
  return x / y;
}

/** Property.exec for a source value: the path read whole, else step by step (`parts`), methods called. */
function propertyValue(obj: any, path: string, parts: readonly string[]): unknown {
  if (obj instanceof ExpressionClass) throw GIVE_UP;
  let value = property(obj, path);
  if (value == null) {
    let current = obj;
    for (const part of parts) {
      const next = property(current, part);
      current = next instanceof Function ? next.call(current) : next;
    }
    value = current != null ? current : null;
  }
  return value instanceof Function ? value.call(obj) : value;
}

/**
 * The path a one-parameter function reads from its argument when its whole body is that read
 * (`define function ToString(value FHIR.string): value.value`, as most of FHIRHelpers is).
 */
function accessorPath(def: FunctionDefNode): string | undefined {
  const body = def.expression;
  if (def.parameters.length !== 1 || body?.constructor !== structured.Property || body.scope != null) return undefined;
  const { source } = body as { source?: Node };
  return source?.constructor === reusable.OperandRef && source.name === def.parameters[0]?.name ? (body.path as string) : undefined;
}

/**
 * fusedPrimitiveRead: for a call of an accessor reading `.value` (FHIRHelpers' ToString, ToBoolean,
 * ToInteger, ToDecimal...) whose argument is a one-step Property (`X.status`), the property's source
 * and path, so the call can ask the record for the element's plain JSON value (PRIMITIVE_VALUE)
 * instead of building the element to read its value. The Property twin's own steps otherwise.
 */
function fusedPrimitiveRead(def: FunctionDefNode, argument: Node, child: (node: unknown) => SyncFn | undefined): OnePropertyRead | undefined {
  return accessorPath(def) === 'value' ? onePropertyRead(argument, child) : undefined;
}

/** A one-step Property node's parts: what its twin reads the path from, and the path. */
interface OnePropertyRead {
  readonly source: SyncFn;
  readonly path: string;
  readonly parts: readonly string[];
}

/** onePropertyRead: `X.path` (one step, X an expression or a query alias scope), else undefined. */
function onePropertyRead(argument: Node, child: (node: unknown) => SyncFn | undefined): OnePropertyRead | undefined {
  if (argument?.constructor !== structured.Property) return undefined;
  const { scope, path } = argument as { scope?: string; path: string };
  if (path.includes('.')) return undefined;
  if (scope != null) return { source: (ctx) => ctx.get(scope), path, parts: [path] };
  if (!(argument.source instanceof ExpressionClass)) return undefined;
  const source = child(argument.source);
  return source === undefined ? undefined : { source, path, parts: [path] };
}

/** Accessor calls answered from the element's JSON value (for tests: proof the fused path is taken). */
export const fusedPrimitiveReads = { count: 0 };

/** `X.element is T` answered from the element's JSON form (for tests: proof the fused path is taken). */
export const fusedElementTests = { count: 0 };

/** FHIRHelpers ToCode/ToConcept calls answered from JSON (for tests: proof the path is taken). */
export const nativeConversions = { count: 0 };

type FunctionDefNode = { readonly expression?: Node; readonly parameters: readonly { readonly name: string }[] };
const natives = new WeakMap<object, ((value: unknown) => unknown) | null>();

/**
 * nativeOf gives a one-parameter function's value for a (defined) argument without running its
 * body, where the body is recognised: a read of a path of the argument (FHIRHelpers' ToString and
 * kin), or FHIRHelpers' `ToCode(coding FHIR.Coding)` and `ToConcept(concept FHIR.CodeableConcept)`
 * (every FHIRHelpers from 4.0.1 to 4.4.000 writes them alike), computed from the argument record's
 * JSON: the same Code or Concept the CQL builds through element objects, for a fraction of the
 * allocation. NOT_PLAIN (anything but a record of that type with plain JSON) runs the body.
 */
function nativeOf(def: FunctionDefNode): ((value: unknown) => unknown) | undefined {
  let known = natives.get(def);
  if (known === undefined) {
    const path = accessorPath(def);
    const parts = path?.split('.');
    known = path !== undefined ? (value) => propertyValue(value, path, parts as string[]) : isToCode(def) ? codeFromCodingRecord : isToConcept(def) ? conceptFromRecord(def) : null;
    natives.set(def, known);
  }
  return known ?? undefined;
}

/** `if <param> is null then null else <rest>`: the body's rest, else undefined. */
function unlessNull(def: FunctionDefNode): { readonly param: string; readonly rest: Node } | undefined {
  const body = def.expression;
  const param = def.parameters.length === 1 ? def.parameters[0]?.name : undefined;
  if (param === undefined || body?.constructor !== conditional.If) return undefined;
  const test = body.condition;
  if (test?.constructor !== nullological.IsNull || !isOperand(test.arg, param)) return undefined;
  const then = body.th;
  const isNullValue = then?.constructor === nullological.Null || (then?.constructor === type.As && then.arg?.constructor === nullological.Null);
  return isNullValue ? { param, rest: body.els } : undefined;
}

function isOperand(node: Node, param: string): boolean {
  return node?.constructor === reusable.OperandRef && node.name === param;
}

/** `<param>.<field>.value`, as one Property or two. */
function readsValueOf(node: Node, param: string, field: string): boolean {
  if (node?.constructor !== structured.Property || node.scope != null) return false;
  if (node.path === `${field}.value`) return isOperand(node.source, param);
  const inner = node.source;
  return node.path === 'value' && inner?.constructor === structured.Property && inner.scope == null && inner.path === field && isOperand(inner.source, param);
}

const CODE_FIELDS = ['code', 'system', 'version', 'display'] as const;

function isToCode(def: FunctionDefNode): boolean {
  const parts = unlessNull(def);
  const instance = parts?.rest;
  if (parts === undefined || instance?.constructor !== instanceNodes.Instance || instance.classType !== '{urn:hl7-org:elm-types:r1}Code') return false;
  const elements = instance.element as { name: string; value: Node }[];
  return elements.length === CODE_FIELDS.length && CODE_FIELDS.every((field) => elements.some((e) => e.name === field && readsValueOf(e.value, parts.param, field)));
}

function isToConcept(def: FunctionDefNode): boolean {
  const parts = unlessNull(def);
  const instance = parts?.rest;
  if (parts === undefined || instance?.constructor !== instanceNodes.Instance || instance.classType !== '{urn:hl7-org:elm-types:r1}Concept') return false;
  const elements = instance.element as { name: string; value: Node }[];
  const codes = elements.find((e) => e.name === 'codes')?.value;
  const display = elements.find((e) => e.name === 'display')?.value;
  if (elements.length !== 2 || codes?.constructor !== query.Query || !readsValueOf(display, parts.param, 'text')) return false;
  // `concept.coding C return ToCode(C)`, nothing else.
  const [source] = codes.sources as Node[];
  const source0 = source?.expression;
  if ((codes.sources as Node[]).length !== 1 || codes.letClauses.length > 0 || codes.relationship.length > 0 || codes.where != null || codes.aggregateClause != null || codes.sortClause != null) return false;
  if (source0?.constructor !== structured.Property || source0.scope != null || source0.path !== 'coding' || !isOperand(source0.source, parts.param)) return false;
  const returned = codes.returnClause?.expression;
  if (returned?.constructor !== reusable.FunctionRef || (returned.args as Node[] | undefined)?.length !== 1) return false;
  const alias = (returned.args as Node[])[0];
  if (alias?.constructor !== query.AliasRef || alias.name !== source.alias) return false;
  const toCode = boundCallOf(returned)?.def;
  return toCode !== undefined && isToCode(toCode as unknown as FunctionDefNode);
}

/** The record's JSON when it is a record of the FHIR class `className` (cql-exec-fhir's or ours). */
function jsonOfRecord(value: unknown, className: string): Record<string, unknown> | undefined {
  if (typeof value !== 'object' || value === null || typeof (value as { _typeHierarchy?: unknown })._typeHierarchy !== 'function') return undefined;
  const record = value as { readonly _typeInfo?: { readonly name?: unknown }; readonly _json?: unknown };
  const name = record._typeInfo?.name;
  if (name !== className && name !== `FHIR.${className}`) return undefined;
  const json = record._json;
  return typeof json === 'object' && json !== null && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
}

/**
 * The Code ToCode builds from a Coding's JSON: each of `code.value`, `system.value`... is the JSON
 * value, or null when absent (a Property of nothing).
 */
function codeOfCodingJson(json: unknown): unknown {
  const coding = plainCoding(json);
  return coding === undefined ? NOT_PLAIN : new datatypes.Code(coding.code ?? null, coding.system ?? null, coding.version ?? null, coding.display ?? null);
}

function codeFromCodingRecord(value: unknown): unknown {
  if (value === null) return null;
  const json = jsonOfRecord(value, 'Coding');
  const code = json === undefined ? NOT_PLAIN : codeOfCodingJson(json);
  if (code !== NOT_PLAIN) nativeConversions.count++;
  return code;
}

/** ToConcept from a CodeableConcept's JSON: its codings' Codes (distinct unless the query says `all`), its text. */
function conceptFromRecord(def: FunctionDefNode): (value: unknown) => unknown {
  const codesQuery = ((def.expression as Node).els.element as { name: string; value: Node }[]).find((e) => e.name === 'codes')?.value;
  const distinct = codesQuery.isDistinct() as boolean;
  return (value) => {
    if (value === null) return null;
    const json = jsonOfRecord(value, 'CodeableConcept');
    if (json === undefined || json._text != null) return NOT_PLAIN;
    const { coding, text } = json;
    // A malformed text (or coding, below) is read by the body, through the record, which says so.
    if (text != null && typeof text !== 'string') return NOT_PLAIN;
    let codes: unknown[] | null = null;
    if (Array.isArray(coding)) {
      codes = new Array<unknown>(coding.length);
      for (let i = 0; i < coding.length; i++) {
        const item: unknown = coding[i];
        const code = item == null ? null : codeOfCodingJson(item);
        if (code === NOT_PLAIN) return NOT_PLAIN;
        codes[i] = code;
      }
      if (distinct) codes = list.toDistinctList(codes) as unknown[];
    } else if (coding != null) {
      return NOT_PLAIN;
    }
    nativeConversions.count++;
    return new datatypes.Concept(codes, text ?? null);
  };
}

function property(obj: any, path: string): any {
  let value;
  if (obj != null) {
    value = obj[path];
    if (value === undefined && typeof obj.get === 'function') value = obj.get(path);
  }
  return value;
}

function isSystemType(spec: any): boolean {
  switch (spec.type) {
    case 'NamedTypeSpecifier':
      return (spec.name as string).startsWith('{urn:hl7-org:elm-types:r1}');
    case 'ListTypeSpecifier':
      return isSystemType(spec.elementType);
    case 'TupleTypeSpecifier':
      return (spec.element as any[]).every((e) => isSystemType(e.elementType));
    case 'IntervalTypeSpecifier':
      return isSystemType(spec.pointType);
    case 'ChoiceTypeSpecifier':
      return (spec.choice as any[]).every((c) => isSystemType(c));
    default:
      return false;
  }
}

/**
 * And (decisive false) / Or (decisive true): the first decisive operand answers; otherwise
 * ThreeValuedLogic's answer over the values, which is null if one was null, else the other truth value.
 */
function logicalTwin(node: Node, child: (node: unknown) => SyncFn | undefined, decisive: boolean): SyncFn | undefined {
  if (!Array.isArray(node.args)) return undefined;
  const operands = (node.args as unknown[]).map(child);
  if (operands.some((o) => !o)) return undefined;
  const all = operands as SyncFn[];
  return (ctx) => {
    let sawNull = false;
    for (const operand of all) {
      const value = operand(ctx);
      if (value === decisive) return decisive;
      if (value === null) sawNull = true;
    }
    return sawNull ? null : !decisive;
  };
}

/** Less, Greater, LessOrEqual, GreaterOrEqual (lib/elm/comparison.js): uncertainties compared by `method`. */
function comparisonTwin(method: string): Compile {
  return binary((a, b) => {
    const x = datatypes.Uncertainty.from(a);
    const y = datatypes.Uncertainty.from(b);
    return x == null || y == null ? null : x[method](y);
  });
}

/** In and Contains (lib/elm/overloaded.js): membership of a list or an interval. */
function contains(container: any, item: unknown, precision: unknown): unknown {
  if (container == null) return false;
  if (Array.isArray(container)) return list.doContains(container, item);
  if (item == null) return null;
  return interval.doContains(container, item, precision);
}

/** Includes and IncludedIn (lib/elm/overloaded.js): a sublist or subinterval. */
function includes(container: any, contained: unknown, precision: unknown): unknown {
  if (container == null || contained == null) return null;
  return (Array.isArray(container) ? list : interval).doIncludes(container, contained, precision);
}

/** Compiled twins, by node; also read at run time for define and function bodies. */
const compiledBodies = new WeakMap<object, SyncFn>();
const unsupported = new WeakSet<object>();

/** compile returns the node's twin (every part supported), or undefined. */
function compile(node: unknown, child: (node: unknown) => SyncFn | undefined = compileChild): SyncFn | undefined {
  if (!(node instanceof ExpressionClass)) return undefined;
  const known = compiledBodies.get(node);
  if (known !== undefined || unsupported.has(node)) return known;
  // A node reached again while its own parts compile (a cycle) is not supported.
  unsupported.add(node);
  const twin = TWINS.get(node.constructor)?.(node as Node, child);
  unsupported.delete(node);
  if (twin === undefined) unsupported.add(node);
  else compiledBodies.set(node, twin);
  return twin;
}

function compileChild(node: unknown): SyncFn | undefined {
  return compile(node);
}

/** What {@link compileSync} did, for tests and diagnostics. */
export interface SyncCompilation {
  /** Subtrees that now run synchronously (their roots). */
  readonly subtrees: number;
  /** Nodes left to cql-execution's asynchronous evaluation. */
  readonly asynchronous: number;
}

/** How often a subtree gave up and ran the original evaluation since the process started, and the last one's node. */
export const syncFallbacks: { count: number; last: string | undefined } = { count: 0, last: undefined };

const compiledLibraries = new WeakSet<object>();

/**
 * compileSync gives every maximal subtree of supported nodes in `library` and its includes a
 * synchronous `execute` (see the module comment). Call once per built library, after
 * bindOverloads and before any evaluation; a library already compiled is skipped.
 */
export function compileSync(library: Library): SyncCompilation {
  let subtrees = 0;
  let asynchronous = 0;
  const seen = new Set<object>();
  const install = (node: unknown): void => {
    if (typeof node !== 'object' || node === null || seen.has(node)) return;
    seen.add(node);
    if (node instanceof ExpressionClass) {
      const twin = compile(node);
      if (twin !== undefined) {
        subtrees++;
        Object.defineProperty(node, 'execute', { value: synchronousExecute(twin), configurable: true, writable: true });
        return;
      }
      asynchronous++;
    }
    for (const value of Object.values(node)) install(value);
  };
  const visitLibrary = (lib: Library): void => {
    if (compiledLibraries.has(lib)) return;
    compiledLibraries.add(lib);
    for (const part of [lib.parameters, lib.expressions, lib.functions]) install(part);
    for (const included of Object.values(lib.includes as Record<string, Library | undefined>)) if (included !== undefined) visitLibrary(included);
  };
  visitLibrary(library);
  return Object.freeze({ subtrees, asynchronous });
}

function synchronousExecute(twin: SyncFn): (this: Node, ctx: Ctx) => unknown {
  return function execute(this: Node, ctx: Ctx): unknown {
    try {
      return twin(ctx);
    } catch {
      syncFallbacks.count++;
      syncFallbacks.last = `${this.constructor.name as string} ${this.localId as string | undefined ?? ''}`;
      return originalExecute(this, ctx);
    }
  };
}
