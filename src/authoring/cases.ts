import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { Decision } from '../domain/decisions.ts';
import type { Problem } from '../domain/errors.ts';
import { parseHookContext } from '../domain/hook-context.ts';
import { HOOK_IDS } from '../domain/hooks.ts';
import type { PatientData } from '../cql-engine/patient-source.ts';
import { evaluateDefines, evaluatePatient, type RuleTrace } from '../evaluate/evaluate.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import { closest } from '../knowledge/closest.ts';
import { parseJson } from '../knowledge/json-file.ts';
import { KNOWLEDGE_FOLDERS } from '../knowledge/load.ts';
import { zodProblems } from '../knowledge/zod-problems.ts';

const JsonObject = z.record(z.string(), z.unknown());

/**
 * A rule test case, stored as `rules/<rule-id>.tests/<case>.json`: patient data, optional hook
 * context, the evaluation instant and what must (or must not) come out. A case with a hook is a
 * call the CDS service would answer: its context is validated as the service validates it, and the
 * rules see it as the service passes it on (ids bare, strings trimmed).
 */
export const RuleCaseSchema = z
  .strictObject({
    description: z.string().trim().min(1),
    evaluatedAt: z.iso.datetime({ offset: true }),
    hook: z.enum(HOOK_IDS).optional(),
    context: JsonObject.optional(),
    patient: z.union([z.looseObject({ resourceType: z.literal('Bundle'), entry: z.array(JsonObject).optional() }), z.array(JsonObject)]),
    expect: z.strictObject({
      fires: z.boolean(),
      card: JsonObject.optional(),
      alert: JsonObject.optional(),
      careGap: JsonObject.optional(),
      /** CQL define values for this patient, in their JSON form. */
      defines: JsonObject.optional(),
    }),
  })
  .refine((c) => !c.context || c.hook, { path: ['context'], message: 'a context needs a hook' })
  .transform((c, ctx) => {
    if (!c.hook) return c;
    const parsed = c.context ? parseHookContext(c.hook, c.context) : { ok: false as const, issues: [{ field: 'context', message: `required: a ${c.hook} call carries the context its hook defines` }] };
    if (parsed.ok) return { ...c, context: parsed.context };
    for (const issue of parsed.issues) ctx.issues.push({ code: 'custom', input: c.context, path: issuePath(issue.field), message: `${issue.message}; the CDS service answers such a call with 400, so this case tests a call that never reaches the rule` });
    return z.NEVER;
  });

/** issuePath turns a request field (`context.selections.0`) into a path in the case file. */
function issuePath(field: string): (string | number)[] {
  return field.split('.').map((key) => (/^\d+$/.test(key) ? Number(key) : key));
}

export type RuleCase = z.infer<typeof RuleCaseSchema>;

export interface LoadedCase {
  readonly ruleId: string;
  readonly file: string;
  readonly name: string;
  readonly testCase: RuleCase;
}

/** loadRuleCases reads every case of the given rules (all rules when empty); bad case files are problems. */
export async function loadRuleCases(knowledgeRoot: string, ruleIds: readonly string[] = []): Promise<{ cases: LoadedCase[]; problems: Problem[] }> {
  const rulesDir = path.join(knowledgeRoot, KNOWLEDGE_FOLDERS.rules);
  const cases: LoadedCase[] = [];
  const problems: Problem[] = [];
  let dirs: string[];
  try {
    dirs = (await readdir(rulesDir, { withFileTypes: true })).filter((d) => d.isDirectory() && d.name.endsWith('.tests')).map((d) => d.name).sort();
  } catch {
    return { cases, problems };
  }
  for (const dir of dirs) {
    const ruleId = dir.slice(0, -'.tests'.length);
    if (ruleIds.length > 0 && !ruleIds.includes(ruleId)) continue;
    for (const name of (await readdir(path.join(rulesDir, dir))).filter((n) => n.endsWith('.json')).sort()) {
      const file = `${KNOWLEDGE_FOLDERS.rules}/${dir}/${name}`;
      const parsed = parseJson('INPUT_INVALID', file, await readFile(path.join(knowledgeRoot, file), 'utf8'));
      if (!parsed.ok) {
        problems.push(parsed.problem);
        continue;
      }
      const result = RuleCaseSchema.safeParse(parsed.value);
      if (!result.success) problems.push(...zodProblems('INPUT_INVALID', file, result.error));
      else cases.push({ ruleId, file, name: name.replace(/\.json$/, ''), testCase: result.data });
    }
  }
  return { cases, problems };
}

export interface CaseResult {
  readonly case: LoadedCase;
  readonly passed: boolean;
  /** One line per difference: `$.card.summary: expected "...", got "..."`. */
  readonly failures: readonly string[];
  /** What the rule saw and decided (absent when the rule did not run). */
  readonly trace?: RuleTrace;
}

