import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HOOK_IDS } from '../../src/domain/hooks.ts';
import { RuleSchema, SUMMARY_MAX_LENGTH } from '../../src/knowledge/rule-schema.ts';

const validRule = {
  id: 'a-rule',
  version: '1.0.0',
  title: 'A rule',
  description: 'Why it exists',
  status: 'active',
  source: { label: 'Guideline' },
  runs: { hooks: ['patient-view'] },
  cql: { library: 'Lib', facts: ['X'] },
  conditions: { all: [{ fact: 'X', operator: 'equal', value: true }] },
  outcome: { card: { summary: 'Something to know', indicator: 'info' } },
};

/** card patches the valid rule's card with extra fields. */
const card = (fields: Record<string, unknown>): Record<string, unknown> => ({ outcome: { card: { ...validRule.outcome.card, ...fields } } });

const condition: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ fact: fc.constantFrom('X', 'context'), operator: fc.constantFrom('equal', 'greaterThan', 'in'), value: fc.jsonValue().filter((v) => v !== undefined) }),
    fc.record({ all: fc.array(tie('node'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ any: fc.array(tie('node'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ not: tie('node') }),
  ),
})).node;

describe('RuleSchema', () => {
  it('accepts a minimal valid rule', () => {
    expect(RuleSchema.safeParse(validRule).success).toBe(true);
  });

  it('accepts every well-formed condition tree, hook set and summary under the limit (property)', () => {
    fc.assert(
      fc.property(
        condition,
        fc.uniqueArray(fc.constantFrom(...HOOK_IDS), { minLength: 1 }),
        fc.string({ minLength: 1, maxLength: SUMMARY_MAX_LENGTH - 1 }).filter((s) => s.trim().length > 0),
        (conditions, hooks, summary) => {
          const result = RuleSchema.safeParse({ ...validRule, conditions, runs: { hooks }, outcome: { card: { summary, indicator: 'warning' } } });
          expect(result.success).toBe(true);
        },
      ),
    );
  });

  it('rejects summaries of 140 characters or more, at the summary path (property)', () => {
    fc.assert(
      fc.property(fc.string({ minLength: SUMMARY_MAX_LENGTH, maxLength: 400 }).filter((s) => s.trim().length >= SUMMARY_MAX_LENGTH), (summary) => {
        const result = RuleSchema.safeParse({ ...validRule, outcome: { card: { summary, indicator: 'info' } } });
        expect(result.success).toBe(false);
        expect(result.error?.issues.map((i) => i.path.join('.'))).toContain('outcome.card.summary');
      }),
    );
  });

  it('reports a bad node deep in a condition tree at its own path', () => {
    const result = RuleSchema.safeParse({ ...validRule, conditions: { all: [{ any: [{ fact: 'X', operator: 'eq', value: 1 }] }] } });
    expect(result.error?.issues.map((i) => i.path.join('.'))).toEqual(['conditions.all.0.any.0.operator']);
  });

  it('accepts a smart link with appContext, an absolute link without, and override reasons with display', () => {
    const links = [{ label: 'App', url: 'https://app.example.org/launch', type: 'smart', appContext: '{"order":"MedicationRequest/1"}' }, { label: 'Guideline', url: 'http://example.org/g', type: 'absolute' }];
    const overrideReasons = [{ system: 'http://x', code: 'snooze', display: 'Snooze' }];
    expect(RuleSchema.safeParse({ ...validRule, ...card({ links, overrideReasons }) }).error?.issues).toBeUndefined();
  });

  it('says why a link url is refused', () => {
    const result = RuleSchema.safeParse({ ...validRule, ...card({ links: [{ label: 'L', url: 'javascript:alert(1)', type: 'absolute' }] }) });
    expect(result.error?.issues.map((i) => i.message)).toEqual([expect.stringMatching(/http\(s\) URL.*javascript:/)]);
  });

  const invalid: { name: string; patch: Record<string, unknown>; path: string }[] = [
    { name: 'id not kebab-case', patch: { id: 'A Rule' }, path: 'id' },
    { name: 'status outside the set', patch: { status: 'live' }, path: 'status' },
    { name: 'runs nowhere', patch: { runs: {} }, path: 'runs' },
    { name: 'unknown hook', patch: { runs: { hooks: ['order-review'] } }, path: 'runs.hooks.0' },
    { name: 'suggestions without selectionBehavior', patch: { outcome: { card: { summary: 's', indicator: 'info', suggestions: [{ label: 'x' }] } } }, path: 'outcome.card.selectionBehavior' },
    { name: 'delete action without resourceId', patch: { outcome: { card: { summary: 's', indicator: 'info', selectionBehavior: 'any', suggestions: [{ label: 'x', actions: [{ type: 'delete', description: 'd' }] }] } } }, path: 'outcome.card.suggestions.0.actions.0.resourceId' },
    { name: 'care gap naming neither measure nor guideline', patch: { runs: { batch: true }, outcome: { careGap: { missing: 'x' } } }, path: 'outcome.careGap.guideline' },
    { name: 'a card on a batch-only rule', patch: { runs: { batch: true } }, path: 'outcome.card' },
    { name: 'unknown field', patch: { colour: 'red' }, path: '' },
    { name: 'an override reason without display', patch: card({ overrideReasons: [{ system: 'http://x', code: 'snooze' }] }), path: 'outcome.card.overrideReasons.0.display' },
    { name: 'an override reason without system', patch: card({ overrideReasons: [{ code: 'snooze', display: 'Snooze' }] }), path: 'outcome.card.overrideReasons.0.system' },
    { name: 'a javascript: link', patch: card({ links: [{ label: 'L', url: 'javascript:alert(1)', type: 'absolute' }] }), path: 'outcome.card.links.0.url' },
    { name: 'a data: link on a smart link', patch: card({ links: [{ label: 'L', url: 'data:text/html,<script>1</script>', type: 'smart' }] }), path: 'outcome.card.links.0.url' },
    { name: 'a link type outside absolute|smart', patch: card({ links: [{ label: 'L', url: 'https://x.org', type: 'relative' }] }), path: 'outcome.card.links.0.type' },
    { name: 'appContext on an absolute link', patch: card({ links: [{ label: 'L', url: 'https://x.org', type: 'absolute', appContext: '{}' }] }), path: 'outcome.card.links.0.appContext' },
    { name: 'an empty appContext on a smart link', patch: card({ links: [{ label: 'L', url: 'https://x.org/launch', type: 'smart', appContext: ' ' }] }), path: 'outcome.card.links.0.appContext' },
    { name: 'a rule source icon over ftp', patch: { source: { label: 'G', icon: 'ftp://x.org/icon.png' } }, path: 'source.icon' },
    { name: 'a card source url over file:', patch: card({ source: { label: 'G', url: 'file:///etc/passwd' } }), path: 'outcome.card.source.url' },
    { name: 'a blank source label', patch: { source: { label: '   ' } }, path: 'source.label' },
  ];
  for (const { name, patch, path } of invalid) {
    it(`rejects ${name}`, () => {
      const result = RuleSchema.safeParse({ ...validRule, ...patch });
      expect(result.success).toBe(false);
      expect(result.error?.issues.map((i) => i.path.join('.'))).toContain(path);
    });
  }
});
