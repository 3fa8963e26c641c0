import { z } from 'zod';
import { HOOK_IDS } from '../domain/hooks.ts';

/**
 * The JSON rule document an informaticist writes in `rules/<id>.json`. Field names follow the
 * CDS Hooks 2.0 card attributes ({@link https://cds-hooks.hl7.org/2.0/#card-attributes}) where a
 * rule describes a card. Text fields may contain `{{Define Name}}` placeholders, filled from the
 * rule's CQL facts when the rule fires.
 */

const nonEmpty = z.string().trim().min(1, 'must not be empty');

/** A value taken from a CQL define of the rule's library, e.g. `{ "fact": "Draft Opioid Order Ids" }`. */
const FactRef = z.strictObject({ fact: nonEmpty });

const Coding = z.strictObject({
  system: nonEmpty,
  code: nonEmpty,
  display: nonEmpty.optional(),
});

/** The EHR lists override reasons by their text, so the service must populate display ({@link https://cds-hooks.hl7.org/2.0/#override-reasons}). */
const OverrideReason = Coding.extend({
  display: z.string({ error: 'required: the EHR shows each override reason to the clinician by its display (CDS Hooks 2.0 override reasons)' }).trim().min(1, 'must not be empty'),
});

/** A URL the EHR opens in a browser: other schemes (javascript:, data:, file:) would run code or read files there. */
const WebUrl = z.url({
  protocol: /^https?$/,
  error: (issue) => `must be an http(s) URL, not ${JSON.stringify(issue.input)}: the EHR opens it in a browser, where other schemes (javascript:, data:, file:) can run code or read files`,
});

/** {@link https://cds-hooks.hl7.org/2.0/#source} */
const Source = z.strictObject({
  label: nonEmpty,
  url: WebUrl.optional(),
  icon: WebUrl.optional(),
  topic: Coding.optional(),
});

/** {@link https://cds-hooks.hl7.org/2.0/#link} */
const Link = z
  .strictObject({
    label: nonEmpty,
    url: WebUrl,
    type: z.enum(['absolute', 'smart']),
    /** Handed to the SMART app the link launches. */
    appContext: nonEmpty.optional(),
  })
  .superRefine((link, ctx) => {
    if (link.appContext !== undefined && link.type !== 'smart') {
      ctx.addIssue({ code: 'custom', path: ['appContext'], message: 'only a smart link carries appContext: an absolute link launches no SMART app to hand it to (CDS Hooks 2.0 Link)' });
    }
  });

const Action = z
  .strictObject({
    type: z.enum(['create', 'update', 'delete']),
    description: nonEmpty,
    /** A FHIR resource (for create/update); string values may hold placeholders. */
    resource: z.record(z.string(), z.unknown()).optional(),
    /** `Type/id` references to delete, literally or from a fact that yields them; each becomes its own action. */
    resourceId: z.union([z.array(nonEmpty).min(1), FactRef]).optional(),
  })
  .superRefine((action, ctx) => {
    if (action.type === 'delete' && !action.resourceId) {
      ctx.addIssue({ code: 'custom', path: ['resourceId'], message: 'a delete action needs resourceId' });
    }
    if (action.type !== 'delete' && !action.resource) {
      ctx.addIssue({ code: 'custom', path: ['resource'], message: `a ${action.type} action needs a resource` });
    }
  });

const Suggestion = z.strictObject({
  label: nonEmpty,
  isRecommended: z.boolean().optional(),
  actions: z.array(Action).min(1).optional(),
});

export const SUMMARY_MAX_LENGTH = 140;

const CardOutcome = z
  .strictObject({
    summary: nonEmpty.max(SUMMARY_MAX_LENGTH - 1, `must be under ${SUMMARY_MAX_LENGTH} characters (CDS Hooks card summary)`),
    detail: nonEmpty.optional(),
    indicator: z.enum(['info', 'warning', 'critical']),
    source: Source.optional(),
    suggestions: z.array(Suggestion).min(1).optional(),
    selectionBehavior: z.enum(['at-most-one', 'any']).optional(),
    overrideReasons: z.array(OverrideReason).min(1).optional(),
    links: z.array(Link).min(1).optional(),
  })
  .superRefine((card, ctx) => {
    if (card.suggestions && !card.selectionBehavior) {
      ctx.addIssue({ code: 'custom', path: ['selectionBehavior'], message: 'required when the card has suggestions' });
    }
  });

const AlertOutcome = z.strictObject({
  severity: z.enum(['info', 'warning', 'critical']),
  message: nonEmpty,
  category: nonEmpty.optional(),
});

const CareGapOutcome = z
  .strictObject({
    /** Canonical URL of the measure the gap counts against, when there is one. */
    measure: z.url().optional(),
    /** The guideline recommendation, when the gap is not tied to a measure. */
    guideline: nonEmpty.optional(),
    /** What is missing, in words a care manager acts on. */
    missing: nonEmpty,
    /** The date by which the gap should be closed: a CQL Date/DateTime define. Absent means due now. */
    dueDate: FactRef.optional(),
  })
  .superRefine((gap, ctx) => {
    if (!gap.measure && !gap.guideline) {
      ctx.addIssue({ code: 'custom', path: ['guideline'], message: 'a care gap names a measure or a guideline' });
    }
  });

