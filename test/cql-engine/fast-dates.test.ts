import { Date as CqlDate, DateTime } from 'cql-execution';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dateDurationBetween, originalDateDurationBetween, originalDateParse, originalDateTimeParse, parseDate, parseDateTime } from '../../src/cql-engine/fast-dates.ts';

/** Every field a parsed value carries, or null: what the fast parsers must reproduce exactly. */
const fields = (value: object | null): unknown => (value === null ? null : { type: value.constructor.name, ...value });

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/** Date-time strings around the fast path's edges: real and impossible days, hours, fractions and offsets. */
const dateTimeText = fc
  .record({
    year: fc.integer({ min: 0, max: 2400 }),
    month: fc.integer({ min: 0, max: 13 }),
    day: fc.integer({ min: 0, max: 32 }),
    time: fc.option(fc.record({ hour: fc.integer({ min: 0, max: 25 }), minute: fc.integer({ min: 0, max: 61 }), second: fc.integer({ min: 0, max: 61 }) })),
    fraction: fc.option(fc.stringMatching(/^[0-9]{1,6}$/)),
    zone: fc.oneof(fc.constant(''), fc.constant('Z'), fc.record({ sign: fc.constantFrom('+', '-'), hours: fc.integer({ min: 0, max: 16 }), minutes: fc.constantFrom(0, 15, 30, 45, 59) }).map((z) => `${z.sign}${pad(z.hours, 2)}:${pad(z.minutes, 2)}`)),
  })
  .map(({ year, month, day, time, fraction, zone }) => {
    const date = `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}`;
    if (time === null) return date;
    return `${date}T${pad(time.hour, 2)}:${pad(time.minute, 2)}:${pad(time.second, 2)}${fraction === null ? '' : `.${fraction}`}${zone}`;
  });

const CASES = [
  '2025-01-01', '2024-02-29', '2023-02-29', '2025-12-31T23:59:59Z', '2025-06-01T12:00:00.000+00:00', '2025-06-01T12:00:00.5-05:30',
  '2025-06-01T12:00:00.123456+14:00', '2025-06-01T12:00:00+14:15', '2025-06-01T24:00:00Z', '2025-06-01T12:00Z', '2025-06', '2025',
  '2025-06-01T12:00:00+0530', '2025-06-01T12:00:00+05', 'not a date', '', '0000-01-01', '2025-06-01T12:00:00Zjunk',
];

describe('fast FHIR date parsing gives exactly what cql-execution 3.3.2 gives', () => {
  it.each(CASES)('DateTime.parse(%j)', (text) => {
    expect(fields(parseDateTime(text))).toEqual(fields(originalDateTimeParse(text)));
  });

  it.each(CASES)('Date.parse(%j)', (text) => {
    expect(fields(parseDate(text))).toEqual(fields(originalDateParse(text)));
  });

  it('on generated date-times', () => {
    fc.assert(fc.property(dateTimeText, (text) => {
      expect(fields(parseDateTime(text))).toEqual(fields(originalDateTimeParse(text)));
      expect(fields(parseDate(text))).toEqual(fields(originalDateParse(text)));
    }), { numRuns: 3000 });
  });

  it('null stays null', () => {
    expect(parseDateTime(null)).toBeNull();
    expect(parseDate(null)).toBeNull();
  });
});

/** A duration's answer as data (an Uncertainty's bounds), or the error it threw. */
function durationOf(compute: () => unknown): unknown {
  try {
    const value = compute() as { low?: unknown; high?: unknown } | null;
    return value === null ? null : { low: value.low, high: value.high };
  } catch (error) {
    return (error as Error).message;
  }
}

const fullDate = fc.record({ year: fc.integer({ min: 1, max: 2100 }), month: fc.integer({ min: 1, max: 12 }), day: fc.integer({ min: 1, max: 31 }) })
  .filter(({ year, month, day }) => day <= new globalThis.Date(Date.UTC(year, month, 0)).getUTCDate())
  .map(({ year, month, day }) => new CqlDate(year, month, day));
/** Leap days and month ends, where calendar arithmetic differs from counting. */
const edgeDate = fc.constantFrom([2000, 2, 29], [2001, 2, 28], [2003, 3, 1], [2004, 2, 29], [2004, 3, 1], [1999, 12, 31], [2024, 2, 28], [2025, 2, 28], [2025, 3, 1]).map(([y, m, d]) => new CqlDate(y!, m!, d!));
const anyDate = fc.oneof(fullDate, edgeDate, fc.constant(new CqlDate(2004, 2)), fc.constant(new CqlDate(2004)));

describe('fast whole years between CQL Dates gives exactly what cql-execution 3.3.2 gives', () => {
  it('on generated pairs of dates, in every unit', () => {
    fc.assert(fc.property(anyDate, anyDate, fc.constantFrom('year', 'month', 'day'), (from, to, unit) => {
      expect(durationOf(() => dateDurationBetween.call(from, to, unit))).toEqual(durationOf(() => originalDateDurationBetween.call(from, to, unit)));
    }), { numRuns: 5000 });
  });

  it('to a DateTime and to null, as before', () => {
    const birth = new CqlDate(1960, 5, 17);
    expect(durationOf(() => dateDurationBetween.call(birth, DateTime.parse('2025-12-31T23:59:59.999Z'), 'year'))).toEqual(durationOf(() => originalDateDurationBetween.call(birth, DateTime.parse('2025-12-31T23:59:59.999Z'), 'year')));
    expect(dateDurationBetween.call(birth, null, 'year')).toBeNull();
  });
});
