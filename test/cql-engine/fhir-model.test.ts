import { FHIRWrapper } from 'cql-exec-fhir';
import { Code } from 'cql-execution';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadFhirR4Model, MalformedFhirDataError, NOT_PLAIN, PRIMITIVE_VALUE, type FhirModel, type FhirResource } from '../../src/cql-engine/fhir-model.ts';

/**
 * Records read codes (cql-execution's `getCode`, which every code-filtered retrieve calls) straight
 * from the JSON; cql-exec-fhir builds element objects first. Both must give the same Codes for
 * every shape of CodeableConcept, Coding, list and choice, except that JSON whose shape the FHIR
 * model does not allow (which cql-exec-fhir reads as absent, or as it is) fails to read here with
 * a MalformedFhirDataError; and well-formed JSON never does.
 */

let model: FhirModel;
let plainFhir: FHIRWrapper;

beforeAll(() => {
  model = loadFhirR4Model();
  plainFhir = FHIRWrapper.FHIRv401();
});

interface CodeRecord {
  getCode(field: string): unknown;
}

/** A Code as plain data, keeping null apart from undefined. */
function plain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof Code) return { Code: [value.code, value.system, value.version, value.display].map(plain) };
  return value === undefined ? 'undefined' : value;
}

const text = fc.oneof(fc.constantFrom('a', '', 'http://loinc.org', '8480-6'), fc.constant(null), fc.constant(undefined), fc.integer({ min: 0, max: 2 }));
/** A primitive's extension (`_code`), now and then. */
const primitiveExtension = fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constant({ extension: [{ url: 'http://example.org/x', valueString: 'y' }] }) });
const coding = fc.record(
  { code: text, system: text, version: text, display: text, _code: primitiveExtension, _display: primitiveExtension, userSelected: fc.boolean() },
  { requiredKeys: [] },
);
const concept = fc.oneof(
  fc.record({ coding: fc.oneof(fc.array(fc.oneof({ weight: 5, arbitrary: coding }, { weight: 1, arbitrary: fc.constant(null) }), { maxLength: 3 }), fc.constant(null), coding), text }, { requiredKeys: [] }),
  fc.record({ code: text, system: text }, { requiredKeys: [] }),
  fc.constant('not an object'),
);
const element = fc.oneof({ weight: 4, arbitrary: concept }, { weight: 2, arbitrary: coding }, { weight: 2, arbitrary: fc.array(fc.oneof(concept, fc.constant(null)), { maxLength: 3 }) }, { weight: 1, arbitrary: fc.constantFrom(null, undefined) });

/** Elements of each kind: CodeableConcept, list of CodeableConcept, Coding, choices with and without code types. */
const FIELDS: readonly { readonly resourceType: string; readonly field: string; readonly keys: readonly string[] }[] = [
  { resourceType: 'Observation', field: 'code', keys: ['code', '_code'] },
  { resourceType: 'Observation', field: 'category', keys: ['category'] },
  { resourceType: 'Observation', field: 'value', keys: ['valueCodeableConcept', 'valueQuantity', 'valueString', 'value'] },
  { resourceType: 'MedicationRequest', field: 'medication', keys: ['medicationCodeableConcept', 'medicationReference', '_medicationCodeableConcept'] },
  { resourceType: 'Encounter', field: 'class', keys: ['class'] },
  { resourceType: 'Encounter', field: 'type', keys: ['type'] },
  { resourceType: 'Condition', field: 'clinicalStatus', keys: ['clinicalStatus'] },
  { resourceType: 'Observation', field: 'status', keys: ['status'] },
  { resourceType: 'Observation', field: 'code.coding', keys: ['code'] },
  { resourceType: 'Observation', field: 'valueCodeableConcept', keys: ['valueCodeableConcept'] },
];

