import type { HookId } from './hooks.ts';

/** A Coding as CDS Hooks uses it ({@link https://cds-hooks.hl7.org/2.0/#coding}). */
export interface Coding {
  readonly system: string;
  readonly code: string;
  readonly display?: string;
}

/** {@link https://cds-hooks.hl7.org/2.0/#source} */
export interface CardSource {
  readonly label: string;
  readonly url?: string;
  readonly icon?: string;
  readonly topic?: Coding;
}

/** {@link https://cds-hooks.hl7.org/2.0/#action} */
export interface Action {
  readonly type: 'create' | 'update' | 'delete';
  readonly description: string;
  readonly resource?: Readonly<Record<string, unknown>>;
  /** A relative reference (`MedicationRequest/123`) to the resource a delete removes. */
  readonly resourceId?: string;
}

/** {@link https://cds-hooks.hl7.org/2.0/#suggestion} */
export interface Suggestion {
  readonly label: string;
  readonly uuid: string;
  readonly isRecommended?: boolean;
  readonly actions?: readonly Action[];
}

/** {@link https://cds-hooks.hl7.org/2.0/#link} */
export interface Link {
  readonly label: string;
  readonly url: string;
  readonly type: 'absolute' | 'smart';
  readonly appContext?: string;
}

/** A CDS Hooks card ({@link https://cds-hooks.hl7.org/2.0/#card-attributes}); no field is ever null or empty. */
export interface Card {
  readonly uuid: string;
  readonly summary: string;
  readonly detail?: string;
  readonly indicator: 'info' | 'warning' | 'critical';
  readonly source: CardSource;
  readonly suggestions?: readonly Suggestion[];
  readonly selectionBehavior?: 'at-most-one' | 'any';
  readonly overrideReasons?: readonly Coding[];
  readonly links?: readonly Link[];
  /** Card extensions ({@link https://cds-hooks.hl7.org/2.0/#extensions}); Cairn names the selected draft orders a card concerns. */
  readonly extension?: Readonly<Record<string, unknown>>;
}

/** The card extension naming the rule and knowledge version that produced the card. */
export const PROVENANCE_EXTENSION = 'http://cairn.health/cds-hooks/extension/provenance';

/** The card extension listing the `selections` (order-select) a card is about. */
export const SELECTIONS_EXTENSION = 'http://cairn.health/cds-hooks/extension/selections';

/** Which rule, of which knowledge version, produced a decision. */
export interface Provenance {
  readonly ruleId: string;
  readonly ruleVersion: string;
  readonly knowledgeVersion: string;
}

export interface CardDecision extends Provenance {
  readonly kind: 'card';
  readonly hook: HookId;
  readonly card: Card;
}

export interface AlertDecision extends Provenance {
  readonly kind: 'alert';
  readonly id: string;
  readonly severity: 'info' | 'warning' | 'critical';
  readonly message: string;
  readonly category?: string;
}

export interface CareGapDecision extends Provenance {
  readonly kind: 'care-gap';
  readonly id: string;
  readonly measure?: string;
  readonly guideline?: string;
  readonly missing: string;
  /** ISO date (YYYY-MM-DD) the gap is due to be closed by. */
  readonly dueDate: string;
}

/** Actions a rule asks the EHR to apply directly ({@link https://cds-hooks.hl7.org/2.0/#system-action}). */
export interface SystemActionDecision extends Provenance {
  readonly kind: 'system-action';
  readonly hook: HookId;
  readonly actions: readonly Action[];
}

export type Decision = CardDecision | AlertDecision | CareGapDecision | SystemActionDecision;

/** A rule that could not be evaluated for this patient; the other rules still ran. */
export interface RuleError {
  readonly ruleId: string;
  readonly ruleVersion: string;
  readonly library?: string;
  readonly message: string;
}

/** The result of evaluating one patient against one knowledge set at one instant. */
export interface PatientEvaluation {
  readonly patientId: string;
  readonly evaluatedAt: string;
  readonly knowledgeVersion: string;
  readonly hook?: HookId;
  readonly decisions: readonly Decision[];
  readonly errors: readonly RuleError[];
}
