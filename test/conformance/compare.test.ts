import { Code, Date as CqlDate, DateTime, Interval, Quantity } from 'cql-execution';
import { describe, expect, it } from 'vitest';
import { compareResults, decimalsEqual, formatValue } from '../../scripts/cql-conformance/compare.ts';

const dt = (...parts: number[]): DateTime => {
  const [y, mo, d, h, mi, s, ms] = parts;
  return new DateTime(y, mo, d, h, mi, s, ms, 0);
};
const time = (h: number, mi: number, s: number, ms: number): DateTime => new DateTime(0, 1, 1, h, mi, s, ms);

const same: { name: string; actual: unknown; expected: unknown }[] = [
  { name: 'null and null', actual: null, expected: undefined },
  { name: 'integers', actual: 3, expected: 3 },
  { name: 'decimals equal at scale 8', actual: 0.1 + 0.2, expected: 0.3 },
  { name: 'a result rounded to scale 8', actual: 1 / 3, expected: 0.33333333 },
  { name: 'strings', actual: 'a', expected: 'a' },
  { name: 'lists in order', actual: [1, null, 'x'], expected: [1, null, 'x'] },
  { name: 'tuples, absent element = null element', actual: { a: 1, b: null }, expected: { a: 1 } },
  { name: 'quantities', actual: new Quantity(5.5, 'cm'), expected: new Quantity(5.5, 'cm') },
  { name: "quantity unit '1' and no unit", actual: new Quantity(2, '1'), expected: new Quantity(2) },
  { name: 'closed integer interval vs half-open', actual: new Interval(1, 4, true, false), expected: new Interval(1, 3, true, true) },
  { name: 'closed decimal interval vs half-open', actual: new Interval(1, 4, true, false), expected: new Interval(1, 3.99999999, true, true) },
  { name: 'open low date bound', actual: new Interval(dt(2012, 1, 12), dt(2012, 1, 16), false, true), expected: new Interval(dt(2012, 1, 13), dt(2012, 1, 16), true, true) },
  { name: 'open high time bound', actual: new Interval(time(5, 0, 0, 0), time(8, 59, 59, 999), true, false), expected: new Interval(time(5, 0, 0, 0), time(8, 59, 59, 998), true, true) },
  { name: 'date-times with the same fields and offset', actual: dt(2014, 1, 1, 8), expected: dt(2014, 1, 1, 8) },
  { name: 'a Date and a DateTime of day precision (implicit conversion)', actual: dt(2012, 1, 1), expected: new CqlDate(2012, 1, 1) },
  { name: 'codes', actual: new Code('1', 'http://s', undefined, 'd'), expected: new Code('1', 'http://s', undefined, 'd') },
];

const different: { name: string; actual: unknown; expected: unknown; why: RegExp }[] = [
  { name: 'null vs false (no null-propagating =)', actual: false, expected: null, why: /got boolean false, expected null/ },
  { name: 'decimals differing at scale 8', actual: 0.12345678, expected: 0.12345679, why: /got 0.12345678/ },
  { name: 'number vs string', actual: 1, expected: '1', why: /got number 1, expected string/ },
  { name: 'list length', actual: [1, 2], expected: [1, 2, 2], why: /2 elements, expected 3/ },
  { name: 'list order', actual: [2, 1], expected: [1, 2], why: /result\[0\]/ },
  { name: 'tuple element', actual: { a: 1, b: 2 }, expected: { a: 1, b: 3 }, why: /result\.b/ },
  { name: 'quantity unit', actual: new Quantity(1, 'm'), expected: new Quantity(100, 'cm'), why: /unit is 'm'/ },
  { name: 'date-time precision', actual: dt(2014, 1, 1, 8), expected: dt(2014, 1, 1), why: /hour is 8, expected null/ },
  { name: 'date-time offset', actual: new DateTime(2014, 1, 1, 8, 0, 0, 0, 1), expected: dt(2014, 1, 1, 8, 0, 0, 0), why: /timezone offset/ },
  { name: 'a Date and a DateTime with a time', actual: dt(2012, 1, 1, 10), expected: new CqlDate(2012, 1, 1), why: /got datetime/ },
  { name: 'interval bounds', actual: new Interval(1, 5, true, false), expected: new Interval(1, 3, true, true), why: /high bound/ },
  { name: 'a time and a date-time', actual: time(10, 0, 0, 0), expected: dt(2014, 1, 1, 10, 0, 0, 0), why: /got time/ },
];

describe('compareResults', () => {
  for (const { name, actual, expected } of same) {
    it(`equal: ${name}`, () => {
      expect(compareResults(actual, expected)).toBeNull();
    });
  }
  for (const { name, actual, expected, why } of different) {
    it(`different: ${name}`, () => {
      expect(compareResults(actual, expected)).toMatch(why);
    });
  }

  it('compares lists as multisets when ordered is false', () => {
    expect(compareResults([2, 1, 1], [1, 2, 1], { ordered: false })).toBeNull();
    expect(compareResults([2, 2, 1], [1, 2, 1], { ordered: false })).toMatch(/missing/);
  });
});

describe('decimalsEqual', () => {
  it('is exact for large magnitudes where a double has no 8 fractional digits', () => {
    expect(decimalsEqual(1e28, 1e28)).toBe(true);
    expect(decimalsEqual(2147483648, 2147483649)).toBe(false);
  });
});

describe('formatValue', () => {
  it('renders CQL-like text', () => {
    expect(formatValue([1, 'a', null])).toBe("{ 1, 'a', null }");
    expect(formatValue(new Interval(1, 3, true, false))).toBe('Interval[1, 3)');
    expect(formatValue(new Quantity(5, 'mg'))).toBe("5 'mg'");
    expect(formatValue({ id: 5 })).toBe('Tuple { id: 5 }');
  });
});
