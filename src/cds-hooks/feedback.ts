import { z } from 'zod';
import { cutInput } from '../http/problem.ts';
import type { RequestIssue } from './request.ts';
import { MAX_SNOOZE_DAYS, type FeedbackRecord, type Snooze } from './store.ts';

/**
 * Items one feedback request may carry. CDS Hooks 2.0 sets no bound on the array; a client reports
 * the cards of one user action or a short backlog, and 10,000 items held the store ~25 s.
 */
export const MAX_FEEDBACK_ITEMS = 1000;

/** CDS Hooks 2.0 feedback body ({@link https://cds-hooks.hl7.org/2.0/#feedback}). */
export const FeedbackRequestSchema = z.looseObject({
  feedback: z
    .array(z.unknown())
    .min(1)
    .max(MAX_FEEDBACK_ITEMS, { message: `at most ${MAX_FEEDBACK_ITEMS} items a request; send the rest in further requests` })
    // Counted first: items beyond the cap are neither parsed nor answered one issue each.
    .pipe(z.array(
      z.looseObject({
        card: z.string().min(1),
        outcome: z.enum(['accepted', 'overridden']),
        acceptedSuggestions: z.array(z.looseObject({ id: z.string().min(1) })).optional(),
        overrideReason: z
          .looseObject({
            reason: z.looseObject({ system: z.string().min(1), code: z.string().min(1), display: z.string().optional() }).optional(),
            userComment: z.string().optional(),
          })
          .optional(),
        outcomeTimestamp: z.iso.datetime({ offset: true }),
      })
      // Each field belongs to one outcome (CDS Hooks 2.0 feedback); an empty list says nothing either way.
      .superRefine((item, ctx) => {
        if (item.outcome === 'overridden' && item.acceptedSuggestions?.length) ctx.addIssue({ code: 'custom', path: ['acceptedSuggestions'], message: 'only with outcome "accepted"' });
        if (item.outcome === 'accepted' && item.overrideReason) ctx.addIssue({ code: 'custom', path: ['overrideReason'], message: 'only with outcome "overridden"' });
      }),
    )),
});

export type FeedbackRequest = z.infer<typeof FeedbackRequestSchema>;

// A year; longer is no snooze (and no date past JavaScript's range). The store keeps to it too.
export { MAX_SNOOZE_DAYS };

const DAY_MS = 86_400_000;

/** How far an outcomeTimestamp may be ahead of this service's clock: the two clocks' disagreement, not a time yet to come. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

/**
 * futureOutcomes names each item whose outcomeTimestamp is more than MAX_CLOCK_SKEW_MS after
 * `receivedAt`. The user acted before the client sent the feedback: a later time is a wrong clock or
 * a made-up value, and stored it would start a snooze whenever it says and outrank every real
 * outcome of the card in the rule statistics (the latest outcome counts).
 */
export function futureOutcomes(request: FeedbackRequest, receivedAt: string): RequestIssue[] {
  const latest = Date.parse(receivedAt) + MAX_CLOCK_SKEW_MS;
  return request.feedback.flatMap((item, i) =>
    Date.parse(item.outcomeTimestamp) > latest
      ? [{ field: `feedback.${i}.outcomeTimestamp`, message: `is after the feedback was received (${receivedAt}) by more than ${MAX_CLOCK_SKEW_MS / 60_000} minutes: it is when the user acted, by a correct clock` }]
      : [],
  );
}

/** How many ids, or issues, an answer echoes, and how much of each id: the caller's input is not sent back wholesale. */
export const MAX_ECHOED = 10;
export const MAX_ECHOED_ID_LENGTH = 64;

/** echoId is an id as an answer quotes it: at most MAX_ECHOED_ID_LENGTH characters, then an ellipsis. */
export function echoId(id: string): string {
  return cutInput(id, MAX_ECHOED_ID_LENGTH);
}

