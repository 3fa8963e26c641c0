import { describe, expect, it } from 'vitest';
import { flag, numberFlag, positionalNumber, printResult, round } from '../../bench/support.ts';

describe('bench arguments', () => {
  const cases: { name: string; argv: string[]; want: { patients?: number; workers?: number; db?: string } }[] = [
    { name: 'nothing given', argv: [], want: {} },
    { name: 'a size and flags with spaces', argv: ['5000', '--workers', '2', '--db', 'x.duckdb'], want: { patients: 5000, workers: 2, db: 'x.duckdb' } },
    { name: 'a flag value is not the size', argv: ['--workers', '2', '300'], want: { patients: 300, workers: 2 } },
    { name: 'flags with =', argv: ['--workers=3', '--db=y.duckdb', '40'], want: { patients: 40, workers: 3, db: 'y.duckdb' } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect({ patients: positionalNumber(c.argv), workers: numberFlag('workers', c.argv), db: flag('db', c.argv) }).toEqual({ patients: undefined, workers: undefined, db: undefined, ...c.want });
    });
  }

  it('numberFlag gives NaN for a value that is not a number', () => {
    expect(numberFlag('rate', ['--rate=fast'])).toBeNaN();
  });
});

describe('printResult', () => {
  const cases: { name: string; target?: { text: string; met: boolean | null }; want: string[] }[] = [
    { name: 'no target: the JSON line only', want: ['{"bench":"b","n":1.5}'] },
    { name: 'met', target: { text: 'p99 < 25 ms', met: true }, want: ['  target p99 < 25 ms: met', '{"bench":"b","n":1.5}'] },
    { name: 'not met', target: { text: 'p99 < 25 ms', met: false }, want: ['  target p99 < 25 ms: NOT met', '{"bench":"b","n":1.5}'] },
    { name: 'too small a run to judge', target: { text: '100000 patients', met: null }, want: ['{"bench":"b","n":1.5}'] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const lines: string[] = [];
      printResult((line) => lines.push(line), { bench: 'b', n: round(1.499, 1) }, c.target);
      expect(lines).toEqual(c.want);
    });
  }
});
