/**
 * Runs defines of a data-independent library with cql-execution, one at a time, so that one
 * define that throws cannot hide the results of the others.
 */
import { createRequire } from 'node:module';
import { DateTime, Library, Results, UnfilteredContext } from 'cql-execution';

export type Evaluation = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: string };

/** LibraryEvaluator evaluates one named define of a loaded library. */
export type LibraryEvaluator = (define: string) => Promise<Evaluation>;

/** ExecutionInstant is the fixed "now" of a run: the ISO text and its parts, in UTC. */
export interface ExecutionInstant {
  readonly iso: string;
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  readonly millisecond: number;
}

/** parseExecutionInstant reads `YYYY-MM-DDThh:mm:ss.fffZ`; the run's clock is always UTC. */
export function parseExecutionInstant(iso: string): ExecutionInstant {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z$/.exec(iso);
  if (!m) throw new Error(`execution time must look like 2024-01-01T12:00:00.000Z, got '${iso}'`);
  const [year, month, day, hour, minute, second, millisecond] = m.slice(1).map(Number) as [
    number, number, number, number, number, number, number,
  ];
  return { iso, year, month, day, hour, minute, second, millisecond };
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    // AnnotatedError wraps the original; its message already names expression and locator.
    return error.message.replace(/\s+/g, ' ').trim();
  }
  return String(error);
}

/** Node types cql-execution's builder special-cases rather than looking up by name. */
const BUILT_SPECIALLY = new Set(['FunctionRef', 'Literal']);

/** implementedElmTypes is the set of ELM node types cql-execution can build (its `expressions` module). */
function implementedElmTypes(): ReadonlySet<string> {
  const registry = createRequire(import.meta.url)('cql-execution/lib/elm/expressions.js') as Record<string, unknown>;
  return new Set([...Object.keys(registry).filter((k) => typeof registry[k] === 'function'), ...BUILT_SPECIALLY]);
}

/**
 * unimplementedTypes lists ELM node types under `node` that cql-execution cannot build. Its
 * builder turns an unknown node into null, so such a define would silently evaluate to null (or
 * fail on a null child): the harness reports it as unimplemented instead.
 */
export function unimplementedTypes(node: unknown, implemented: ReadonlySet<string>, found = new Set<string>()): Set<string> {
  if (Array.isArray(node)) {
    for (const child of node) unimplementedTypes(child, implemented, found);
  } else if (typeof node === 'object' && node !== null) {
    const record = node as Record<string, unknown>;
    if (typeof record['type'] === 'string' && !implemented.has(record['type'])) found.add(record['type']);
    for (const [key, child] of Object.entries(record)) {
      if (key !== 'annotation') unimplementedTypes(child, implemented, found);
    }
  }
  return found;
}

function defineElm(elm: unknown, define: string): unknown {
  const library = (elm as { library?: { statements?: { def?: unknown } } } | null)?.library;
  const defs = library?.statements?.def;
  if (!Array.isArray(defs)) return undefined;
  return (defs as { name?: unknown; expression?: unknown }[]).find((d) => d.name === define)?.expression;
}

/**
 * loadLibrary builds a cql-execution Library from ELM JSON and returns an evaluator whose
 * Now()/Today() are `at`; `prepare` changes the built library first (Cairn's engine binds and
 * compiles it). Throws when cql-execution cannot load the ELM at all.
 */
export function loadLibrary(elm: unknown, at: ExecutionInstant, prepare: (library: Library) => void = () => undefined): LibraryEvaluator {
  const library = new Library(elm);
  prepare(library);
  const implemented = implementedElmTypes();
  const now = new DateTime(at.year, at.month, at.day, at.hour, at.minute, at.second, at.millisecond, 0);
  return async (define) => {
    const expression: unknown = library.expressions[define];
    if (!expression) return { ok: false, error: `define "${define}" is not in the loaded library` };
    const missing = [...unimplementedTypes(defineElm(elm, define), implemented)];
    if (missing.length > 0) return { ok: false, error: `cql-execution has no implementation of ELM ${missing.join(', ')}` };
    // A fresh context per define: a failure or cached value from one test cannot leak into another.
    const context = new UnfilteredContext(library, new Results(), undefined, {}, now);
    try {
      const value: unknown = await library.expressions[define].execute(context);
      return { ok: true, value };
    } catch (error) {
      return { ok: false, error: describeError(error) };
    }
  };
}
