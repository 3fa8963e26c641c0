import { Code, Concept, DateTime, Interval } from 'cql-execution';
import { FHIRWrapper } from 'cql-exec-fhir';
import { equals as cqlEquals, equivalent as cqlEquivalent } from 'cql-execution/lib/util/comparison.js';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { distinctList, originalDistinct } from '../../src/cql-engine/distinct.ts';
import { loadFhirR4Model, type FhirModel, type FhirResource } from '../../src/cql-engine/fhir-model.ts';

/**
 * distinctList (our de-duplication, over records with prototype getters) must keep exactly the
 * items cql-execution's own toDistinctList keeps over cql-exec-fhir's own records (own getters):
 * the same values are built both ways from one generated description.
 */

type Spec =
  | { readonly kind: 'null' }
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'number'; readonly value: number }
  | { readonly kind: 'boolean'; readonly value: boolean }
  | { readonly kind: 'code'; readonly code: string; readonly system: string; readonly display?: string }
  | { readonly kind: 'concept'; readonly codes: readonly { readonly code: string; readonly system: string }[]; readonly display?: string }
  | { readonly kind: 'dateTime'; readonly value: string }
  | { readonly kind: 'interval'; readonly low: number; readonly high: number }
  | { readonly kind: 'resource'; readonly json: FhirResource }
  | { readonly kind: 'coding'; readonly json: Record<string, unknown> }
  | { readonly kind: 'tuple'; readonly fields: readonly (readonly [string, Spec])[] }
  | { readonly kind: 'list'; readonly items: readonly Spec[] }
  /** The same object as an earlier item of the list (by position, modulo its length). */
  | { readonly kind: 'again'; readonly index: number };

// Instants that are equal in different offsets, and ones that differ.
const DATE_TIMES = ['2024-01-01T10:00:00.000Z', '2024-01-01T12:00:00.000+02:00', '2024-01-01T10:00:00.000+00:00', '2024-03-05T08:30:00.000Z', '2024-03-05'];
const SYSTEMS = ['http://loinc.org', 'http://snomed.info/sct'];
const CODES = ['1', '2'];

const coding = fc.record({ system: fc.constantFrom(...SYSTEMS), code: fc.constantFrom(...CODES) }, { requiredKeys: ['code'] });
// Resources one element apart from a base one: equal ones (an instant in another offset, 1 g as
// 1000 mg) and different ones (status, code, value, no id), so both answers come up often.
const BASE: FhirResource = {
  resourceType: 'Observation',
  id: 'o1',
  status: 'final',
  code: { coding: [{ system: SYSTEMS[0], code: '1' }] },
  effectiveDateTime: DATE_TIMES[0],
  valueQuantity: { value: 1, unit: 'g', system: 'http://unitsofmeasure.org', code: 'g' },
};
const { id: _id, ...withoutId } = BASE;
const OBSERVATIONS: readonly FhirResource[] = [
  BASE,
  { ...BASE, status: 'amended' },
  { ...BASE, effectiveDateTime: DATE_TIMES[1] },
  { ...BASE, valueQuantity: { value: 1000, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' } },
  { ...BASE, valueQuantity: { value: 2, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' } },
  { ...BASE, code: { coding: [{ system: SYSTEMS[0], code: '2' }] } },
  { ...BASE, id: 'o2' },
  withoutId as FhirResource,
  { ...withoutId, status: 'amended' } as FhirResource,
];
const observation = fc.constantFrom(...OBSERVATIONS);

const leaf: fc.Arbitrary<Spec> = fc.oneof(
  fc.constant<Spec>({ kind: 'null' }),
  fc.constantFrom('a', 'b', '').map((value): Spec => ({ kind: 'string', value })),
  fc.constantFrom(0, -0, 1, 2.5).map((value): Spec => ({ kind: 'number', value })),
  fc.boolean().map((value): Spec => ({ kind: 'boolean', value })),
  fc.record({ code: fc.constantFrom(...CODES), system: fc.constantFrom(...SYSTEMS), display: fc.constantFrom('d', 'e') }, { requiredKeys: ['code', 'system'] }).map((c): Spec => ({ kind: 'code', ...c })),
  fc.record({ codes: fc.array(fc.record({ code: fc.constantFrom(...CODES), system: fc.constantFrom(...SYSTEMS) }), { maxLength: 2 }), display: fc.constantFrom('d', 'e') }, { requiredKeys: ['codes'] })
    .map((c): Spec => ({ kind: 'concept', ...c })),
  fc.constantFrom(...DATE_TIMES).map((value): Spec => ({ kind: 'dateTime', value })),
  fc.record({ low: fc.integer({ min: 0, max: 2 }), high: fc.integer({ min: 2, max: 3 }) }).map((i): Spec => ({ kind: 'interval', ...i })),
  observation.map((json): Spec => ({ kind: 'resource', json })),
  coding.map((json): Spec => ({ kind: 'coding', json })),
  fc.nat({ max: 20 }).map((index): Spec => ({ kind: 'again', index })),
);

const spec: fc.Arbitrary<Spec> = fc.letrec<{ value: Spec }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(fc.tuple(fc.constantFrom('x', 'y'), tie('value')), { maxLength: 2 }).map((pairs): Spec => ({ kind: 'tuple', fields: [...new Map(pairs)] })),
    fc.array(tie('value'), { maxLength: 3 }).map((items): Spec => ({ kind: 'list', items })),
  ),
})).value;

