import { fileURLToPath } from 'node:url';
import { CodeService } from 'cql-execution';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCqlCompiler } from '../../src/cql-engine/compiler.ts';
import { executeLibrary, LibraryRepository, prepareLibrary, type PreparedLibrary } from '../../src/cql-engine/execute.ts';
import { ELEMENT_IS, loadFhirR4Model, MalformedFhirDataError, PRIMITIVE_VALUE, type FhirModel, type FhirResource } from '../../src/cql-engine/fhir-model.ts';

/**
 * An element whose JSON contradicts the FHIR R4 model fails to read with a MalformedFhirDataError
 * naming the resource and the element's JSON path (never its value), by every way CQL reads it:
 * `get` and the element getters, `getCode`, the JSON-only readings (PRIMITIVE_VALUE, ELEMENT_IS)
 * and the CQL engine over them. Elements nobody reads are not looked at.
 */

let model: FhirModel;
const CACHE_DIR = fileURLToPath(new URL('../../.cache/test-elm/', import.meta.url));

beforeAll(() => {
  model = loadFhirR4Model();
});

type Json = Record<string, unknown>;
type Record_ = Record<string, unknown> & { get(field: string): unknown; getCode(field: string): unknown } & Record<symbol, (...args: unknown[]) => unknown>;

function wrap(json: Json): Record_ {
  return model.wrap(json as FhirResource, model.classFor(json.resourceType as string)!) as unknown as Record_;
}

function medicationRequest(extra: Json): Json {
  return { resourceType: 'MedicationRequest', id: 'm1', status: 'active', intent: 'order', subject: { reference: 'Patient/p1' }, ...extra };
}

function observation(extra: Json): Json {
  return {
    resourceType: 'Observation',
    id: 'o1',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '98979-8' }] },
    effectiveDateTime: '2026-02-15',
    valueQuantity: { value: 24, unit: 'mL/min/{1.73_m2}', system: 'http://unitsofmeasure.org', code: 'mL/min/{1.73_m2}' },
    ...extra,
  };
}

/** What the read throws: a MalformedFhirDataError, whose resource, path and message are returned. */
function failure(read: () => unknown): { resource: string; elementPath: string; message: string } {
  try {
    read();
  } catch (error) {
    expect(error).toBeInstanceOf(MalformedFhirDataError);
    const { resource, elementPath, message } = error as MalformedFhirDataError;
    return { resource, elementPath, message };
  }
  throw new Error('the read did not fail');
}

describe('reading a malformed element fails, naming the resource and the element', () => {
  it('a single element that is an array (get, the getter, getCode)', () => {
    const json = medicationRequest({ medicationCodeableConcept: [{ coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '308048' }] }] });
    for (const read of [(r: Record_) => r.get('medication'), (r: Record_) => r.medication, (r: Record_) => r.getCode('medication')]) {
      expect(failure(() => read(wrap(json)))).toMatchObject({ resource: 'MedicationRequest/m1', elementPath: 'medicationCodeableConcept' });
    }
  });

  it('a complex element that is not an object (get, ELEMENT_IS, getCode)', () => {
    const json = medicationRequest({ medicationReference: 'Medication/oxycodone' });
    expect(failure(() => wrap(json).get('medication'))).toMatchObject({ resource: 'MedicationRequest/m1', elementPath: 'medicationReference' });
    const record = wrap(json);
    expect(failure(() => record[ELEMENT_IS]!.call(record, 'medication', { type: 'NamedTypeSpecifier', name: '{http://hl7.org/fhir}Reference' }))).toMatchObject({ elementPath: 'medicationReference' });
    expect(failure(() => wrap(json).getCode('medication'))).toMatchObject({ elementPath: 'medicationReference' });
  });

  it('a list element that is not an array, and a list item of the wrong shape', () => {
    expect(failure(() => wrap(observation({ category: { coding: [] } })).get('category'))).toMatchObject({ resource: 'Observation/o1', elementPath: 'category' });
    expect(failure(() => wrap(observation({ code: { coding: { system: 'http://loinc.org', code: '1' } } })).getCode('code'))).toMatchObject({ elementPath: 'code.coding' });
    expect(failure(() => (wrap(observation({ code: { coding: ['98979-8'] } })).code as Record_).coding)).toMatchObject({ elementPath: 'code.coding[0]' });
  });

  it('a decimal that is not a number, read through the element or as a plain value', () => {
    const json = observation({ valueQuantity: { value: '24', unit: 'mL/min' } });
    expect(failure(() => ((wrap(json).value as Record_).value as Record_).value)).toMatchObject({ resource: 'Observation/o1', elementPath: 'valueQuantity.value' });
    const quantity = wrap(json).value as Record_;
    expect(failure(() => quantity[PRIMITIVE_VALUE]!.call(quantity, 'value'))).toMatchObject({ elementPath: 'valueQuantity.value' });
  });

  it('a string-typed primitive that is not a string, and a boolean that is not a boolean', () => {
    const record = wrap(observation({ status: 5 }));
    expect(failure(() => record[PRIMITIVE_VALUE]!.call(record, 'status'))).toMatchObject({ elementPath: 'status' });
    expect(failure(() => wrap(observation({ status: ['final'] })).status)).toMatchObject({ elementPath: 'status' });
    expect(failure(() => wrap(observation({ code: { coding: [{ system: 'http://loinc.org', code: 98979 }] } })).getCode('code'))).toMatchObject({ elementPath: 'code.coding.code' });
    expect(failure(() => (wrap(medicationRequest({ doNotPerform: 'no' })).doNotPerform as Record_).value)).toMatchObject({ elementPath: 'doNotPerform' });
  });

  it('a date or dateTime that is not a string or does not parse', () => {
    for (const effective of ['garbage', '2026-13-45', 20260215]) {
      const found = failure(() => (wrap(observation({ effectiveDateTime: effective })).effective as Record_).value);
      expect(found).toMatchObject({ resource: 'Observation/o1', elementPath: 'effectiveDateTime' });
      expect(found.message).not.toContain(String(effective));
    }
    expect(failure(() => (wrap({ resourceType: 'Patient', id: 'p1', birthDate: 'soon' }).birthDate as Record_).value)).toMatchObject({ resource: 'Patient/p1', elementPath: 'birthDate' });
  });

  it('never puts the value in the message', () => {
    const { message } = failure(() => ((wrap(observation({ valueQuantity: { value: 'SECRET-24' } })).value as Record_).value as Record_).value);
    expect(message).toContain('Observation/o1');
    expect(message).toContain('valueQuantity.value');
    expect(message).not.toContain('SECRET');
  });
});

