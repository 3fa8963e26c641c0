import { fileURLToPath } from 'node:url';
import { CodeService } from 'cql-execution';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { structural } from '../../bench/structural.ts';
import { createCqlCompiler } from '../../src/cql-engine/compiler.ts';
import { executeLibrary, LibraryRepository, prepareLibrary, type PreparedLibrary } from '../../src/cql-engine/execute.ts';
import { loadFhirR4Model, type FhirModel, type FhirResource } from '../../src/cql-engine/fhir-model.ts';
import { childOf, fusedElementTests, fusedPrimitiveReads, nativeConversions, syncFallbacks } from '../../src/cql-engine/sync-execute.ts';
import { Context } from 'cql-execution';

const CACHE_DIR = fileURLToPath(new URL('../../.cache/test-elm/', import.meta.url));
const AS_OF = '2025-06-01T12:00:00.000+00:00';
const LOINC = 'http://loinc.org';
const SBP_VALUE_SET = 'http://example.org/fhir/ValueSet/sbp';

const HELPERS_CQL = `library SyncHelpers version '1.0.0'
using FHIR version '4.0.1'
include FHIRHelpers version '4.0.1' called FHIRHelpers
codesystem "LOINC": 'http://loinc.org'
code "Systolic": '8480-6' from "LOINC" display 'Systolic blood pressure'
context Patient
define "Final Observations": [Observation] O where O.status in { 'final', 'amended' }
define function "Value Of"(o FHIR.Observation): (o.value as FHIR.Quantity).value.value
define function Twice(x Integer): x * 2
`;