/** echoIds lists ids for an answer: each once, cut by echoId, at most MAX_ECHOED of them and how many more. */
export function echoIds(ids: readonly string[]): string {
  const distinct = [...new Set(ids)];
  const listed = distinct.slice(0, MAX_ECHOED).map(echoId).join(', ');
  return distinct.length > MAX_ECHOED ? `${listed} and ${distinct.length - MAX_ECHOED} more` : listed;
}

/** firstIssues keeps the first MAX_ECHOED issues and says how many more there were (as an issue on `feedback`). */
export function firstIssues(issues: readonly RequestIssue[]): RequestIssue[] {
  if (issues.length <= MAX_ECHOED) return [...issues];
  return [...issues.slice(0, MAX_ECHOED), { field: 'feedback', message: `and ${issues.length - MAX_ECHOED} more problems` }];
}

const SNOOZE = /(?:^|[-_])snooze[-_]?(\d{1,4})\s*(d|day|days|w|wk|week|weeks|m|mo|month|months)$/i;

/** snoozeDays reads a snooze period from an override-reason code such as `snooze-30d` or `snooze-2w`; none beyond MAX_SNOOZE_DAYS. */
export function snoozeDays(code: string): number | undefined {
  const match = SNOOZE.exec(code);
  if (!match) return undefined;
  const n = Number(match[1]);
  const unit = (match[2] ?? 'd').toLowerCase();
  const days = unit.startsWith('w') ? n * 7 : unit.startsWith('m') ? n * 30 : n;
  return days > 0 && days <= MAX_SNOOZE_DAYS ? days : undefined;
}

/** The override reasons the card with this uuid offered (undefined: not known). */
export type OfferedReasons = (cardUuid: string) => readonly { readonly system: string; readonly code: string }[] | undefined;

/**
 * toRecords turns a validated feedback body into store records and the snoozes it asks for. Only
 * a snooze reason the card offered silences it: the client may send any Coding, and one it
 * makes up (`snooze-36500d` on a drug-interaction card that offers no snooze) must not mute a
 * safety warning. Every item is recorded either way. A snooze silences the rule for the patient at
 * `client` only (patient ids are the EHR's own), and runs from the outcome, or from receipt if that
 * is earlier, for its period: it ends at most MAX_SNOOZE_DAYS after receipt whatever
 * outcomeTimestamp says.
 */
export function toRecords(
  request: FeedbackRequest,
  context: {
    readonly serviceId: string;
    readonly client: string;
    readonly receivedAt: string;
    readonly cardOwner: (uuid: string) => { ruleId: string; patientId: string } | undefined;
    readonly offeredReasons: OfferedReasons;
  },
): { records: FeedbackRecord[]; snoozes: Snooze[] } {
  const records: FeedbackRecord[] = [];
  const snoozes: Snooze[] = [];
  const receivedMs = Date.parse(context.receivedAt);
  for (const [i, item] of request.feedback.entries()) {
    const reason = item.overrideReason?.reason;
    records.push({
      cardUuid: item.card,
      serviceId: context.serviceId,
      outcome: item.outcome,
      outcomeTimestamp: item.outcomeTimestamp,
      acceptedSuggestions: (item.acceptedSuggestions ?? []).map((s) => s.id),
      ...(reason ? { overrideReason: { system: reason.system, code: reason.code, ...(reason.display ? { display: reason.display } : {}) } } : {}),
      ...(item.overrideReason?.userComment ? { userComment: item.overrideReason.userComment } : {}),
      client: context.client,
      receivedAt: context.receivedAt,
    });
    const owner = context.cardOwner(item.card);
    const offered = owner && reason ? context.offeredReasons(item.card)?.some((o) => o.system === reason.system && o.code === reason.code) : false;
    const days = item.outcome === 'overridden' && reason && offered ? snoozeDays(reason.code) : undefined;
    if (days !== undefined && owner) {
      const start = Math.min(Date.parse(item.outcomeTimestamp), receivedMs);
      const until = new Date(start + days * DAY_MS).toISOString();
      snoozes.push({ ruleId: owner.ruleId, patientId: owner.patientId, client: context.client, until, item: i });
    }
  }
  return { records, snoozes };
}