describe('well-formed and unread data', () => {
  it('reads well-formed elements as before', () => {
    const record = wrap(observation({ category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }] }));
    expect(((record.value as Record_).value as Record_).value).toBe(24);
    expect(String((record.effective as Record_).value)).toBe('2026-02-15');
    expect(record[PRIMITIVE_VALUE]!.call(record, 'status')).toBe('final');
    expect(record.category).toHaveLength(1);
  });

  it('does not look at elements nobody reads', () => {
    const record = wrap(observation({ interpretation: 'not a list', issued: 42, note: { text: 5 } }));
    expect(((record.value as Record_).value as Record_).value).toBe(24);
    expect(record.getCode('code')).toMatchObject({ code: '98979-8' });
  });
});

describe('CQL over malformed data fails instead of finding nothing', () => {
  const CQL = `library MalformedProbe version '1.0.0'
using FHIR version '4.0.1'
include FHIRHelpers version '4.0.1' called FHIRHelpers
codesystem "LOINC": 'http://loinc.org'
code "eGFR": '98979-8' from "LOINC"
context Patient
define "Low eGFR": exists ([Observation: "eGFR"] O where (O.value as FHIR.Quantity).value < 30 and O.effective as FHIR.dateTime after @2026-01-01)
define "Reference Orders": [MedicationRequest] M where M.medication is FHIR.Reference
`;
  let prepared: { sync: PreparedLibrary; async: PreparedLibrary };

  beforeAll(async () => {
    const compiler = createCqlCompiler({ cacheDir: CACHE_DIR });
    const result = await compiler.compile([{ file: 'test/MalformedProbe.cql', text: CQL }], []);
    expect(result.problems).toEqual([]);
    const elms = result.libraries.map((l) => l.elm);
    const main = result.libraries.find((l) => l.name === 'MalformedProbe')?.elm;
    const includes = elms.filter((elm) => elm !== main);
    prepared = {
      sync: prepareLibrary(main, includes, model, { repository: new LibraryRepository(includes) }),
      async: prepareLibrary(main, includes, model, { repository: new LibraryRepository(includes), synchronous: false }),
    };
  }, 120_000);

  const patient = { resourceType: 'Patient', id: 'p1' };
  async function run(library: PreparedLibrary, data: Json[]): Promise<unknown> {
    return executeLibrary(library, data as unknown as FhirResource[], { executionDateTime: '2026-03-01T12:00:00.000+00:00', codeService: new CodeService({}) });
  }

  for (const mode of ['sync', 'async'] as const) {
    it(`well-formed data gives the answers (${mode})`, async () => {
      const results = (await run(prepared[mode], [patient, observation({}), medicationRequest({ medicationReference: { reference: 'Medication/x' } })])) as Json;
      expect(results['Low eGFR']).toBe(true);
      expect(results['Reference Orders']).toHaveLength(1);
    });

    for (const [name, data] of [
      ['a string decimal', [patient, observation({ valueQuantity: { value: '24' } })]],
      ['a dateTime that does not parse', [patient, observation({ effectiveDateTime: 'garbage' })]],
      ['an array CodeableConcept', [patient, observation({ code: [{ coding: [{ system: 'http://loinc.org', code: '98979-8' }] }] })]],
      ['a string Reference', [patient, medicationRequest({ medicationReference: 'Medication/x' })]],
    ] as const) {
      it(`${name} makes evaluation fail, naming the element (${mode})`, async () => {
        await expect(run(prepared[mode], [...data])).rejects.toThrow(/Malformed FHIR data: (Observation\/o1|MedicationRequest\/m1) /);
      });
    }
  }
});
