import { DateTime, Interval } from 'cql-execution';
import { CairnError } from '../domain/errors.ts';

/** A measurement period as the request or the Measure gives it: FHIR `date` or `dateTime` strings. */
export interface PeriodInput {
  readonly start: string;
  readonly end: string;
}

/** A measurement period resolved to full-precision date-times (what the reports echo and CQL receives). */
export interface MeasurementPeriod {
  /** ISO 8601, millisecond precision, with offset. */
  readonly start: string;
  readonly end: string;
  /** The CQL `Interval<DateTime>` for the `"Measurement Period"` parameter (closed at both ends). */
  readonly interval: Interval;
}

const DATE = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?$/;

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * toDateTime reads a FHIR date or dateTime as a CQL DateTime at millisecond precision. A date (or a
 * year or year-month) becomes the first instant of it (`edge` start) or its last millisecond (`end`).
 * Without an offset, UTC is assumed — never the machine's zone, so results do not depend on where
 * the batch runs (fqm-execution also passes the period with offset 0).
 */
export function toDateTime(value: string, edge: 'start' | 'end', field: string): DateTime {
  const date = DATE.exec(value);
  if (date !== null) {
    const year = Number(date[1]);
    const month = date[2] === undefined ? (edge === 'start' ? 1 : 12) : Number(date[2]);
    const day = date[3] === undefined ? (edge === 'start' ? 1 : daysInMonth(year, month)) : Number(date[3]);
    if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) {
      throw new CairnError('INPUT_INVALID', `${field} '${value}' is not a valid date`);
    }
    return edge === 'start' ? new DateTime(year, month, day, 0, 0, 0, 0, 0) : new DateTime(year, month, day, 23, 59, 59, 999, 0);
  }
  const parsed = DATE_TIME.test(value) ? DateTime.parse(/(?:Z|[+-]\d{2}:\d{2})$/.test(value) ? value : `${value}Z`) : null;
  if (parsed == null) throw new CairnError('INPUT_INVALID', `${field} '${value}' is not a FHIR date or dateTime`);
  const full = new DateTime(parsed.year, parsed.month, parsed.day, parsed.hour ?? 0, parsed.minute ?? 0, parsed.second ?? (edge === 'start' ? 0 : 59), parsed.millisecond ?? (edge === 'start' ? 0 : 999), parsed.timezoneOffset ?? 0);
  return full;
}

/** resolvePeriod turns the requested period, or else the Measure's effective period, into a {@link MeasurementPeriod}. */
export function resolvePeriod(requested: Partial<PeriodInput> | undefined, effective: { readonly start: string | undefined; readonly end: string | undefined }, measure: string): MeasurementPeriod {
  const startText = requested?.start ?? effective.start;
  const endText = requested?.end ?? effective.end;
  if (startText === undefined || endText === undefined) {
    throw new CairnError('INPUT_INVALID', `No measurement period: give period start and end, or use a Measure with effectivePeriod (${measure})`);
  }
  const start = toDateTime(startText, 'start', 'period start');
  const end = toDateTime(endText, 'end', 'period end');
  if (start.after(end) === true) throw new CairnError('INPUT_INVALID', `The measurement period starts (${startText}) after it ends (${endText})`);
  return Object.freeze({ start: start.toString(), end: end.toString(), interval: new Interval(start, end, true, true) });
}