/** One define per twin in sync-execute.ts, most of them over the patient's data. */
const MAIN_CQL = `library SyncTwins version '1.0.0'
using FHIR version '4.0.1'
include FHIRHelpers version '4.0.1' called FHIRHelpers
include SyncHelpers version '1.0.0' called H
codesystem "LOINC": 'http://loinc.org'
valueset "Systolic BP": '${SBP_VALUE_SET}' codesystems { "LOINC" }
code "Systolic": '8480-6' from "LOINC" display 'Systolic blood pressure'
parameter "Threshold" Integer default 140
parameter "Cutoff" Integer
context Patient

define "Literals": { 'it\\'s', 'x' } union { null, 'a' }
define "Gender": Patient.gender
define "Is Female": Patient.gender = 'female'
define "Not Male": Patient.gender != 'male'
define "Same Gender": Patient.gender ~ 'FEMALE'
define "Final": H."Final Observations"
define "Values": H."Final Observations" O return H."Value Of"(O)
define "All Values": [Observation] O return all H."Value Of"(O)
define "High": [Observation] O where H."Value Of"(O) >= "Threshold" return O.id
define "Cutoff Given": "Cutoff"
define "Comparisons": { 1 < 2, 1 < 1, 2 > 3, 2 > 2, 2 <= 2, 3 <= 2, 3 >= 4, 4 >= 4, (null as Integer) < 1 }
define "Logic": { true and null, false and null, true or null, false or null, not null, null is true, false is false, 5 is null }
define "Coalesce": Coalesce(null, 'b', 'c')
define "Coalesce List": Coalesce({ null, 'x' })
define "Branches": [Observation] O return if O.status = 'final' then 'F' else if O.status = 'amended' then 'A' else 'other'
define "Cases": [Observation] O return case O.status.value when 'final' then 1 when 'amended' then 2 else 0 end
define "Standard Case": case when Patient.gender = 'female' then 'f' when Patient.gender = 'male' then 'm' else null end
define "Let": [Observation] O let v: H."Value Of"(O), doubled: v * 2 where v is not null return Tuple { id: O.id, doubled: doubled }
define "Pairs": from [Observation] A, [Observation] B where A.id < B.id return A.id + '-' + B.id
define "With": [Observation] A with [Observation] B such that A.id != B.id and B.status = 'final' return A.id
define "Without": [Observation] A without [Observation] B such that A.id != B.id and B.status = 'final' return A.id
define "Sorted Ids": ([Observation] O return O.id) I sort desc
define "Sorted By Value": [Observation] O return Tuple { id: O.id, v: H."Value Of"(O) } sort by v desc, id
define "Sum": ({ 1, 2, 3 }) X aggregate R starting 0: R + X
define "Distinct Statuses": distinct ([Observation] O return all O.status.value)
define "Union": H."Final Observations" union [Observation: "Systolic BP"]
define "In Value Set": [Observation] O where O.code in "Systolic BP" return O.id
define "Code Match": [Observation] O where O.code ~ "Systolic" return O.id
define "Retrieve By Code": [Observation: "Systolic"]
define "Retrieve By Value Set": [Observation: "Systolic BP"]
define "Exists": exists [Observation]
define "Count": Count([Observation])
define "First Last": { First([Observation] O return O.id), Last([Observation] O return O.id) }
define "Singleton": singleton from ([Observation] O where O.id = 'o1')
define "Indexer": ({ 'a', 'b', 'c' })[1]
define "IndexOf": IndexOf({ 'a', 'b', 'c' }, 'c')
define "Membership": { 2 in { 1, 2 }, { 1, 2 } contains 3, 5 in Interval[1, 10], Interval[1, 3) contains 3, (null as Integer) in Interval[1, 2] }
define "Strings": { 'a' + 'b', Combine({ 'x', null, 'y' }, ', '), StartsWith('abc', 'ab'), EndsWith('abc', 'bc'), Combine({ 'p', 'q' }) }
define "Instances": { Code { code: '1', system: 'http://s' } }
define "Concept": Concept { codes: { Code { code: '1', system: 'http://s' } }, display: 'one' }
define "Quantity": 5 'mg'
define "Tuple": Tuple { a: 1, b: Patient.gender, c: null as String }
define "Casts": { Patient.gender as FHIR.AdministrativeGender, (null as FHIR.Observation) is FHIR.Observation }
define "Element Types": [Observation] O return all {
  quantity: O.value is FHIR.Quantity, text: O.value is FHIR.string, dateTime: O.effective is FHIR.dateTime,
  period: O.effective is FHIR.Period, instant: O.effective is FHIR.instant, status: O.status is FHIR.ObservationStatus,
  code: O.code is FHIR.CodeableConcept, element: O.code is FHIR.Element
}
define "Interval": Interval[Patient.birthDate, @2025-01-01]
define "Functions": { H.Twice(2), H.Twice(null) }
define "Empty Query": ({} as List<FHIR.Observation>) O return O.id
define "Period": Interval[@2024-01-01T00:00:00.000Z, @2024-12-31T23:59:59.999Z]
define "Bounds": { start of "Period", end of "Period", start of Interval[null as DateTime, @2024-01-01T00:00:00.000Z], end of Interval[@2024-01-01T00:00:00.000Z, null as DateTime] }
define "Interval Relations": { "Period" overlaps Interval[@2024-06-01T00:00:00.000Z, @2025-06-01T00:00:00.000Z], "Period" includes @2024-03-01T00:00:00.000Z, Interval[@2024-02-01T00:00:00.000Z, @2024-03-01T00:00:00.000Z] included in "Period", { 1, 2 } includes { 2 }, { 3 } included in { 1, 2 } }
define "Date Relations": { @2024-01-01 before @2024-02-01, @2024-01-01T10:00:00.000Z after day of @2024-01-01T08:00:00.000Z, @2024-01-01 same or before @2024-01-01, @2024-03-01 same month or after @2024-03-31, "Period" before @2025-01-01T00:00:00.000Z }
define "Ages": { AgeInYearsAt(@2025-04-02), AgeInYearsAt(@2025-04-01), AgeInMonthsAt(@2025-04-01), years between Patient.birthDate and @2025-06-01, date from @2024-05-06T07:08:09.000Z }
define "Arithmetic": { 1 + 2, 5 - 7, 2.5 + 1, @2024-01-31 + 1 month, @2024-03-01T00:00:00.000Z - 2 days, 5 'mg' + 3 'mg', (null as Integer) + 1 }
define "Conversions": { ToString(5), ToDate(@2024-01-01T10:00:00.000Z), ToDateTime(@2024-01-01), ToDecimal(5), ToDecimal('2.50'), ToConcept("Systolic"), ConvertQuantity(1 'g', 'mg'), ConvertQuantity(1 'g', 'm') }
define "Products": { 2 * 3, 7 / 2, 2.5 * 2, 6 'mg' * 2, 10 'mg' / 4, 1 / 0, ToQuantity(5), ToQuantity('3 mg') }
define "Flatten": flatten { { 1, 2 }, { 3 } }
define "Difference": { difference in days between @2024-01-01 and @2024-03-01, difference in years between @2020-06-01 and @2024-05-31 }
define "Split": { Split('a,b,,c', ','), Split('abc', ''), Split(null, ',') }
define "Message": Message('value', true, 'CODE-1', 'Message', 'a message')
define "Concepts": [Observation] O return all FHIRHelpers.ToConcept(O.code)
define "Codings": [Observation] O return all (O.code.coding C return FHIRHelpers.ToCode(C))
define "Category Concepts": [Observation] O return all (O.category C return all FHIRHelpers.ToConcept(C))
define "Measurement Style": [Observation] O where (O.effective as FHIR.dateTime).value during "Period" and O.status = 'final' return O.id
`;

