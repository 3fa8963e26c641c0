import type { Coding } from '../domain/decisions.ts';
import type { HookId } from '../domain/hooks.ts';
import type { TokenClaim } from './auth/index.ts';

/** A card as issued, so feedback can be checked against it and rule statistics computed. */
export interface IssuedCard {
  readonly uuid: string;
  readonly serviceId: string;
  readonly hook: HookId;
  readonly hookInstance: string;
  readonly patientId: string;
  readonly ruleId: string;
  readonly ruleVersion: string;
  readonly knowledgeVersion: string;
  readonly indicator: string;
  readonly issuedAt: string;
  /** The CDS client it was issued to: only that client's feedback is about it. */
  readonly client: string;
  /** Its suggestions' uuids: an accepted suggestion must be one of them (unknown for cards stored before they were kept). */
  readonly suggestions: readonly string[] | undefined;
  /** The override reasons it offered: only those snooze (absent for cards stored before they were kept: their rule's count). */
  readonly overrideReasons?: readonly OfferedReason[];
}

/** An override reason a card offered, as feedback names it. */
export interface OfferedReason {
  readonly system: string;
  readonly code: string;
}

/**
 * One service invocation, for the audit trail: ids and counts, never patient data. A call answered
 * without evaluating it (400, 503, an error) has `''` for the hookInstance and patient id it did not
 * give (or gave invalid).
 */
export interface InvocationRecord {
  readonly serviceId: string;
  readonly hook: HookId;
  readonly hookInstance: string;
  readonly client: string;
  readonly patientId: string;
  readonly knowledgeVersion: string;
  readonly at: string;
  readonly durationMs: number;
  readonly status: number;
  readonly cards: readonly IssuedCard[];
  readonly suppressed: number;
  readonly ruleErrors: number;
}

/** One feedback item ({@link https://cds-hooks.hl7.org/2.0/#feedback}) as stored. */
export interface FeedbackRecord {
  readonly cardUuid: string;
  readonly serviceId: string;
  readonly outcome: 'accepted' | 'overridden';
  readonly outcomeTimestamp: string;
  readonly acceptedSuggestions: readonly string[];
  readonly overrideReason?: Coding;
  readonly userComment?: string;
  readonly client: string;
  readonly receivedAt: string;
}

export interface FeedbackResult {
  readonly stored: number;
  readonly duplicates: number;
}

/** Longest snooze: a reason code asking for more is no snooze, and none ends later than this many days after its feedback was received. */
export const MAX_SNOOZE_DAYS = 366;

/** A rule silenced for one patient at one CDS client until `until` (from a "snooze" override reason). */
export interface Snooze {
  readonly ruleId: string;
  readonly patientId: string;
  /** The client whose feedback asked for it: patient ids are per EHR, so only its calls are silenced. */
  readonly client: string;
  readonly until: string;
  /** The index, among the items recorded with it, of the feedback item asking for it: added only if that item is stored (not a duplicate). */
  readonly item: number;
}

/**
 * CdsStore is where the CDS Hooks service keeps what must survive a restart: issued cards, the
 * invocation audit trail, feedback, the snoozes feedback creates and the token ids (jti) accepted. The DuckDB implementation
 * lives in warehouse/; the service only sees this port.
 */
export interface CdsStore {
  /** Records an invocation and its cards; may write behind (see flush) to keep storage off the response path. */
  recordInvocation(record: InvocationRecord): Promise<void>;
  /** Writes every invocation recorded so far. */
  flush(): Promise<void>;
  /** Records a jti the authenticator accepted (written behind, with invocations), so a restart still refuses it again. */
  recordClaim(claim: TokenClaim): void;
  /** The claims recorded that are still live at `nowSeconds` (epoch seconds). */
  liveClaims(nowSeconds: number): Promise<TokenClaim[]>;
  findCards(uuids: readonly string[]): Promise<ReadonlyMap<string, IssuedCard>>;
  /**
   * Stores feedback idempotently (same card, outcome and timestamp twice is one item) and the snoozes
   * its stored items ask for: a duplicate item is no change at all, whatever reason it gives.
   */
  recordFeedback(items: readonly FeedbackRecord[], snoozes: readonly Snooze[]): Promise<FeedbackResult>;
  /** Rules snoozed for a patient of `client` at `at`. */
  snoozedRules(client: string, patientId: string, at: string): Promise<ReadonlySet<string>>;
}
