import type { Problem } from '../domain/errors.ts';
import { closest } from './closest.ts';
import type { ElmSummary } from './elm.ts';
import { BUILT_IN_FACTS, type ConditionNode, type Rule } from './rule-schema.ts';
import { jsonPath } from './zod-problems.ts';

const PLACEHOLDER = /\{\{\s*([^{}]+?)\s*\}\}/g;

/** placeholdersIn lists every `{{Name}}` in the string values of a JSON value, with its JSON path. */
export function placeholdersIn(value: unknown, path: (string | number)[] = []): { name: string; path: (string | number)[] }[] {
  if (typeof value === 'string') return [...value.matchAll(PLACEHOLDER)].map((m) => ({ name: m[1] ?? '', path }));
  if (Array.isArray(value)) return value.flatMap((v, i) => placeholdersIn(v, [...path, i]));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => placeholdersIn(v, [...path, k]));
  return [];
}

function conditionFacts(node: ConditionNode, path: (string | number)[]): { name: string; path: (string | number)[] }[] {
  if ('all' in node) return node.all.flatMap((n, i) => conditionFacts(n, [...path, 'all', i]));
  if ('any' in node) return node.any.flatMap((n, i) => conditionFacts(n, [...path, 'any', i]));
  if ('not' in node) return conditionFacts(node.not, [...path, 'not']);
  return [{ name: node.fact, path: [...path, 'fact'] }];
}

/** referencedFacts lists every fact a rule reads: in conditions, placeholders and fact references. */
function referencedFacts(rule: Rule): { name: string; path: (string | number)[] }[] {
  const refs = conditionFacts(rule.conditions, ['conditions']);
  refs.push(...placeholdersIn(rule.outcome, ['outcome']));
  const visit = (value: unknown, path: (string | number)[]): void => {
    if (Array.isArray(value)) value.forEach((v, i) => visit(v, [...path, i]));
    else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) {
        if (k === 'fact' && typeof v === 'string') refs.push({ name: v, path: [...path, k] });
        else visit(v, [...path, k]);
      }
    }
  };
  visit(rule.outcome, ['outcome']);
  return refs;
}

/**
 * checkRuleReferences verifies that a rule's library exists and that every fact it reads is a
 * define of that library it declared (or a built-in fact), suggesting the closest name on a typo.
 */
export function checkRuleReferences(file: string, rule: Rule, library: ElmSummary | undefined, libraryVersions: readonly string[]): Problem[] {
  const problems: Problem[] = [];
  const at = (path: (string | number)[]): string => jsonPath(path);
  if (!library) {
    const wanted = `${rule.cql.library}${rule.cql.version ? ` version '${rule.cql.version}'` : ''}`;
    problems.push({
      code: 'RULE_REFERENCE',
      file,
      path: at(['cql', 'library']),
      message: `rule ${rule.id} reads CQL library ${wanted}, which is not loaded`,
      ...(libraryVersions.length ? { hint: `loaded versions: ${libraryVersions.join(', ')}` } : {}),
    });
    return problems;
  }
  const defines = new Set(library.defines);
  rule.cql.facts.forEach((fact, i) => {
    if (defines.has(fact)) return;
    const suggestion = closest(fact, defines);
    problems.push({
      code: 'RULE_REFERENCE',
      file,
      path: at(['cql', 'facts', i]),
      message: `define "${fact}" does not exist in library ${library.name}${library.version ? ` version '${library.version}'` : ''}`,
      ...(suggestion ? { hint: `did you mean "${suggestion}"?` } : {}),
    });
  });
  const declared = new Set<string>([...rule.cql.facts, ...BUILT_IN_FACTS]);
  for (const ref of referencedFacts(rule)) {
    if (declared.has(ref.name)) continue;
    const suggestion = closest(ref.name, declared);
    problems.push({
      code: 'RULE_REFERENCE',
      file,
      path: at(ref.path),
      message: `"${ref.name}" is not one of the rule's facts (cql.facts or ${BUILT_IN_FACTS.join(', ')})`,
      hint: suggestion ? `did you mean "${suggestion}"?` : 'add the define to cql.facts',
    });
  }
  return problems;
}