describe('records read codes as cql-exec-fhir does', () => {
  it('getCode gives the same Codes for every element shape (property)', () => {
    const cases = fc.tuple(fc.constantFrom(...FIELDS), fc.array(element, { minLength: 4, maxLength: 4 }), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }));
    fc.assert(
      fc.property(cases, ([{ resourceType, field, keys }, values, present]) => {
        const json: Record<string, unknown> = { resourceType, id: 'r1' };
        keys.forEach((key, i) => {
          if (present[i]) json[key] = key.startsWith('_') ? { extension: [{ url: 'http://example.org/x', valueString: 'y' }] } : values[i];
        });
        const ours = model.wrap(json as unknown as FhirResource, model.classFor(resourceType)!) as unknown as CodeRecord;
        const theirs = plainFhir.wrap(json) as unknown as CodeRecord;
        let expected: unknown;
        let threw = false;
        try {
          expected = plain(theirs.getCode(field));
        } catch {
          threw = true;
        }
        if (threw) {
          expect(() => ours.getCode(field)).toThrow();
          return;
        }
        let answer: unknown;
        try {
          answer = plain(ours.getCode(field));
        } catch (error) {
          // Malformed for the model: then reading the element the general way fails alike.
          expect(error).toBeInstanceOf(MalformedFhirDataError);
          const fresh = model.wrap(json as unknown as FhirResource, model.classFor(resourceType)!) as unknown as { get(field: string): unknown };
          expect(() => JSON.stringify(deepRead(fresh.get(field)))).toThrow(MalformedFhirDataError);
          return;
        }
        expect(answer).toEqual(expected);
      }),
      { numRuns: 3000 },
    );
  });

  it('never fails on well-formed CodeableConcepts and Codings, and gives cql-exec-fhir\'s Codes (property)', () => {
    const wellFormedText = fc.oneof(fc.constantFrom('a', '', 'http://loinc.org', '8480-6'), fc.constant(undefined));
    const wellFormedCoding = fc.record({ code: wellFormedText, system: wellFormedText, version: wellFormedText, display: wellFormedText }, { requiredKeys: [] });
    const wellFormedConcept = fc.record({ coding: fc.array(fc.oneof({ weight: 5, arbitrary: wellFormedCoding }, { weight: 1, arbitrary: fc.constant(null) }), { maxLength: 3 }), text: wellFormedText }, { requiredKeys: [] });
    const fields = [
      { resourceType: 'Observation', field: 'code', key: 'code', value: wellFormedConcept },
      { resourceType: 'Observation', field: 'category', key: 'category', value: fc.array(wellFormedConcept, { maxLength: 3 }) },
      { resourceType: 'MedicationRequest', field: 'medication', key: 'medicationCodeableConcept', value: wellFormedConcept },
      { resourceType: 'Encounter', field: 'class', key: 'class', value: wellFormedCoding },
      { resourceType: 'Condition', field: 'clinicalStatus', key: 'clinicalStatus', value: wellFormedConcept },
    ];
    const cases = fc.oneof(...fields.map(({ value, ...rest }) => value.map((json) => ({ ...rest, json }))));
    fc.assert(
      fc.property(cases, ({ resourceType, field, key, json: value }) => {
        const json = { resourceType, id: 'r1', [key]: value };
        const ours = model.wrap(json as unknown as FhirResource, model.classFor(resourceType)!) as unknown as CodeRecord;
        const theirs = plainFhir.wrap(json) as unknown as CodeRecord;
        expect(plain(ours.getCode(field))).toEqual(plain(theirs.getCode(field)));
      }),
      { numRuns: 1000 },
    );
  });
});

/** Every element under a value read from a record, read (lists, records and their elements): what toCode or equality would read. */
function deepRead(value: unknown, depth = 0): unknown {
  if (depth > 4 || value == null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item) => deepRead(item, depth + 1));
  const record = value as { readonly _typeInfo?: { readonly elements?: readonly { readonly name: string }[] } } & Record<string, unknown>;
  const names = ['coding', 'code', 'system', 'version', 'display', 'text', 'value', 'reference'];
  return Object.fromEntries(names.filter((name) => record._typeInfo?.elements?.some((e) => e.name === name) === true).map((name) => [name, deepRead(record[name], depth + 1)]));
}

describe('records hand out a primitive element\'s plain JSON value (PRIMITIVE_VALUE)', () => {
  const anyJson = fc.oneof(fc.constantFrom('active', '', 'final'), fc.boolean(), fc.integer(), fc.double({ noNaN: true }), fc.constant(null), fc.constant(undefined), fc.constant({ value: 'nested' }), fc.constant(['a']));
  const extension = fc.oneof(fc.constant(undefined), fc.constant(null), fc.constant({ extension: [{ url: 'http://example.org/x', valueString: 'y' }] }), fc.constant({ value: 'from the extension' }));

  it('is NOT_PLAIN or exactly what reading the element and then its value gives (property)', () => {
    const element = (record: unknown, field: string): unknown => {
      const value = (record as Record<string, unknown>)[field] as { value?: unknown } | null | undefined;
      return value == null ? value : value.value;
    };
    fc.assert(
      fc.property(anyJson, extension, anyJson, fc.constantFrom('MedicationRequest', 'Observation'), (status, statusExtension, id, type) => {
        const json: Record<string, unknown> = { resourceType: type };
        if (status !== undefined) json.status = status;
        if (statusExtension !== undefined) json._status = statusExtension;
        if (id !== undefined) json.id = id;
        const record = model.wrap(json as FhirResource, model.classFor(type) as never) as unknown as Record<symbol, (field: string) => unknown>;
        const fresh = () => model.wrap(json as FhirResource, model.classFor(type) as never);
        for (const field of ['status', 'id', 'subject', 'effective']) {
          let direct: unknown;
          try {
            direct = record[PRIMITIVE_VALUE]!.call(record, field);
          } catch (error) {
            // JSON of a type the model does not allow for the element: reading it the general way fails alike.
            expect(error).toBeInstanceOf(MalformedFhirDataError);
            expect(() => element(fresh(), field)).toThrow(MalformedFhirDataError);
            continue;
          }
          if (direct !== NOT_PLAIN) expect(direct).toBe(element(fresh(), field));
        }
        // The plain forms are taken.
        if (typeof status === 'string' && statusExtension == null) expect(record[PRIMITIVE_VALUE]!.call(record, 'status')).toBe(status);
      }),
      { numRuns: 500 },
    );
  });
});
