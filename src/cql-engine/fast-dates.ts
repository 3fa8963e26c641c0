import { Date as CqlDate, DateTime } from 'cql-execution';
import { Uncertainty } from 'cql-execution/lib/datatypes/uncertainty.js';

/**
 * Fast parsing of FHIR date and dateTime strings for cql-execution 3.3.2, with the same result.
 *
 * Why: `DateTime.parse` and `Date.parse` (lib/datatypes/datetime.js) check every string by asking
 * Luxon to parse it against each format of its length (`DateTime.fromFormat(...).isValid`), which
 * tokenizes the format anew each time. Every date element a retrieve touches goes through it
 * (cql-exec-fhir converts FHIR dates with them), so it was a tenth of evaluating a measure.
 *
 * How: the two shapes FHIR data almost always has — `YYYY-MM-DD` and
 * `YYYY-MM-DDThh:mm:ss[.f…][Z|±hh:mm]` — are recognised by one anchored regular expression and a
 * calendar check that accepts only values Luxon certainly accepts (year ≥ 1, a real day of the
 * month, hour ≤ 23, minute and second ≤ 59, offsets up to ±14:00 in quarter hours); the fields then
 * go to the same constructor call the original makes, with the same arguments. Any other string
 * takes the original path. test/cql-engine/fast-dates.test.ts compares both on generated strings.
 *
 * Likewise whole years between two full CQL Dates (`AgeInYearsAt(date from ...)`, `years between`),
 * which cql-execution computes with two Luxon date uncertainties and a Luxon `diff`: for a later
 * date it is the difference of the years, less one before the anniversary — what Luxon's calendar
 * arithmetic gives, except from a 29 February, which Luxon moves to 28 February in common years
 * (those, and every other case, take the original path).
 */

type Parse<T> = (text: string | null) => T | null;

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:(Z)|([+-])(\d{2}):(\d{2}))?)?$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

const isLeap = (year: number): boolean => (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function realDay(year: number, month: number, day: number): boolean {
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  return day <= (month === 2 && isLeap(year) ? 29 : (DAYS[month - 1] ?? 0));
}

/** cql-execution's own parsers, kept for every string the fast path does not take. */
export const originalDateTimeParse: Parse<DateTime> = DateTime.parse.bind(DateTime);
export const originalDateParse: Parse<CqlDate> = CqlDate.parse.bind(CqlDate);

/** parseDateTime is `DateTime.parse`, without Luxon for the common FHIR shapes. */
export function parseDateTime(text: string | null): DateTime | null {
  const m = typeof text === 'string' ? DATE_TIME.exec(text) : null;
  if (m === null) return originalDateTimeParse(text);
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (!realDay(year, month, day)) return originalDateTimeParse(text);
  if (m[4] === undefined) return new DateTime(year, month, day, undefined, undefined, undefined, undefined);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6]);
  if (hour > 23 || minute > 59 || second > 59) return originalDateTimeParse(text);
  // cql-execution pads or truncates the fraction to milliseconds (5 -> 500, 54321 -> 543).
  const millisecond = m[7] === undefined ? undefined : Number(`${m[7]}00`.slice(0, 3));
  if (m[8] === 'Z') return new DateTime(year, month, day, hour, minute, second, millisecond, 0);
  if (m[9] === undefined) return new DateTime(year, month, day, hour, minute, second, millisecond);
  const offsetHours = Number(m[10]);
  const offsetMinutes = Number(m[11]);
  if (offsetHours > 14 || offsetMinutes % 15 !== 0 || (offsetHours === 14 && offsetMinutes !== 0)) return originalDateTimeParse(text);
  const offset = offsetHours + offsetMinutes / 60;
  return new DateTime(year, month, day, hour, minute, second, millisecond, m[9] === '+' ? offset : offset * -1);
}

/** parseDate is `Date.parse`, without Luxon for `YYYY-MM-DD`. */
export function parseDate(text: string | null): CqlDate | null {
  const m = typeof text === 'string' ? DATE.exec(text) : null;
  if (m === null) return originalDateParse(text);
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  return realDay(year, month, day) ? new CqlDate(year, month, day) : originalDateParse(text);
}

type DurationBetween = (this: CqlDate, other: unknown, unit: string) => unknown;

/** cql-execution's `Date.prototype.durationBetween`, for everything but whole years between full dates. */
export const originalDateDurationBetween = CqlDate.prototype.durationBetween as DurationBetween;

const fullDate = (value: unknown): value is CqlDate => value instanceof CqlDate && value.year != null && value.month != null && value.day != null;

/** dateDurationBetween is `Date.prototype.durationBetween`, without Luxon for whole years forward from a day other than 29 February. */
export function dateDurationBetween(this: CqlDate, other: unknown, unit: string): unknown {
  if (unit !== 'year' || !fullDate(this) || !fullDate(other) || (this.month === 2 && this.day === 29)) return originalDateDurationBetween.call(this, other, unit);
  const [year, month, day] = [this.year as number, this.month as number, this.day as number];
  const [toYear, toMonth, toDay] = [other.year as number, other.month as number, other.day as number];
  const beforeAnniversary = toMonth < month || (toMonth === month && toDay < day);
  if (toYear < year || (toYear === year && beforeAnniversary)) return originalDateDurationBetween.call(this, other, unit);
  const years = toYear - year - (beforeAnniversary ? 1 : 0);
  return new Uncertainty(years, years);
}

let installed = false;

/** installFastDates routes cql-execution's `DateTime.parse`, `Date.parse` and whole-year `Date.durationBetween` through the functions above; idempotent. */
export function installFastDates(): void {
  if (installed) return;
  DateTime.parse = parseDateTime;
  CqlDate.parse = parseDate;
  (CqlDate.prototype as { durationBetween: DurationBetween }).durationBetween = dateDurationBetween;
  installed = true;
}