/** runRuleCase evaluates a case against prepared knowledge and lists every way the outcome differs from what it expects. */
export async function runRuleCase(prepared: PreparedKnowledge, loaded: LoadedCase): Promise<CaseResult> {
  const { testCase, ruleId } = loaded;
  const failures: string[] = [];
  const rule = prepared.rules.find((r) => r.loaded.rule.id === ruleId);
  if (!rule) {
    const suggestion = closest(ruleId, prepared.rules.map((r) => r.loaded.rule.id));
    return { case: loaded, passed: false, failures: [`no rule "${ruleId}" in the knowledge${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`] };
  }
  const request = {
    evaluatedAt: testCase.evaluatedAt,
    ...(testCase.hook ? { hook: testCase.hook } : {}),
    ...(testCase.context ? { context: testCase.context } : {}),
  };
  const patient = testCase.patient as unknown as PatientData;
  const evaluation = await evaluatePatient(prepared, patient, { ...request, trace: true });
  const trace = evaluation.traces?.find((t) => t.ruleId === ruleId);
  for (const error of evaluation.errors.filter((e) => e.ruleId === ruleId)) failures.push(`rule failed: ${error.message}`);
  const mine = evaluation.decisions.filter((d) => d.ruleId === ruleId);
  if (testCase.expect.fires !== mine.length > 0) {
    failures.push(testCase.expect.fires ? 'expected the rule to fire; it produced nothing' : `expected nothing; it produced ${mine.map(describeDecision).join('; ')}`);
  }
  const expectations: [string, Record<string, unknown> | undefined, Decision['kind']][] = [
    ['card', testCase.expect.card, 'card'],
    ['alert', testCase.expect.alert, 'alert'],
    ['careGap', testCase.expect.careGap, 'care-gap'],
  ];
  for (const [label, expected, kind] of expectations) {
    if (!expected) continue;
    const decision = mine.find((d) => d.kind === kind);
    if (!decision) {
      failures.push(`$.${label}: expected a ${kind}, none was produced`);
      continue;
    }
    failures.push(...subsetDiff(expected, decision.kind === 'card' ? decision.card : decision, `$.${label}`));
  }
  if (testCase.expect.defines) {
    const values = await evaluateDefines(prepared, rule.libraryKey, patient, request);
    for (const [name, expected] of Object.entries(testCase.expect.defines)) {
      if (!(name in values)) {
        const suggestion = closest(name, Object.keys(values));
        failures.push(`$.defines["${name}"]: no such define in ${rule.libraryKey}${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`);
        continue;
      }
      failures.push(...subsetDiff(expected, values[name], `$.defines["${name}"]`, true));
    }
  }
  return { case: loaded, passed: failures.length === 0, failures, ...(trace ? { trace } : {}) };
}

function describeDecision(decision: Decision): string {
  if (decision.kind === 'card') return `card "${decision.card.summary}"`;
  if (decision.kind === 'alert') return `alert "${decision.message}"`;
  if (decision.kind === 'system-action') return `${decision.actions.length} system action(s)`;
  return `care gap "${decision.missing}"`;
}

/**
 * subsetDiff lists where `actual` differs from `expected`, where every field `expected` names
 * must match and other fields of `actual` are ignored (unless `exact`, used for define values).
 */
export function subsetDiff(expected: unknown, actual: unknown, at: string, exact = false): string[] {
  if (expected !== null && typeof expected === 'object' && actual !== null && typeof actual === 'object') {
    if (Array.isArray(expected) !== Array.isArray(actual)) return [`${at}: expected ${show(expected)}, got ${show(actual)}`];
    if (Array.isArray(expected) && Array.isArray(actual)) {
      if (exact && expected.length !== actual.length) return [`${at}: expected ${expected.length} item(s) ${show(expected)}, got ${actual.length} ${show(actual)}`];
      return expected.flatMap((item, i) => (i < actual.length ? subsetDiff(item, actual[i], `${at}[${i}]`, exact) : [`${at}[${i}]: expected ${show(item)}, missing`]));
    }
    const out: string[] = [];
    const act = actual as Record<string, unknown>;
    for (const [key, value] of Object.entries(expected)) out.push(...subsetDiff(value, act[key], `${at}.${key}`, exact));
    if (exact) for (const key of Object.keys(act)) if (!(key in expected)) out.push(`${at}.${key}: not expected, got ${show(act[key])}`);
    return out;
  }
  return Object.is(expected, actual) ? [] : [`${at}: expected ${show(expected)}, got ${show(actual)}`];
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? 'undefined';
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}