/** Defines whose synchronous twin must give up and leave the answer (or the error) to cql-execution. */
const GIVE_UP_CQL = `library SyncGiveUp version '1.0.0'
using FHIR version '4.0.1'
include FHIRHelpers version '4.0.1' called FHIRHelpers
context Patient
define "Two": singleton from ({ 1, 2 })
`;

let model: FhirModel;
const libraries = new Map<string, { readonly sync: PreparedLibrary; readonly async: PreparedLibrary }>();
const codeService = new CodeService({ [SBP_VALUE_SET]: { '': [{ code: '8480-6', system: LOINC }] } });

beforeAll(async () => {
  model = loadFhirR4Model();
  const compiler = createCqlCompiler({ cacheDir: CACHE_DIR });
  const result = await compiler.compile(
    [{ file: 'test/SyncHelpers.cql', text: HELPERS_CQL }, { file: 'test/SyncTwins.cql', text: MAIN_CQL }, { file: 'test/SyncGiveUp.cql', text: GIVE_UP_CQL }],
    [],
  );
  expect(result.problems).toEqual([]);
  const elms = result.libraries.map((l) => l.elm);
  for (const name of ['SyncTwins', 'SyncGiveUp']) {
    const main = result.libraries.find((l) => l.name === name)?.elm;
    const includes = elms.filter((elm) => elm !== main);
    libraries.set(name, {
      sync: prepareLibrary(main, includes, model, { repository: new LibraryRepository(includes) }),
      async: prepareLibrary(main, includes, model, { repository: new LibraryRepository(includes), synchronous: false }),
    });
  }
}, 120_000);

function library(name: string): { readonly sync: PreparedLibrary; readonly async: PreparedLibrary } {
  const found = libraries.get(name);
  if (found === undefined) throw new Error(`${name} was not prepared`);
  return found;
}

async function run(prepared: PreparedLibrary, data: readonly FhirResource[], parameters: Record<string, unknown> = {}): Promise<unknown> {
  try {
    const results = await executeLibrary(prepared, data, { executionDateTime: AS_OF, codeService, parameters });
    return Object.fromEntries(Object.entries(results).map(([k, v]) => [k, structural(v)]));
  } catch (error) {
    return { error: (error as Error).message };
  }
}

function observation(id: string, status: string, value: number | undefined, code = '8480-6', effective = '2024-05-01T10:00:00Z'): FhirResource {
  return {
    resourceType: 'Observation',
    id,
    status,
    effectiveDateTime: effective,
    code: { coding: [{ system: LOINC, code, display: code }] },
    ...(value === undefined ? {} : { valueQuantity: { value, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } }),
  };
}

const DATA_ABSENT = { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] };

/** withStatusForm writes an observation's status plainly, with a primitive extension beside it, as an extension alone, not at all, or as null. */
function withStatusForm(resource: FhirResource, form: string): FhirResource {
  const { status, ...rest } = resource as FhirResource & { status?: unknown };
  switch (form) {
    case 'with extension':
      return { ...rest, status, _status: DATA_ABSENT } as FhirResource;
    case 'extension only':
      return { ...rest, _status: DATA_ABSENT } as FhirResource;
    case 'absent':
      return rest as FhirResource;
    case 'null':
      return { ...rest, status: null } as FhirResource;
    default:
      return resource;
  }
}

