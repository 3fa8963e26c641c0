import { Engine, type TopLevelCondition } from 'json-rules-engine';
import type { ConditionNode } from '../knowledge/rule-schema.ts';

/** A condition's outcome for one evaluation, for coverage and explanations. */
export interface ConditionTrace {
  readonly fact: string;
  readonly path?: string;
  readonly operator: string;
  readonly result: boolean;
}

export interface ConditionOutcome {
  readonly fired: boolean;
  readonly trace: readonly ConditionTrace[];
}

/** PreparedConditions evaluates one rule's condition tree; built once per knowledge set. */
export interface PreparedConditions {
  evaluate(facts: Readonly<Record<string, unknown>>): Promise<ConditionOutcome>;
}

/**
 * prepareConditions builds a json-rules-engine engine for one rule. One engine per rule keeps a
 * failing rule from affecting the others and lets each rule see only its own facts.
 */
export function prepareConditions(ruleId: string, conditions: ConditionNode): PreparedConditions {
  const engine = new Engine([], { allowUndefinedFacts: false });
  engine.addRule({ name: ruleId, conditions: conditions as TopLevelCondition, event: { type: 'fire' } });
  return {
    async evaluate(facts) {
      const result = await engine.run({ ...facts });
      const ruleResult = result.results[0] ?? result.failureResults[0];
      return {
        fired: result.events.length > 0,
        trace: ruleResult ? collectTrace(ruleResult.conditions as unknown) : [],
      };
    },
  };
}

function collectTrace(node: unknown): ConditionTrace[] {
  if (!node || typeof node !== 'object') return [];
  const record = node as Record<string, unknown>;
  for (const key of ['all', 'any'] as const) {
    if (Array.isArray(record[key])) return (record[key] as unknown[]).flatMap(collectTrace);
  }
  if (record.not) return collectTrace(record.not);
  if (typeof record.fact !== 'string') return [];
  return [{
    fact: record.fact,
    ...(typeof record.path === 'string' ? { path: record.path } : {}),
    operator: String(record.operator),
    // json-rules-engine leaves `result` unset on conditions it short-circuited.
    result: record.result === true,
  }];
}