let model: FhirModel;
let plainFhir: FHIRWrapper;

beforeAll(() => {
  model = loadFhirR4Model();
  plainFhir = FHIRWrapper.FHIRv401();
});

/** build makes the value a spec describes, with records built our way or cql-exec-fhir's way. */
function build(item: Spec, ours: boolean, earlier: readonly unknown[]): unknown {
  switch (item.kind) {
    case 'null':
      return null;
    case 'string':
    case 'number':
    case 'boolean':
      return item.value;
    case 'code':
      return new Code(item.code, item.system, undefined, item.display);
    case 'concept':
      return new Concept(item.codes.map((c) => new Code(c.code, c.system)), item.display);
    case 'dateTime':
      return DateTime.parse(item.value);
    case 'interval':
      return new Interval(item.low, item.high);
    case 'resource':
      return ours ? model.wrap(item.json, model.classFor('Observation') as never) : plainFhir.wrap(item.json);
    case 'coding':
      return ours ? model.wrap(item.json as unknown as FhirResource, model.classFor('Coding') as never) : plainFhir.wrap(item.json, 'Coding');
    case 'tuple':
      return Object.fromEntries(item.fields.map(([name, value]) => [name, build(value, ours, earlier)]));
    case 'list':
      return item.items.map((value) => build(value, ours, earlier));
    case 'again':
      return earlier.length === 0 ? null : earlier[item.index % earlier.length];
  }
}

function buildList(items: readonly Spec[], ours: boolean): unknown[] {
  const built: unknown[] = [];
  for (const item of items) built.push(build(item, ours, built));
  return built;
}

const keptPositions = (list: readonly unknown[], kept: readonly unknown[]): number[] => {
  // Kept items are first occurrences in order: walk both lists once.
  const positions: number[] = [];
  let next = 0;
  list.forEach((item, i) => {
    if (next < kept.length && kept[next] === item) {
      positions.push(i);
      next++;
    }
  });
  return positions;
};

describe('distinctList', () => {
  it('keeps the items cql-execution keeps, over records built either way', () => {
    fc.assert(
      fc.property(fc.array(spec, { maxLength: 10 }), (items) => {
        const ours = buildList(items, true);
        const plain = buildList(items, false);
        expect(keptPositions(ours, distinctList(ours))).toEqual(keptPositions(plain, originalDistinct(plain)));
      }),
      { numRuns: 1000 },
    );
  });

  it('answers CQL equality and equivalence of records as cql-exec-fhir records do', () => {
    fc.assert(
      fc.property(fc.tuple(leaf, leaf), ([a, b]) => {
        const [oursA, oursB] = buildList([a, b], true);
        const [plainA, plainB] = buildList([a, b], false);
        expect(cqlEquals(oursA, oursB)).toEqual(cqlEquals(plainA, plainB));
        expect(cqlEquivalent(oursA, oursB)).toEqual(cqlEquivalent(plainA, plainB));
      }),
      { numRuns: 400 },
    );
  });

  it('groups tuples by the records they hold whatever order their elements were written in', () => {
    const observation = (id: string, status = 'final') => model.wrap({ resourceType: 'Observation', id, status }, model.classFor('Observation') as never);
    const first = { request: observation('a'), drug: observation('b') };
    const reordered = { drug: observation('b'), request: observation('a') };
    const otherDrug = { request: observation('a'), drug: observation('b', 'amended') };
    expect(distinctList([first, reordered, otherDrug])).toEqual([first, otherDrug]);
    expect(originalDistinct([first, reordered, otherDrug])).toHaveLength(2);
    // Without a record: by the first primitive element in name order.
    const byName = { reference: 'Medication/1', concept: new Concept([new Code('1', 'http://loinc.org')]) };
    const byNameReordered = { concept: new Concept([new Code('1', 'http://loinc.org')]), reference: 'Medication/1' };
    const otherConcept = { reference: 'Medication/1', concept: new Concept([new Code('2', 'http://loinc.org')]) };
    expect(distinctList([byName, byNameReordered, otherConcept])).toEqual([byName, otherConcept]);
    expect(originalDistinct([byName, byNameReordered, otherConcept])).toHaveLength(2);
  });

  it('keeps one of a record reached twice and both of two resources with different ids', () => {
    const first = model.wrap({ resourceType: 'Observation', id: 'a', status: 'final' }, model.classFor('Observation') as never);
    const second = model.wrap({ resourceType: 'Observation', id: 'b', status: 'final' }, model.classFor('Observation') as never);
    const sameAsFirst = model.wrap({ resourceType: 'Observation', id: 'a', status: 'final' }, model.classFor('Observation') as never);
    expect(distinctList([first, second, first, sameAsFirst])).toEqual([first, second]);
  });
});