/** withChoiceForms writes effective[x] as a dateTime, a Period, an extension alone or not at all, and value[x] as a string if asked. */
function withChoiceForms(resource: FhirResource, effectiveForm: string, valueAsString: boolean): FhirResource {
  const { effectiveDateTime, valueQuantity, ...rest } = resource as FhirResource & { effectiveDateTime?: string; valueQuantity?: { value?: number } };
  const value = valueQuantity === undefined ? {} : valueAsString ? { valueString: String(valueQuantity.value) } : { valueQuantity };
  switch (effectiveForm) {
    case 'period':
      return { ...rest, ...value, effectivePeriod: { start: effectiveDateTime, end: effectiveDateTime } } as FhirResource;
    case 'extension only':
      return { ...rest, ...value, _effectiveDateTime: DATA_ABSENT } as FhirResource;
    case 'absent':
      return { ...rest, ...value } as FhirResource;
    default:
      return { ...rest, ...value, effectiveDateTime } as FhirResource;
  }
}

const PATIENT: readonly FhirResource[] = [
  { resourceType: 'Patient', id: 'p1', gender: 'female', birthDate: '1960-04-02' },
  observation('o1', 'final', 150),
  observation('o2', 'amended', 120),
  observation('o3', 'preliminary', undefined, '8462-4'),
  observation('o4', 'final', 150),
  observation('o5', 'final', 140, '8480-6', '2025-02-01'),
];

