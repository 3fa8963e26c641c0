/**
 * Compiles one self-contained CQL library for the harness through our compiler module
 * (src/cql-engine/compiler.ts), reduced to what batching needs: the ELM, or the problems with
 * the source line each one points at.
 */
import { createCqlCompiler } from '../../src/cql-engine/compiler.ts';

export interface CompileProblem {
  readonly message: string;
  /** line is the 1-based source line the compiler pinned the problem on, if any. */
  readonly line: number | null;
}

/** CompileOutcome has ELM only when the library compiled without errors. */
export type CompileOutcome =
  | { readonly elm: unknown; readonly problems: readonly [] }
  | { readonly elm: null; readonly problems: readonly CompileProblem[] };

/** CompileLibrary compiles the text of one library that includes no other library. */
export type CompileLibrary = (text: string) => Promise<CompileOutcome>;

/** createLibraryCompiler wraps one shared-compiler instance (model info is parsed once). */
export function createLibraryCompiler(): CompileLibrary {
  const compiler = createCqlCompiler();
  return async (text) => {
    const result = await compiler.compile([{ file: 'conformance.cql', text }], []);
    const library = result.libraries[0];
    if (result.problems.length === 0 && library) return { elm: library.elm, problems: [] };
    const problems = result.problems.map((p) => ({ message: p.message, line: p.line ?? null }));
    return { elm: null, problems: problems.length > 0 ? problems : [{ message: 'the compiler returned no library', line: null }] };
  };
}