const Outcome = z
  .strictObject({
    card: CardOutcome.optional(),
    alert: AlertOutcome.optional(),
    careGap: CareGapOutcome.optional(),
    /** Actions the EHR applies without a clinician's choice ({@link https://cds-hooks.hl7.org/2.0/#system-action}). */
    systemActions: z.array(Action).min(1).optional(),
  })
  .refine((o) => o.card || o.alert || o.careGap || o.systemActions, { message: 'an outcome needs a card, an alert, a careGap or systemActions' });

/** A json-rules-engine condition tree ({@link https://github.com/CacheControl/json-rules-engine/blob/master/docs/rules.md}). */
export type ConditionNode =
  | { all: ConditionNode[] }
  | { any: ConditionNode[] }
  | { not: ConditionNode }
  | { fact: string; operator: string; value: unknown; path?: string };

export const RULE_OPERATORS = [
  'equal', 'notEqual', 'lessThan', 'lessThanInclusive', 'greaterThan', 'greaterThanInclusive',
  'in', 'notIn', 'contains', 'doesNotContain',
] as const;

const FactCondition = z.strictObject({
  fact: nonEmpty,
  operator: z.enum(RULE_OPERATORS),
  value: z.unknown().refine((v) => v !== undefined, 'value is required'),
  /** JSONPath into the fact, e.g. `$.userId` of the hook context. */
  path: z.string().startsWith('$').optional(),
});

const CONDITION_KEYS = ['all', 'any', 'not', 'fact'] as const;

/**
 * A condition node is picked by its key before it is checked, so a mistake deep in a tree is
 * reported at its own path instead of as one opaque "invalid union" at the root.
 */
const Condition: z.ZodType<ConditionNode> = z.lazy(() =>
  z.record(z.string(), z.unknown()).transform((node, ctx): ConditionNode => {
    const key = CONDITION_KEYS.find((k) => k in node);
    const schema =
      key === 'all' ? z.strictObject({ all: z.array(Condition).min(1) })
      : key === 'any' ? z.strictObject({ any: z.array(Condition).min(1) })
      : key === 'not' ? z.strictObject({ not: Condition })
      : key === 'fact' ? FactCondition
      : undefined;
    if (!schema) {
      ctx.addIssue({ code: 'custom', message: 'a condition has one of: all, any, not, fact', input: node });
      return z.NEVER;
    }
    const parsed = schema.safeParse(node);
    if (parsed.success) return parsed.data as ConditionNode;
    for (const issue of parsed.error.issues) {
      ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path, input: node });
    }
    return z.NEVER;
  }),
);

/** Facts a condition may name besides the rule's CQL defines. */
export const BUILT_IN_FACTS = ['context', 'hook'] as const;

export const RuleSchema = z
  .strictObject({
    $schema: z.string().optional(),
    id: z.string().regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/, 'must be kebab-case (a-z, 0-9, -)'),
    version: z.string().regex(/^\d+\.\d+\.\d+$/, 'must be semantic, e.g. 1.0.0'),
    title: nonEmpty,
    description: nonEmpty,
    status: z.enum(['active', 'draft', 'retired']),
    /** The clinical source the rule implements: guideline, recommendation, measure. */
    source: Source,
    runs: z
      .strictObject({
        hooks: z.array(z.enum(HOOK_IDS)).min(1).optional(),
        batch: z.boolean().optional(),
      })
      .refine((r) => (r.hooks?.length ?? 0) > 0 || r.batch === true, { message: 'a rule runs in at least one hook or in the batch' }),
    /** Groups rules into one CDS service per hook; defaults to the rule id. */
    group: z.string().regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/).optional(),
    cql: z.strictObject({
      library: nonEmpty,
      version: nonEmpty.optional(),
      /** The defines read as facts; conditions and placeholders may name only these. */
      facts: z.array(nonEmpty).min(1),
    }),
    conditions: Condition,
    outcome: Outcome,
  })
  .superRefine((rule, ctx) => {
    if (rule.outcome.card && !rule.runs.hooks) {
      ctx.addIssue({ code: 'custom', path: ['outcome', 'card'], message: 'a card is shown only in hooks; add runs.hooks' });
    }
    if (rule.outcome.systemActions && !rule.runs.hooks) {
      ctx.addIssue({ code: 'custom', path: ['outcome', 'systemActions'], message: 'system actions are returned only in hooks; add runs.hooks' });
    }
    if ((rule.outcome.alert || rule.outcome.careGap) && !rule.runs.batch && !rule.runs.hooks) {
      ctx.addIssue({ code: 'custom', path: ['runs'], message: 'alerts and care gaps need runs.batch or runs.hooks' });
    }
  });

export type Rule = z.infer<typeof RuleSchema>;
export type CardTemplate = NonNullable<Rule['outcome']['card']>;
export type AlertTemplate = NonNullable<Rule['outcome']['alert']>;
export type CareGapTemplate = NonNullable<Rule['outcome']['careGap']>;
export type ActionTemplate = z.infer<typeof Action>;
