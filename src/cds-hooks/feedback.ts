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
      }),
    )
    .min(1),
});

export type FeedbackRequest = z.infer<typeof FeedbackRequestSchema>;

const SNOOZE = /(?:^|[-_])snooze[-_]?(\d+)\s*(d|day|days|w|wk|week|weeks|m|mo|month|months)$/i;

/** snoozeDays reads a snooze period from an override-reason code such as `snooze-30d` or `snooze-2w`. */
export function snoozeDays(code: string): number | undefined {
  const match = SNOOZE.exec(code);
  if (!match) return undefined;
  const n = Number(match[1]);
  const unit = (match[2] ?? 'd').toLowerCase();
  if (unit.startsWith('w')) return n * 7;
  if (unit.startsWith('m')) return n * 30;
  return n;
}

/** toRecords turns a validated feedback body into store records and the snoozes it asks for. */
export function toRecords(
  request: FeedbackRequest,
  context: { readonly serviceId: string; readonly client: string; readonly receivedAt: string; readonly cardOwner: (uuid: string) => { ruleId: string; patientId: string } | undefined },
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
    const days = item.outcome === 'overridden' && reason ? snoozeDays(reason.code) : undefined;
    const owner = context.cardOwner(item.card);
    if (days !== undefined && owner) {
      const until = new Date(Date.parse(item.outcomeTimestamp) + days * 86_400_000).toISOString();
      snoozes.push({ ruleId: owner.ruleId, patientId: owner.patientId, until });
    }
  }
  return { records, snoozes };
}
