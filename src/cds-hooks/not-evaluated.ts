import { PROVENANCE_EXTENSION, type CardDecision, type RuleError } from '../domain/decisions.ts';
import type { HookId } from '../domain/hooks.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import { deterministicUuid } from '../evaluate/ids.ts';
import { SUMMARY_MAX_LENGTH } from '../knowledge/rule-schema.ts';

/** The card topic of a rule that could not be evaluated. */
export const NOT_EVALUATED_TOPIC = { system: 'http://cairn.health/fhir/CodeSystem/card-topic', code: 'rule-not-evaluated', display: 'Rule not evaluated' } as const;

const SUFFIX = ': not checked, the data could not be evaluated';

/**
 * notEvaluatedCards turns the rules that failed in a hook call into warning cards: a safety check
 * that did not run must not look like one that found nothing (a missed opioid and benzodiazepine
 * warning is an empty answer otherwise). The card names the rule, never the patient's data; the
 * error itself goes to the log.
 */
export function notEvaluatedCards(prepared: PreparedKnowledge, errors: readonly RuleError[], call: { readonly hook: HookId; readonly hookInstance: string; readonly patientId: string; readonly evaluatedAt: string }): CardDecision[] {
  const knowledgeVersion = prepared.knowledge.version;
  return errors.map((error) => {
    const rule = prepared.knowledge.rules.find(({ rule: r }) => r.id === error.ruleId)?.rule;
    const title = rule?.title ?? error.ruleId;
    const room = SUMMARY_MAX_LENGTH - 1 - SUFFIX.length;
    const summary = `${title.length > room ? `${title.slice(0, room - 1)}…` : title}${SUFFIX}`;
    return {
      kind: 'card',
      hook: call.hook,
      ruleId: error.ruleId,
      ruleVersion: error.ruleVersion,
      knowledgeVersion,
      card: {
        uuid: deterministicUuid('not-evaluated', knowledgeVersion, error.ruleId, call.hook, call.hookInstance, call.patientId, call.evaluatedAt),
        summary,
        detail:
          `Cairn could not evaluate the rule **${title}** (\`${error.ruleId}\` ${error.ruleVersion}) for this call, so any advice it gives is missing here. ` +
          'The failure is logged for the rule\'s authors; until it is fixed, check what the rule looks for by other means.',
        indicator: 'warning',
        source: { label: 'Cairn rule engine', topic: NOT_EVALUATED_TOPIC },
        extension: { [PROVENANCE_EXTENSION]: { ruleId: error.ruleId, ruleVersion: error.ruleVersion, knowledgeVersion } },
      },
    };
  });
}
