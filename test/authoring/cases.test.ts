import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRuleCases, RuleCaseSchema } from '../../src/authoring/cases.ts';
import { formatProblem } from '../../src/domain/errors.ts';
import { jsonPath } from '../../src/knowledge/zod-problems.ts';

/** A rule test case's hook context is checked as the CDS service checks a call's (src/domain/hook-context.ts). */

const draft = { resourceType: 'MedicationRequest', id: 'draft-1', status: 'draft', intent: 'order' };
const draftOrders = { resourceType: 'Bundle', type: 'collection', entry: [{ resource: draft }] };
const user = { userId: 'Practitioner/1', patientId: 'p1' };

function testCase(hook: string | undefined, context: Record<string, unknown> | undefined): Record<string, unknown> {
  return {
    description: 'a case',
    evaluatedAt: '2026-03-01T12:00:00Z',
    ...(hook ? { hook } : {}),
    ...(context ? { context } : {}),
    patient: { resourceType: 'Bundle', type: 'collection', entry: [{ resource: { resourceType: 'Patient', id: 'p1' } }] },
    expect: { fires: false },
  };
}

describe('RuleCaseSchema: hook contexts', () => {
  const table: { name: string; hook?: string; context?: Record<string, unknown>; want: string[] }[] = [
    { name: 'order-select with no selection (the service answers 400)', hook: 'order-select', context: { ...user, draftOrders, selections: [] }, want: ['$.context.selections'] },
    { name: 'order-select selecting no draft order', hook: 'order-select', context: { ...user, draftOrders, selections: ['MedicationRequest/other'] }, want: ['$.context.selections[0]'] },
    { name: 'order-select without draftOrders', hook: 'order-select', context: { ...user, selections: ['MedicationRequest/draft-1'] }, want: ['$.context.draftOrders'] },
    { name: 'order-sign by a patient (clinicians only)', hook: 'order-sign', context: { ...user, userId: 'Patient/p1', draftOrders }, want: ['$.context.userId'] },
    { name: 'patient-view without a patientId', hook: 'patient-view', context: { userId: 'Practitioner/1' }, want: ['$.context.patientId'] },
    { name: 'a hook with no context', hook: 'patient-view', want: ['$.context'] },
    { name: 'a context with no hook', context: user, want: ['$.context'] },
    { name: 'order-select selecting a draft', hook: 'order-select', context: { ...user, draftOrders, selections: ['MedicationRequest/draft-1'] }, want: [] },
    { name: 'order-sign with an empty draftOrders bundle', hook: 'order-sign', context: { ...user, draftOrders: { resourceType: 'Bundle', type: 'collection', entry: [] } }, want: [] },
    { name: 'the nightly batch (no hook, no context)', want: [] },
  ];
  for (const { name, hook, context, want } of table) {
    it(name, () => {
      const parsed = RuleCaseSchema.safeParse(testCase(hook, context));
      expect(parsed.success ? [] : parsed.error.issues.map((issue) => jsonPath(issue.path))).toEqual(want);
    });
  }

  it('says the service would refuse the call', () => {
    const parsed = RuleCaseSchema.safeParse(testCase('order-select', { ...user, draftOrders, selections: [] }));
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.message).toContain('the CDS service answers such a call with 400');
  });

  it('hands the rules the context as the service does: ids bare, strings trimmed', () => {
    const parsed = RuleCaseSchema.parse(testCase('patient-view', { userId: ' Practitioner/1 ', patientId: 'Patient/p1', extra: 1 }));
    expect(parsed.context).toEqual({ userId: 'Practitioner/1', patientId: 'p1', extra: 1 });
  });
});

describe('loadRuleCases', () => {
  it('reports a case whose context the service refuses as a broken case file, located at the field', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'cairn-cases-'));
    await mkdir(path.join(root, 'rules/some-rule.tests'), { recursive: true });
    await writeFile(path.join(root, 'rules/some-rule.tests/empty-selection.json'), JSON.stringify(testCase('order-select', { ...user, draftOrders, selections: [] })));
    await writeFile(path.join(root, 'rules/some-rule.tests/valid.json'), JSON.stringify(testCase('order-sign', { ...user, draftOrders })));
    const { cases, problems } = await loadRuleCases(root);
    expect(cases.map((c) => c.name)).toEqual(['valid']);
    expect(problems.map(formatProblem)).toEqual([
      expect.stringMatching(/^rules\/some-rule\.tests\/empty-selection\.json \$\.context\.selections \[INPUT_INVALID\] .*400/),
    ]);
  });
});
