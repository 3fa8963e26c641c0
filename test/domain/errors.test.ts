import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CairnError, ERROR_CODES, formatProblem } from '../../src/domain/errors.ts';
import { PROJECT_ROOT } from '../support/knowledge.ts';

describe('error catalogue', () => {
  it('documents every code in the README table, and the README lists no code that does not exist', async () => {
    const readme = await readFile(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
    const documented = [...readme.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(new Set(documented)).toEqual(new Set(Object.keys(ERROR_CODES)));
  });

  const cases = [
    { name: 'CQL location', problem: { code: 'CQL_COMPILE', file: 'cql/A.cql', line: 3, column: 7, message: 'bad' }, want: 'cql/A.cql:3:7 [CQL_COMPILE] bad' },
    { name: 'JSON path with hint', problem: { code: 'RULE_REFERENCE', file: 'rules/r.json', path: '$.cql.facts[0]', message: 'no define', hint: 'did you mean "X"?' }, want: 'rules/r.json $.cql.facts[0] [RULE_REFERENCE] no define (hint: did you mean "X"?)' },
    { name: 'no location', problem: { code: 'CONFIG_INVALID', message: 'bad' }, want: '[CONFIG_INVALID] bad' },
  ] as const;
  for (const { name, problem, want } of cases) {
    it(`formats a problem with ${name}`, () => expect(formatProblem(problem)).toBe(want));
  }

  it('carries code, problems and frozen context', () => {
    const error = new CairnError('INPUT_INVALID', 'nope', { context: { file: 'x' } });
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe('INPUT_INVALID');
    expect(Object.isFrozen(error.context)).toBe(true);
  });
});
