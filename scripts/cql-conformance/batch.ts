/**
 * Compiles many tests as one library (one define per test expression and per expected output)
 * and isolates the tests that do not compile, so one bad test cannot fail its neighbours.
 */
import type { CompileLibrary, CompileProblem } from './compile.ts';
import type { ConformanceTest } from './suite.ts';

/** CompiledTest is one test's share of a compiled library. */
export interface CompiledTest {
  readonly test: ConformanceTest;
  /** elm is the library holding this test's defines; null when it did not compile. */
  readonly elm: unknown;
  /** batchId identifies the library, so callers load each library once. */
  readonly batchId: number;
  readonly expressionDefine: string;
  readonly outputDefines: readonly string[];
  readonly expressionErrors: readonly CompileProblem[];
  readonly outputErrors: readonly (readonly CompileProblem[])[];
}

interface DefineSpan {
  readonly define: string;
  readonly startLine: number;
  readonly endLine: number;
}

interface LibraryText {
  readonly text: string;
  readonly spans: readonly DefineSpan[];
}

/** defineName returns the identifier used for a test's expression (`output` undefined) or output. */
export function defineName(index: number, output?: number): string {
  return output === undefined ? `t${index}` : `t${index}_out${output}`;
}

/** buildLibraryText lays the tests out as defines, each starting on its own line. */
export function buildLibraryText(libraryName: string, tests: readonly ConformanceTest[]): LibraryText {
  const lines = [`library ${libraryName} version '1.0.0'`, ''];
  const spans: DefineSpan[] = [];
  const add = (define: string, body: string): void => {
    const startLine = lines.length + 1;
    lines.push(`define "${define}":`, ...body.split(/\r?\n/));
    spans.push({ define, startLine, endLine: lines.length });
    lines.push('');
  };
  tests.forEach((test, i) => {
    add(defineName(i), test.expression);
    test.outputs.forEach((output, o) => add(defineName(i, o), output));
  });
  return { text: lines.join('\n'), spans };
}

function spanOf(spans: readonly DefineSpan[], problem: CompileProblem): DefineSpan | null {
  const { line } = problem;
  if (line === null) return null;
  return spans.find((s) => line >= s.startLine && line <= s.endLine) ?? null;
}

/**
 * createBatchCompiler returns a function compiling a list of tests. The compiler yields ELM only
 * for a library without errors, so a failing batch is split: tests a problem points at are
 * compiled alone, the rest together again; problems pointing nowhere make the batch bisect.
 */
export function createBatchCompiler(compile: CompileLibrary): (tests: readonly ConformanceTest[]) => Promise<CompiledTest[]> {
  let batches = 0;

  const compileBatch = async (tests: readonly ConformanceTest[]): Promise<CompiledTest[]> => {
    if (tests.length === 0) return [];
    const batchId = ++batches;
    const library = buildLibraryText(`ConformanceBatch${batchId}`, tests);
    const outcome = await compile(library.text);
    if (outcome.elm !== null || tests.length === 1) {
      const byDefine = new Map<string, CompileProblem[]>();
      const unpinned: CompileProblem[] = [];
      for (const problem of outcome.problems) {
        const span = spanOf(library.spans, problem);
        if (span) byDefine.set(span.define, [...(byDefine.get(span.define) ?? []), problem]);
        else unpinned.push(problem);
      }
      return tests.map((test, i) => ({
        test,
        elm: outcome.elm,
        batchId,
        expressionDefine: defineName(i),
        outputDefines: test.outputs.map((_, o) => defineName(i, o)),
        // Alone in its library, a test owns every problem, including those pinned on no define.
        expressionErrors: [...(byDefine.get(defineName(i)) ?? []), ...unpinned],
        outputErrors: test.outputs.map((_, o) => byDefine.get(defineName(i, o)) ?? []),
      }));
    }
    const suspects = new Set<ConformanceTest>();
    for (const problem of outcome.problems) {
      const define = spanOf(library.spans, problem)?.define;
      const index = define === undefined ? -1 : Number(/^t(\d+)/.exec(define)?.[1] ?? -1);
      const test = tests[index];
      if (test) suspects.add(test);
    }
    let parts: (readonly ConformanceTest[])[];
    if (suspects.size === 0) {
      const half = Math.ceil(tests.length / 2);
      parts = [tests.slice(0, half), tests.slice(half)];
    } else {
      parts = [tests.filter((t) => !suspects.has(t)), ...[...suspects].map((t) => [t])];
    }
    const compiledParts: CompiledTest[] = [];
    for (const part of parts) compiledParts.push(...(await compileBatch(part)));
    const compiled = new Map(compiledParts.map((c) => [c.test, c]));
    return tests.map((t) => compiled.get(t)).filter((c): c is CompiledTest => c !== undefined);
  };

  return compileBatch;
}