describe('synchronous subtrees (sync-execute.ts) give the results cql-execution gives', () => {
  it('runs the twins of every supported node without giving up, with the same results', async () => {
    const { sync, async } = library('SyncTwins');
    expect(sync.synchronous?.subtrees).toBeGreaterThan(50);
    expect(async.synchronous).toBeUndefined();
    const before = syncFallbacks.count;
    const fusedBefore = fusedPrimitiveReads.count;
    const testsBefore = fusedElementTests.count;
    const ours = await run(sync, PATIENT, { Cutoff: 3 });
    expect(syncFallbacks.count - before, syncFallbacks.last).toBe(0);
    // ToString(O.status) and kin read the JSON value without building the element; `is` tests too.
    expect(fusedPrimitiveReads.count - fusedBefore).toBeGreaterThan(PATIENT.length);
    expect(fusedElementTests.count - testsBefore).toBeGreaterThan(PATIENT.length);
    expect(ours).toEqual(await run(async, PATIENT, { Cutoff: 3 }));
    // Values of 150 against the default threshold of 140: the parameter's default is read as cql-execution reads it.
    const high = JSON.stringify((ours as Record<string, unknown>)['High']);
    expect(high).toMatch(/o1.*o4.*o5/);
    expect(high).not.toMatch(/o2|o3/);
  });

  it('gives the same results for a patient without data, and without the parameter given', async () => {
    const { sync, async } = library('SyncTwins');
    const bare: FhirResource[] = [{ resourceType: 'Patient', id: 'p2' }];
    expect(await run(sync, bare)).toEqual(await run(async, bare));
  });

  it('leaves an error to cql-execution: the same error, raised by the original evaluation', async () => {
    const { sync, async } = library('SyncGiveUp');
    const before = syncFallbacks.count;
    const ours = await run(sync, PATIENT);
    expect(syncFallbacks.count - before).toBeGreaterThan(0);
    expect(ours).toEqual(await run(async, PATIENT));
    expect(JSON.stringify(ours)).toMatch(/SingletonFrom/);
  });

  it('property: any patient data gives the same results either way', async () => {
    const { sync, async } = library('SyncTwins');
    const arbitraryObservation = fc.record({
      status: fc.constantFrom('final', 'amended', 'preliminary', 'entered-in-error'),
      value: fc.option(fc.integer({ min: 60, max: 220 }), { nil: undefined }),
      code: fc.constantFrom('8480-6', '8462-4'),
      effective: fc.constantFrom('2023-12-31T23:00:00Z', '2024-01-01T00:00:00Z', '2024-07-01', '2024-12-31T23:59:59.999Z', '2025-01-01T00:00:00+01:00'),
      // Shared ids, and exact copies of the one before: lists with equal records must be de-duplicated.
      id: fc.constantFrom(undefined, 'shared-1', 'shared-2'),
      copyOfPrevious: fc.boolean(),
      // How status is written: the fused ToString(O.status) read takes only the plain form.
      statusForm: fc.constantFrom('plain', 'plain', 'with extension', 'extension only', 'absent', 'null'),
      // Choice elements in other forms: the fused `O.effective is FHIR.Period` reads which one the JSON holds.
      effectiveForm: fc.constantFrom('dateTime', 'dateTime', 'period', 'extension only', 'absent'),
      valueAsString: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('female', 'male', undefined),
        fc.array(arbitraryObservation, { maxLength: 6 }),
        fc.option(fc.integer({ min: 0, max: 200 }), { nil: undefined }),
        async (gender, observations, cutoff) => {
          const data: FhirResource[] = [
            { resourceType: 'Patient', id: 'p', ...(gender === undefined ? {} : { gender }) },
            ...observations.flatMap((o, i) => {
              const made = withChoiceForms(withStatusForm(observation(o.id ?? `o${i}`, o.status, o.value, o.code, o.effective), o.statusForm), o.effectiveForm, o.valueAsString);
              return o.copyOfPrevious ? [made, structuredClone(made)] : [made];
            }),
          ];
          const parameters = cutoff === undefined ? {} : { Cutoff: cutoff };
          expect(await run(sync, data, parameters)).toEqual(await run(async, data, parameters));
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('FHIRHelpers ToCode and ToConcept computed from the JSON', () => {
  const text = fc.oneof(fc.constantFrom('a', '', LOINC, '8480-6'), fc.constant(null), fc.constant(undefined), fc.integer({ min: 0, max: 2 }));
  const extension = fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constant({ extension: [{ url: 'http://example.org/x', valueString: 'y' }] }) });
  const coding = fc.oneof(
    { weight: 8, arbitrary: fc.record({ system: text, code: text, version: text, display: text, _code: extension, _display: extension }, { requiredKeys: [] }) },
    { weight: 1, arbitrary: fc.constantFrom(null, 'not a coding') },
  );
  // Duplicates on purpose: ToConcept's codes query is distinct.
  const codings = fc.array(coding, { maxLength: 4 }).chain((list) => fc.constantFrom(list, [...list, ...list.slice(0, 1)]));
  const concept = fc.record({ coding: fc.oneof({ weight: 6, arbitrary: codings }, { weight: 1, arbitrary: fc.constant(null) }), text, _text: extension }, { requiredKeys: [] });

  it('property: any CodeableConcept or Coding gives the Codes and Concepts the CQL gives', async () => {
    const { sync, async } = library('SyncTwins');
    const before = nativeConversions.count;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(concept, fc.array(concept, { maxLength: 2 })), { minLength: 1, maxLength: 4 }), async (observations) => {
        const data: FhirResource[] = [
          { resourceType: 'Patient', id: 'p' },
          ...observations.map(([code, category], i): FhirResource => ({ resourceType: 'Observation', id: `o${i}`, status: 'final', code, category })),
        ];
        expect(await run(sync, data)).toEqual(await run(async, data));
      }),
      { numRuns: 150 },
    );
    expect(nativeConversions.count - before).toBeGreaterThan(100);
  });
});

describe('light child contexts', () => {
  it('read like cql-execution child contexts, with their own lazily made objects', () => {
    const parent = new Context(null as never, new CodeService({}));
    parent.set('outer', 1);
    const light = childOf(parent as never, { row: 'r' }) as unknown as Context & Record<string, unknown>;
    const real = parent.childContext({ row: 'r' }) as unknown as Context & Record<string, unknown>;
    expect(light).toBeInstanceOf(Context);
    for (const field of ['parent', 'context_values', 'library_context', 'localId_context', 'evaluatedRecords', '_parameters', 'parameters', 'codeService', '_codeService', 'executionDateTime', 'messageListener']) {
      expect(light[field], field).toEqual(real[field]);
    }
    expect([light.get('row'), light.get('outer'), light.get('$this')]).toEqual([real.get('row'), real.get('outer'), real.get('$this')]);
    // Each child's lazily made objects are its own, and writable.
    const other = childOf(parent as never) as unknown as Context & { evaluatedRecords: unknown[]; library_context: object };
    (light.evaluatedRecords as unknown[]).push('x');
    expect(other.evaluatedRecords).toEqual([]);
    other.library_context = { A: 1 };
    expect(other.library_context).toEqual({ A: 1 });
    expect(light.library_context).toEqual({});
    light.set('row', 'changed');
    expect(light.get('row')).toBe('changed');
  });
});
