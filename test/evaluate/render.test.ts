import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { JsonValue } from '../../src/cql-engine/values.ts';
import { renderJson, truncateSummary } from '../../src/evaluate/render.ts';

describe('renderJson', () => {
  const facts: Record<string, JsonValue> = {
    'Patient Ref': { reference: 'Patient/p1' },
    Nothing: null,
    Blank: '',
    None: [],
    Codes: [{ system: 'http://x', code: 'a', display: null }],
    Age: 55,
  };
  const cases: { name: string; input: unknown; want: unknown }[] = [
    { name: 'a whole placeholder takes the fact value', input: { subject: '{{Patient Ref}}', age: '{{Age}}' }, want: { subject: { reference: 'Patient/p1' }, age: 55 } },
    { name: 'a missing or null fact drops its key', input: { resourceType: 'Task', for: '{{Missing}}', owner: '{{Nothing}}' }, want: { resourceType: 'Task' } },
    { name: 'an empty string, list or object drops its key (FHIR allows none)', input: { resourceType: 'Task', note: '{{Blank}}', code: { coding: '{{None}}' }, input: [] }, want: { resourceType: 'Task' } },
    { name: 'nulls inside a fact value are dropped too', input: { code: { coding: '{{Codes}}' } }, want: { code: { coding: [{ system: 'http://x', code: 'a' }] } } },
    { name: 'array items that render empty are dropped', input: { basedOn: ['{{Patient Ref}}', '{{Nothing}}', { reference: '{{Blank}}' }] }, want: { basedOn: [{ reference: 'Patient/p1' }] } },
    { name: 'false and 0 are values, kept', input: { doNotPerform: false, priority: 0 }, want: { doNotPerform: false, priority: 0 } },
    { name: 'text around a placeholder stays text', input: { description: 'Age {{Age}}' }, want: { description: 'Age 55' } },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => {
      expect(renderJson(input, facts)).toEqual(want);
    });
  }

  it('never renders null or an empty string, list or object anywhere (property)', () => {
    const isEmpty = (v: unknown): boolean =>
      v === null || v === '' || (Array.isArray(v) ? v.length === 0 || v.some(isEmpty) : typeof v === 'object' && (Object.keys(v).length === 0 || Object.values(v).some(isEmpty)));
    fc.assert(
      fc.property(fc.jsonValue(), fc.dictionary(fc.constantFrom('A', 'B'), fc.jsonValue()), (template, anyFacts) => {
        const rendered = renderJson({ resourceType: 'Task', x: template, y: '{{A}}', z: ['{{B}}'] }, anyFacts as Record<string, JsonValue>);
        expect(isEmpty(rendered)).toBe(false);
      }),
    );
  });
});

describe('truncateSummary', () => {
  it('keeps a summary under 140 characters (property)', () => {
    fc.assert(fc.property(fc.string({ maxLength: 400 }), (summary) => {
      expect(truncateSummary(summary).length).toBeLessThan(140);
    }));
  });
});
