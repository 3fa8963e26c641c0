import { Engine, type TopLevelCondition } from 'json-rules-engine';
import type { ConditionNode } from '../knowledge/rule-schema.ts';

/** A condition's outcome for one evaluation, for coverage and explanations. */
export interface ConditionTrace {
  /** Where the condition sits in the rule, e.g. `$.conditions.all[1].any[0]`. */
  readonly at: string;
  readonly fact: string;
  readonly path?: string;
  readonly operator: string;
  /** Undefined when json-rules-engine short-circuited the condition (not evaluated). */
  readonly result: boolean | undefined;
}

export interface ConditionOutcome {
  readonly fired: boolean;
  readonly trace: readonly ConditionTrace[];
}

/** PreparedConditions evaluates one rule's condition tree; built once per knowledge set. */
export interface PreparedConditions {
  /** Every fact the conditions read (leaf facts and `{ "fact": ... }` values), in tree order: what must be computed to decide. */
  readonly facts: readonly string[];
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
    facts: Object.freeze([...new Set(factsRead(conditions))]),
    async evaluate(facts) {
      const result = await engine.run({ ...facts });
      const ruleResult = result.results[0] ?? result.failureResults[0];
      return {
        fired: result.events.length > 0,
        trace: ruleResult ? collectTrace(ruleResult.conditions as unknown, '$.conditions') : [],
      };
    },
  };
}

/** factsRead walks a condition tree for every `fact` name, wherever json-rules-engine would read one. */
function factsRead(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(factsRead);
  if (!node || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([key, value]) => (key === 'fact' && typeof value === 'string' ? [value] : factsRead(value)));
}

function collectTrace(node: unknown, at: string): ConditionTrace[] {
  if (!node || typeof node !== 'object') return [];
  const record = node as Record<string, unknown>;
  for (const key of ['all', 'any'] as const) {
    if (Array.isArray(record[key])) return (record[key] as unknown[]).flatMap((child, i) => collectTrace(child, `${at}.${key}[${i}]`));
  }
  if (record.not) return collectTrace(record.not, `${at}.not`);
  if (typeof record.fact !== 'string') return [];
  return [{
    at,
    fact: record.fact,
    ...(typeof record.path === 'string' ? { path: record.path } : {}),
    operator: String(record.operator),
    result: typeof record.result === 'boolean' ? record.result : undefined,
  }];
}
