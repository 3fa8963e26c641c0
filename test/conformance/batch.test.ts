import { describe, expect, it } from 'vitest';
import { buildLibraryText, createBatchCompiler, defineName } from '../../scripts/cql-conformance/batch.ts';
import type { CompileOutcome } from '../../scripts/cql-conformance/compile.ts';
import type { ConformanceTest } from '../../scripts/cql-conformance/suite.ts';

const test = (name: string, expression: string, outputs: string[] = ['1']): ConformanceTest => ({
  id: `S/G/${name}`,
  suite: 'S',
  group: 'G',
  name,
  expression,
  expectation: 'value',
  outputs,
  ordered: true,
});

/**
 * A stand-in compiler: every line containing BAD is an error on that line, NOWHERE is an error
 * pinned on no line; otherwise the "ELM" is the list of define names, so tests can see batches.
 */
function fakeCompiler(log: string[][]): (text: string) => Promise<CompileOutcome> {
  return async (text) => {
    const lines = text.split('\n');
    log.push(lines.filter((l) => l.startsWith('define')).map((l) => l.slice(8, -2)));
    const problems = lines.flatMap((l, i) => (l.includes('BAD') ? [{ message: 'bad', line: i + 1 }] : []));
    if (text.includes('NOWHERE')) problems.push({ message: 'lost', line: -1 });
    return problems.length > 0 ? { elm: null, problems } : { elm: { defines: log[log.length - 1] }, problems: [] };
  };
}

describe('buildLibraryText', () => {
  it('puts each expression and output in its own define, multi-line text intact', () => {
    const { text, spans } = buildLibraryText('L', [test('a', '1 +\n2', ['3']), test('b', 'x', [])]);
    expect(text.split('\n')[0]).toBe("library L version '1.0.0'");
    expect(spans.map((s) => [s.define, s.startLine, s.endLine])).toEqual([
      [defineName(0), 3, 5],
      [defineName(0, 0), 7, 8],
      [defineName(1), 10, 11],
    ]);
    expect(text).toContain('define "t0":\n1 +\n2\n');
  });
});

describe('createBatchCompiler', () => {
  it('compiles a clean batch once, all tests sharing its ELM', async () => {
    const log: string[][] = [];
    const compiled = await createBatchCompiler(fakeCompiler(log))([test('a', '1'), test('b', '2')]);
    expect(log).toHaveLength(1);
    expect(compiled.every((c) => c.elm !== null && c.expressionErrors.length === 0)).toBe(true);
    expect(new Set(compiled.map((c) => c.batchId)).size).toBe(1);
  });

  it('compiles a failing test alone and the rest together again, keeping input order', async () => {
    const log: string[][] = [];
    const tests = [test('a', '1'), test('b', 'BAD'), test('c', '3'), test('d', '4', ['BAD'])];
    const compiled = await createBatchCompiler(fakeCompiler(log))(tests);
    expect(compiled.map((c) => c.test.name)).toEqual(['a', 'b', 'c', 'd']);
    expect(compiled.map((c) => c.elm !== null)).toEqual([true, false, true, false]);
    expect(compiled[1]?.expressionErrors.map((p) => p.message)).toEqual(['bad']);
    expect(compiled[3]?.expressionErrors).toEqual([]);
    expect(compiled[3]?.outputErrors).toEqual([[{ message: 'bad', line: 7 }]]);
    expect(log).toHaveLength(4); // the batch, the two clean tests, each failing test alone
  });

  it('bisects when a problem points at no define, down to the test that owns it', async () => {
    const log: string[][] = [];
    const tests = [test('a', '1'), test('b', '2'), test('c', 'NOWHERE'), test('d', '4')];
    const compiled = await createBatchCompiler(fakeCompiler(log))(tests);
    expect(compiled.map((c) => c.expressionErrors.length)).toEqual([0, 0, 1, 0]);
    expect(compiled.filter((c) => c.elm === null).map((c) => c.test.name)).toEqual(['c']);
  });
});
