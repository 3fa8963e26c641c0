import { Code, Concept, ValueSet } from 'cql-execution';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IndexedValueSet, ValueSetIndex } from '../../src/cql-engine/terminology.ts';

const SYSTEMS = ['http://loinc.org', 'http://snomed.info/sct', 'http://hl7.org/fhir/sid/icd-10-cm'];
const code = fc.record({ code: fc.constantFrom('1', '2', '3', '44054006', 'E11.9'), system: fc.option(fc.constantFrom(...SYSTEMS), { nil: undefined }) }).map((c) => new Code(c.code, c.system));
/** What `in ValueSet` and retrieves hand to hasMatch: a code, a concept, a string, null, or lists of them. */
const input = fc.oneof(code, fc.array(code, { maxLength: 3 }).map((codes) => new Concept(codes)), fc.constantFrom('1', '3', 'E11.9'), fc.constant(null), fc.array(fc.oneof(code, fc.constantFrom('2', 'x')), { maxLength: 3 }));

describe('IndexedValueSet.hasMatch answers like cql-execution ValueSet.hasMatch', () => {
  it('on generated value sets and codes', () => {
    fc.assert(fc.property(fc.array(code, { maxLength: 6 }), input, (codes, probe) => {
      const plain = new ValueSet('urn:oid:1.2.3', '1', codes);
      const indexed = new IndexedValueSet('urn:oid:1.2.3', '1', codes);
      let want: unknown;
      let got: unknown;
      try { want = plain.hasMatch(probe as never); } catch (error) { want = (error as Error).message; }
      try { got = indexed.hasMatch(probe); } catch (error) { got = (error as Error).message; }
      expect(got).toEqual(want);
    }), { numRuns: 3000 });
  });
});

describe('ValueSetIndex.resolve', () => {
  const index = new ValueSetIndex([
    { url: 'http://example.org/vs', version: '1.0', oids: ['1.2.3'], codes: [{ system: SYSTEMS[0]!, code: '1' }] },
    { url: 'http://example.org/vs', version: '2.0', oids: ['1.2.3'], codes: [{ system: SYSTEMS[0]!, code: '2' }] },
  ]);

  it.each([
    { name: 'latest without a version', reference: 'http://example.org/vs', version: undefined, want: '2.0' },
    { name: 'an explicit version', reference: 'http://example.org/vs', version: '1.0', want: '1.0' },
    { name: 'a version in the reference', reference: 'http://example.org/vs|1.0', version: undefined, want: '1.0' },
    { name: 'an empty version ignores the one in the reference', reference: 'http://example.org/vs|1.0', version: '', want: '2.0' },
    { name: 'by OID', reference: 'urn:oid:1.2.3', version: '1.0', want: '1.0' },
    { name: 'unknown', reference: 'http://example.org/other', version: undefined, want: undefined },
  ])('$name, the same on every call', ({ reference, version, want }) => {
    expect(index.resolve(reference, version)?.version).toBe(want);
    expect(index.resolve(reference, version)?.version).toBe(want);
  });
});
