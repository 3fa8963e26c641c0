import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseSkipList, unknownSkips } from '../../scripts/cql-conformance/skip-list.ts';
import { loadSuites } from '../../scripts/cql-conformance/suite.ts';

const SKIP_LIST = fileURLToPath(new URL('../../scripts/cql-conformance/skip-list.txt', import.meta.url));
const SUITE_DIR = fileURLToPath(new URL('../../../shared/fixtures/cql-tests/tests/cql', import.meta.url));

describe('parseSkipList', () => {
  it('reads id | reason lines and ignores comments and blank lines', () => {
    const list = parseSkipList('# header\n\nS/G/T1 | engine does X\n  S/G 2/T2 | needs Y  \n');
    expect([...list.reasons]).toEqual([
      ['S/G/T1', 'engine does X'],
      ['S/G 2/T2', 'needs Y'],
    ]);
    expect(list.problems).toEqual([]);
  });

  const bad = [
    { name: 'an entry without a reason', text: 'S/G/T', want: /line 1: S\/G\/T has no reason/ },
    { name: 'an empty reason', text: 'S/G/T | ', want: /has no reason/ },
    { name: 'an id that is not suite/group/test', text: 'S/T | why', want: /not <suite>\/<group>\/<test>/ },
    { name: 'a duplicate entry', text: 'S/G/T | a\nS/G/T | b', want: /line 2: S\/G\/T is listed twice/ },
  ];
  for (const { name, text, want } of bad) {
    it(`reports ${name}`, () => {
      const { problems } = parseSkipList(text);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(want);
    });
  }

  it('finds entries naming tests that do not exist', () => {
    const list = parseSkipList('S/G/Gone | old\nS/G/Here | still failing');
    expect(unknownSkips(list, new Set(['S/G/Here']))).toEqual(['S/G/Gone']);
  });

  it('the checked-in skip list is well formed', () => {
    expect(parseSkipList(readFileSync(SKIP_LIST, 'utf8')).problems).toEqual([]);
  });

  it.skipIf(!existsSync(SUITE_DIR))('every checked-in skip entry names a test in ../shared/fixtures/cql-tests (skipped: fixtures not present)', () => {
    const ids = new Set(loadSuites(SUITE_DIR).flatMap((s) => s.groups.flatMap((g) => g.tests.map((t) => t.id))));
    expect(ids.size).toBe(1823);
    expect(unknownSkips(parseSkipList(readFileSync(SKIP_LIST, 'utf8')), ids)).toEqual([]);
  });
});
