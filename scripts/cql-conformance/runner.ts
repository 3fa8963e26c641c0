/**
 * Runs conformance tests: compile in batches, evaluate every define with cql-execution, and
 * judge each test against what it expects (a value, a runtime error, or a compile error).
 */
import type { CompiledTest } from './batch.ts';
import { compareResults, formatValue } from './compare.ts';
import type { CompileProblem } from './compile.ts';
import type { Library } from 'cql-execution';
import { loadLibrary, type Evaluation, type ExecutionInstant, type LibraryEvaluator } from './evaluate.ts';
import type { ConformanceTest } from './suite.ts';

/**
 * passed: the outcome is the one expected. failed: the engine produced a different outcome (a
 * wrong value, a value where an error was expected, or an error of the wrong kind). error: the
 * test expected a value but compiling or evaluating its expression failed, or its expected
 * output could not be compiled or evaluated.
 */
export type Status = 'passed' | 'failed' | 'error';

export interface TestResult {
  readonly test: ConformanceTest;
  readonly status: Status;
  /** detail says why a test did not pass (empty when it passed). */
  readonly detail: string;
  readonly actual: string;
  readonly expected: string;
}

function problemText(problems: readonly CompileProblem[]): string {
  return problems.map((p) => (p.line === null ? p.message : `line ${p.line}: ${p.message}`)).join('; ');
}

function outcomeText(evaluation: Evaluation): string {
  return evaluation.ok ? formatValue(evaluation.value) : `runtime error: ${evaluation.error}`;
}

function result(test: ConformanceTest, status: Status, detail: string, actual: string, expected: string): TestResult {
  return { test, status, detail, actual, expected };
}

async function judgeValue(compiled: CompiledTest, evaluate: LibraryEvaluator): Promise<TestResult> {
  const { test } = compiled;
  const expectedText = test.outputs.join(' | ');
  const outputErrors = compiled.outputErrors.flat();
  if (outputErrors.length > 0) {
    return result(test, 'error', `expected output does not compile: ${problemText(outputErrors)}`, '', expectedText);
  }
  if (compiled.expressionErrors.length > 0) {
    const text = problemText(compiled.expressionErrors);
    return result(test, 'error', `compile failed: ${text}`, text, expectedText);
  }
  const expectedValues: unknown[] = [];
  for (const define of compiled.outputDefines) {
    const evaluation = await evaluate(define);
    if (!evaluation.ok) return result(test, 'error', `expected output does not evaluate: ${evaluation.error}`, '', expectedText);
    expectedValues.push(evaluation.value);
  }
  const actual = await evaluate(compiled.expressionDefine);
  if (!actual.ok) return result(test, 'error', `evaluation failed: ${actual.error}`, outcomeText(actual), expectedText);
  // Several <output> elements describe one collection result (schema: Test.output 0..*).
  const expected = expectedValues.length === 1 ? expectedValues[0] : expectedValues;
  const difference = compareResults(actual.value, expected, { ordered: test.ordered });
  const shown = `${expectedText} = ${formatValue(expected)}`;
  if (difference) return result(test, 'failed', difference, formatValue(actual.value), shown);
  return result(test, 'passed', '', formatValue(actual.value), shown);
}

async function judgeRuntimeError(compiled: CompiledTest, evaluate: LibraryEvaluator): Promise<TestResult> {
  const { test } = compiled;
  if (compiled.expressionErrors.length > 0) {
    const text = problemText(compiled.expressionErrors);
    return result(test, 'failed', `compile error where a runtime error was expected: ${text}`, text, 'runtime error');
  }
  const actual = await evaluate(compiled.expressionDefine);
  if (actual.ok) return result(test, 'failed', 'evaluated without error; expected a runtime error', outcomeText(actual), 'runtime error');
  return result(test, 'passed', '', outcomeText(actual), 'runtime error');
}

function judgeCompileError(compiled: CompiledTest): TestResult {
  const { test } = compiled;
  const wanted = test.expectation === 'syntax-error' ? 'syntax error' : 'semantic error';
  if (compiled.expressionErrors.length > 0) return result(test, 'passed', '', problemText(compiled.expressionErrors), wanted);
  return result(test, 'failed', `compiled without error; expected a ${wanted}`, 'compiled', wanted);
}

function unloadable(message: string): LibraryEvaluator {
  return () => Promise.resolve({ ok: false, error: message });
}

/** judgeTests evaluates compiled tests and returns one result per test, in input order. */
export async function judgeTests(compiled: readonly CompiledTest[], at: ExecutionInstant, prepare?: (library: Library) => void): Promise<TestResult[]> {
  const evaluators = new Map<number, LibraryEvaluator>();
  const evaluatorFor = (c: CompiledTest): LibraryEvaluator => {
    let evaluator = evaluators.get(c.batchId);
    if (!evaluator) {
      try {
        evaluator = c.elm === null ? unloadable('the compiler produced no ELM') : loadLibrary(c.elm, at, prepare);
      } catch (error) {
        evaluator = unloadable(`cql-execution could not load the ELM: ${error instanceof Error ? error.message : String(error)}`);
      }
      evaluators.set(c.batchId, evaluator);
    }
    return evaluator;
  };
  const results: TestResult[] = [];
  for (const c of compiled) {
    const evaluate = evaluatorFor(c);
    switch (c.test.expectation) {
      case 'value':
        results.push(await judgeValue(c, evaluate));
        break;
      case 'runtime-error':
        results.push(await judgeRuntimeError(c, evaluate));
        break;
      case 'semantic-error':
      case 'syntax-error':
        results.push(judgeCompileError(c));
        break;
    }
  }
  return results;
}
