import { z } from 'zod';
import type { FeedbackRecord, Snooze } from './store.ts';

/** CDS Hooks 2.0 feedback body ({@link https://cds-hooks.hl7.org/2.0/#feedback}). */
export const FeedbackRequestSchema = z.looseObject({
  feedback: z
    .array(
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
    )
    .min(1),
});

export type FeedbackRequest = z.infer<typeof FeedbackRequestSchema>;

/** Longest snooze a reason code can ask for: a year; longer is no snooze (and no date past JavaScript's range). */
export const MAX_SNOOZE_DAYS = 366;

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

/** The override reasons a rule's card offers (system and code), by rule id; undefined for a rule the serving knowledge no longer has. */
export type OfferedReasons = (ruleId: string) => readonly { readonly system: string; readonly code: string }[] | undefined;

/**
 * toRecords turns a validated feedback body into store records and the snoozes it asks for. Only
 * a snooze reason the card's rule offers silences it: the client may send any Coding, and one it
 * makes up (`snooze-36500d` on a drug-interaction card that offers no snooze) must not mute a
 * safety warning. Every item is recorded either way.
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
  for (const item of request.feedback) {
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
    const offered = owner && reason ? context.offeredReasons(owner.ruleId)?.some((o) => o.system === reason.system && o.code === reason.code) : false;
    const days = item.outcome === 'overridden' && reason && offered ? snoozeDays(reason.code) : undefined;
    if (days !== undefined && owner) {
      const until = new Date(Date.parse(item.outcomeTimestamp) + days * 86_400_000).toISOString();
      snoozes.push({ ruleId: owner.ruleId, patientId: owner.patientId, until });
    }
  }
  return { records, snoozes };
}
