import type { JsonValue } from '../cql-engine/values.ts';
import type { ConditionNode, Rule } from '../knowledge/rule-schema.ts';
import type { CaseResult } from './cases.ts';

export interface ConditionCoverage {
  readonly at: string;
  readonly description: string;
  readonly seenTrue: boolean;
  readonly seenFalse: boolean;
}

export interface DefineCoverage {
  readonly define: string;
  /** true / a value / a non-empty list. */
  readonly seenTrue: boolean;
  /** false / null / an empty list. */
  readonly seenFalse: boolean;
}

export interface RuleCoverage {
  readonly ruleId: string;
  readonly cases: number;
  readonly conditions: readonly ConditionCoverage[];
  readonly defines: readonly DefineCoverage[];
}

function leaves(node: ConditionNode, at: string): { at: string; description: string }[] {
  if ('all' in node) return node.all.flatMap((n, i) => leaves(n, `${at}.all[${i}]`));
  if ('any' in node) return node.any.flatMap((n, i) => leaves(n, `${at}.any[${i}]`));
  if ('not' in node) return leaves(node.not, `${at}.not`);
  return [{ at, description: `${node.fact}${node.path ? ` ${node.path}` : ''} ${node.operator} ${JSON.stringify(node.value)}` }];
}

function truthy(value: JsonValue | undefined): boolean {
  if (value === null || value === undefined || value === false) return false;
  if (Array.isArray(value)) return value.length > 0;
  return true;
}

/**
 * ruleCoverage reports, for one rule, which of its conditions and which of its CQL facts its test
 * cases exercised both true and false. A condition json-rules-engine short-circuited counts as
 * neither.
 */
export function ruleCoverage(rule: Rule, results: readonly CaseResult[]): RuleCoverage {
  const traces = results.flatMap((r) => (r.trace ? [r.trace] : []));
  const conditions = leaves(rule.conditions, '$.conditions').map(({ at, description }) => {
    const seen = traces.flatMap((t) => t.conditions.filter((c) => c.at === at).map((c) => c.result));
    return { at, description, seenTrue: seen.includes(true), seenFalse: seen.includes(false) };
  });
  const defines = rule.cql.facts.map((define) => {
    const values = traces.map((t) => truthy(t.facts[define]));
    return { define, seenTrue: values.includes(true), seenFalse: values.includes(false) };
  });
  return { ruleId: rule.id, cases: results.length, conditions, defines };
}
