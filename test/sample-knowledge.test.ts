import { beforeAll, describe, expect, it } from 'vitest';
import { loadRuleCases, runRuleCase, type LoadedCase } from '../src/authoring/cases.ts';
import { formatProblem } from '../src/domain/errors.ts';
import { loadPreparedKnowledge } from '../src/evaluate/knowledge-service.ts';
import type { PreparedKnowledge } from '../src/evaluate/prepare.ts';
import { PROJECT_ROOT, testDeps } from './support/knowledge.ts';

// The shipped sample knowledge and every test case next to its rules (rules/<rule-id>.tests/*.json).
const { cases, problems } = await loadRuleCases(PROJECT_ROOT);
const byRule = new Map<string, LoadedCase[]>();
for (const c of cases) byRule.set(c.ruleId, [...(byRule.get(c.ruleId) ?? []), c]);
let prepared: PreparedKnowledge;

beforeAll(async () => {
  prepared = await loadPreparedKnowledge(PROJECT_ROOT, testDeps());
});

describe('sample knowledge', () => {
  it('validates with no problem, and every case file parses', () => {
    expect(problems.map(formatProblem)).toEqual([]);
    expect(prepared.knowledge.rules.length).toBeGreaterThanOrEqual(6);
  });

  it('gives every active rule positive and negative cases', () => {
    for (const { rule } of prepared.knowledge.rules.filter((r) => r.rule.status === 'active')) {
      const mine = byRule.get(rule.id) ?? [];
      expect(mine.some((c) => c.testCase.expect.fires), `${rule.id} has a case where it fires`).toBe(true);
      expect(mine.some((c) => !c.testCase.expect.fires), `${rule.id} has a case where it does not fire`).toBe(true);
    }
  });

  for (const [ruleId, ruleCases] of byRule) {
    describe(ruleId, () => {
      for (const loaded of ruleCases) {
        it(`${loaded.name}: ${loaded.testCase.description}`, async () => {
          const result = await runRuleCase(prepared, loaded);
          expect(result.failures, loaded.file).toEqual([]);
        });
      }
    });
  }
});
