import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Code, CodeService, Concept, DateTime, Executor, Interval, Library, Repository, type DataProvider } from 'cql-execution';
import { FHIRWrapper, PatientSource } from 'cql-exec-fhir';
import { equals as cqlEquals, equivalent as cqlEquivalent } from 'cql-execution/lib/util/comparison.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { generateOpioidPatient } from '../../bench/opioid-patient.ts';
import { structural } from '../../bench/structural.ts';
import { createCqlCompiler } from '../../src/cql-engine/compiler.ts';
import { executeLibrary, prepareLibrary, type PreparedLibrary } from '../../src/cql-engine/execute.ts';
import { loadFhirR4Model, recordElementNames, type FhirModel, type FhirResource } from '../../src/cql-engine/fhir-model.ts';
import { createPatientSource, indexPatient, type PatientData, type PatientSourceOptions } from '../../src/cql-engine/patient-source.ts';

const ECQM = fileURLToPath(new URL('../../../shared/fixtures/population/ecqm-content-qicore-2024/', import.meta.url));
const HAVE_ECQM = existsSync(ECQM);
const BENCH_FIXTURES = fileURLToPath(new URL('../fixtures/bench/', import.meta.url));
const CACHE_DIR = fileURLToPath(new URL('../../.cache/test-elm/', import.meta.url));
const AS_OF = '2025-06-01T12:00:00.000+00:00';

type Defines = Record<string, unknown>;
type Outcome = { readonly ok: true; readonly defines: Defines } | { readonly ok: false; readonly message: string };

let model: FhirModel;
let plainSource: PatientSource;

beforeAll(() => {
  model = loadFhirR4Model();
  plainSource = PatientSource.FHIRv401();
  // cql-exec-fhir logs every path it cannot resolve; the eCQM content hits some on purpose.
  vi.spyOn(console, 'error').mockImplementation(() => undefined);
});

afterAll(() => {
  vi.restoreAllMocks();
});

/** cql-execution's own Library for the same ELM: no overload binding, the reference for "plain". */
function plainLibrary(main: unknown, includes: readonly unknown[]): Library {
  return new Library(main as never, new Repository(Object.fromEntries(includes.map((elm, i) => [String(i), elm]))));
}

/** Plain cql-execution + cql-exec-fhir: one PatientSource, reloaded per case (its construction re-parses the model). */
async function runPlain(library: Library, bundles: readonly unknown[], codeService: CodeService, parameters: Defines, options: PatientSourceOptions = {}): Promise<Record<string, Outcome>> {
  const source = options.requireProfileTagging === true ? PatientSource.FHIRv401({ requireProfileTagging: true }) : plainSource;
  source.reset();
  source.loadBundles([...bundles]);
  const executor = new Executor(library, codeService, parameters);
  try {
    const results = await executor.exec_patient_context(source as unknown as DataProvider, DateTime.parse(AS_OF) as DateTime);
    return Object.fromEntries(Object.entries(results.patientResults).map(([id, defines]) => [id, { ok: true, defines: defines as Defines }]));
  } catch (error) {
    return { '*': { ok: false, message: (error as Error).message } };
  }
}

async function runOurs(prepared: PreparedLibrary, bundle: PatientData, codeService: CodeService, parameters: Defines, options: PatientSourceOptions = {}): Promise<Outcome> {
  try {
    return { ok: true, defines: { ...(await executeLibrary(prepared, bundle, { executionDateTime: AS_OF, codeService, parameters, patientSource: options })) } };
  } catch (error) {
    return { ok: false, message: ((error as Error).cause as Error | undefined)?.message ?? (error as Error).message };
  }
}

function render(outcome: Outcome | undefined): unknown {
  if (outcome === undefined) return 'missing';
  return outcome.ok ? Object.fromEntries(Object.entries(outcome.defines).map(([k, v]) => [k, structural(v)])) : { error: outcome.message };
}

/** codeServiceFromBundle puts a ValueSet bundle's expansions into cql-execution's CodeService. */
function codeServiceFromBundle(bundle: { entry: { resource: { url: string; version?: string; expansion?: { contains?: { system: string; code: string; version?: string }[] } } }[] }): CodeService {
  const valueSets: Record<string, Record<string, { code: string; system: string; version?: string }[]>> = {};
  for (const { resource } of bundle.entry) {
    const codes = (resource.expansion?.contains ?? []).map((c) => ({ code: c.code, system: c.system, version: c.version }));
    (valueSets[resource.url] ??= {})[resource.version ?? ''] = codes;
  }
  return new CodeService(valueSets);
}

function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8')) as unknown;
}

interface Measure {
  readonly folder: string;
  readonly prepared: PreparedLibrary;
  readonly plain: Library;
  readonly codeService: CodeService;
  readonly parameters: Defines;
  readonly tests: readonly { readonly file: string; readonly bundle: PatientData }[];
}

function loadMeasure(folder: string): Measure {
  const dir = `${ECQM}measures/${folder}/`;
  const { measure, libraries } = readJson(`${dir}libraries.json`) as { measure: string; libraries: Record<string, string> };
  const elm = (name: string): unknown => readJson(`${ECQM}elm/${name}-${libraries[name]}.json`);
  const includes = Object.keys(libraries).filter((n) => n !== measure).map(elm);
  const prepared = prepareLibrary(elm(measure), includes, model);
  const plain = plainLibrary(elm(measure), includes);
  const files = readdirSync(dir);
  const codeService = codeServiceFromBundle(readJson(`${dir}${files.find((f) => f.startsWith('valuesets-'))}`) as Parameters<typeof codeServiceFromBundle>[0]);
  const period = (readJson(`${dir}${files.find((f) => f.startsWith('Measure-'))}`) as { effectivePeriod: { start: string; end: string } }).effectivePeriod;
  const parameters = {
    'Measurement Period': new Interval(DateTime.parse(`${period.start}T00:00:00.000`), DateTime.parse(`${period.end}T23:59:59.999`), true, true),
  };
  const tests = readdirSync(`${dir}tests/`).sort().map((file) => ({ file, bundle: readJson(`${dir}tests/${file}`) as PatientData }));
  return { folder, prepared, plain, codeService, parameters, tests };
}

const MEASURES = HAVE_ECQM ? readdirSync(`${ECQM}measures/`).sort() : [];

describe.skipIf(!HAVE_ECQM)(`eCQM QI-Core 2024 content: every define equals plain cql-exec-fhir${HAVE_ECQM ? '' : ' (skipped: ../shared/fixtures/population not present)'}`, () => {
  it('has the 5 measures', () => {
    expect(MEASURES).toHaveLength(5);
  });

  for (const folder of MEASURES) {
    it(`${folder}: all test cases`, async () => {
      const m = loadMeasure(folder);
      expect(m.tests.length).toBeGreaterThan(40);
      let evaluated = 0;
      for (const { file, bundle } of m.tests) {
        const plain = Object.values(await runPlain(m.plain, [bundle], m.codeService, m.parameters))[0];
        const ours = await runOurs(m.prepared, bundle, m.codeService, m.parameters);
        expect(render(ours), `${folder} ${file}`).toEqual(render(plain));
        if (ours.ok) evaluated++;
      }
      // The content must actually evaluate, not just fail the same way on both sides.
      expect(evaluated).toBe(m.tests.length);
    });
  }

  it('CMS125 with requireProfileTagging (trust meta.profile) matches cql-exec-fhir with the same option', async () => {
    const m = loadMeasure(MEASURES.find((f) => f.startsWith('CMS125')) ?? '');
    const options = { requireProfileTagging: true };
    for (const { file, bundle } of m.tests.slice(0, 15)) {
      const plain = Object.values(await runPlain(m.plain, [bundle], m.codeService, m.parameters, options))[0];
      const ours = await runOurs(m.prepared, bundle, m.codeService, m.parameters, options);
      expect(render(ours), file).toEqual(render(plain));
    }
  });

  it('a multi-patient source gives the same per-patient results as cql-exec-fhir loadBundles', async () => {
    const m = loadMeasure(MEASURES.find((f) => f.startsWith('CMS130')) ?? '');
    const bundles = m.tests.slice(0, 8).map((t) => t.bundle);
    const plain = await runPlain(m.plain, bundles, m.codeService, m.parameters);
    const executor = new Executor(m.prepared.library, m.codeService, m.parameters);
    const when = DateTime.parse(AS_OF) as DateTime;
    const fromIterable = await executor.exec_patient_context(createPatientSource(model, bundles), when);
    async function* stream(): AsyncGenerator<PatientData> {
      for (const bundle of bundles) yield bundle;
    }
    const fromAsync = await executor.exec_patient_context(createPatientSource(model, stream()), when);
    const renderAll = (results: Record<string, unknown>): unknown => Object.fromEntries(Object.entries(results).map(([id, d]) => [id, render({ ok: true, defines: d as Defines })]));
    const plainRendered = Object.fromEntries(Object.entries(plain).map(([id, o]) => [id, render(o)]));
    expect(Object.keys(plainRendered)).toHaveLength(8);
    expect(renderAll(fromIterable.patientResults)).toEqual(plainRendered);
    expect(renderAll(fromAsync.patientResults)).toEqual(plainRendered);
  });
});

describe('own fixtures: CQL compiled with src/cql-engine/compiler.ts', () => {
  const EDGE_CQL = `library DataLayerEdges version '1.0.0'
using FHIR version '4.0.1'
include FHIRHelpers version '4.0.1' called FHIRHelpers
context Patient
define "Observations": [Observation]
define "Distinct Observations": [Observation] O where O.status = 'final'
define "Union": [Observation] union [Observation]
define "Count Union": Count([Observation] union [Observation])
define "Ids": [Observation] O return O.id
define "Pairs": from [Observation] A, [Condition] C where C.id is not null
define "Conditions": [Condition] union [Condition]
define "Gender": Patient.gender
define "Code Texts": [Observation] O return O.code.text
define "Gender Extensions": Patient.gender.extension
define "Birth Date": Patient.birthDate
define "Given Names": Patient.name.given
define "Given Name Extensions": Patient.name.given.extension
define "Active": Patient.active.value
define "Quantity Values": [Observation] O return (O.value as FHIR.Quantity).value.value
define "Integer Values": [Observation] O return (O.value as FHIR.integer).value
define "Text Values": [Observation] O return O.code.text.value
define "Given Values": Patient.name.given.value
`;

  let edges: PreparedLibrary;
  let opioid: PreparedLibrary;
  let opioidCodes: CodeService;
  const plainOf = new Map<PreparedLibrary, Library>();

  beforeAll(async () => {
    const compiler = createCqlCompiler({ cacheDir: CACHE_DIR });
    const compile = async (file: string, text: string): Promise<PreparedLibrary> => {
      const result = await compiler.compile([{ file, text }], []);
      expect(result.problems).toEqual([]);
      const main = result.libraries[result.libraries.length - 1];
      if (main === undefined) throw new Error(`${file} produced no library`);
      const includes = result.libraries.filter((l) => l !== main).map((l) => l.elm);
      const prepared = prepareLibrary(main.elm, includes, model);
      plainOf.set(prepared, plainLibrary(main.elm, includes));
      return prepared;
    };
    edges = await compile('test/DataLayerEdges.cql', EDGE_CQL);
    opioid = await compile('test/fixtures/bench/OpioidBenzoBench.cql', readFileSync(`${BENCH_FIXTURES}OpioidBenzoBench.cql`, 'utf8'));
    const valueSets = readJson(`${BENCH_FIXTURES}valuesets.json`) as Record<string, unknown>;
    opioidCodes = new CodeService(Object.fromEntries(Object.entries(valueSets).filter(([k]) => !k.startsWith('$'))) as ConstructorParameters<typeof CodeService>[0]);
  }, 120_000);

  const obs = (id: string | undefined, status = 'final', text = `obs ${id ?? 'none'}`): FhirResource => ({
    resourceType: 'Observation',
    ...(id === undefined ? {} : { id }),
    status,
    code: { text, coding: [{ system: 'http://loinc.org', code: '8480-6' }] },
  });
  const patient: FhirResource = { resourceType: 'Patient', id: 'p1', gender: 'female' };
  const cond: FhirResource = { resourceType: 'Condition', id: 'c1', code: { text: 'x' } };

  const cases: readonly { readonly name: string; readonly input: PatientData }[] = [
    { name: 'unique ids', input: [patient, obs('o1'), obs('o2', 'amended'), cond] },
    { name: 'same id twice, same content (structural de-dup applies)', input: [patient, obs('o1'), obs('o1'), cond] },
    { name: 'same id twice, different content (kept apart)', input: [patient, obs('o1'), obs('o1', 'final', 'other text'), cond] },
    { name: 'no ids, identical content', input: [patient, obs(undefined), obs(undefined), cond] },
    { name: 'same resource object listed twice', input: ((o: FhirResource) => [patient, o, o])(obs('o9')) },
    { name: 'Bundle input', input: { resourceType: 'Bundle', entry: [{ resource: patient }, { resource: obs('o1') }, {}] } },
    {
      name: 'primitive extensions: with a value, without one, and in a list',
      input: [{
        ...patient,
        _gender: { extension: [{ url: 'http://example.org/gender-source', valueString: 'self-reported' }] },
        _birthDate: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] },
        name: [{ given: ['Ann', 'Beth'], _given: [null, { extension: [{ url: 'http://example.org/nickname', valueBoolean: true }] }] }],
      }, obs('o1')],
    },
    {
      name: 'System-typed values: boolean, decimal, integer, string, explicit null, value only in an extension',
      input: [
        { ...patient, active: false, name: [{ given: ['Ann', null as unknown as string], _given: [null, { extension: [{ url: 'http://example.org/x', valueString: 'y' }] }] }] },
        { ...obs('o1'), valueQuantity: { value: 5.25, unit: 'mg' } },
        { ...obs('o2'), valueInteger: 3 },
        { ...obs('o3'), valueQuantity: { value: null, unit: 'mg' } },
        { ...obs('o4'), valueInteger: 0, code: { text: null, _text: { extension: [{ url: 'http://example.org/x', valueString: 'z' }] } } },
      ],
    },
  ];

  for (const { name, input } of cases) {
    it(`edge library: ${name}`, async () => {
      const bundle = Array.isArray(input) ? { resourceType: 'Bundle', entry: input.map((resource) => ({ resource })) } : input;
      const plain = Object.values(await runPlain(plainOf.get(edges) as Library, [bundle], new CodeService({}), {}))[0];
      const ours = await runOurs(edges, input, new CodeService({}), {});
      expect(ours.ok).toBe(true);
      expect(render(ours)).toEqual(render(plain));
    });
  }

  it('opioid bench library over generated patients', async () => {
    for (const seed of [1, 2, 3]) {
      const resources = generateOpioidPatient({ resources: 60, seed, asOf: AS_OF });
      const plain = Object.values(await runPlain(plainOf.get(opioid) as Library, [{ resourceType: 'Bundle', entry: resources.map((resource) => ({ resource })) }], opioidCodes, {}))[0];
      const ours = await runOurs(opioid, resources, opioidCodes, {});
      expect(ours.ok).toBe(true);
      expect(render(ours), `seed ${seed}`).toEqual(render(plain));
    }
  });

  it('keeps element getters on a per-class prototype and compares records as cql-exec-fhir records compare', () => {
    const p = indexPatient(model, [patient, obs('o1'), obs('o2'), obs('o2'), obs(undefined)]);
    const records = p.findRecords('{http://hl7.org/fhir}Observation', { datatype: '{http://hl7.org/fhir}Observation' }) as object[];
    const [o1, o2, o2again] = records as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
    expect(Object.keys(o1)).toEqual([]);
    expect(Object.getPrototypeOf(o1)).toBe(Object.getPrototypeOf(o2));
    // The element names are those cql-exec-fhir's own record enumerates, in its order.
    const plain = FHIRWrapper.FHIRv401().wrap(obs('o1')) as object;
    expect(recordElementNames(o1)).toEqual(Object.keys(plain).filter((k) => typeof (plain as Record<string, unknown>)[k] !== 'function'));
    expect((o1.status as { value: unknown }).value).toBe('final');
    expect(cqlEquals(o2, o2again)).toBe(true);
    expect(cqlEquals(o1, o2)).toBe(false);
    expect(cqlEquals(o1, plain)).toBe(false);
    expect(cqlEquivalent(o2, o2again)).toBe(true);
  });

  it('retrieves return fresh arrays of the same records', () => {
    const p = indexPatient(model, [patient, obs('o1')]);
    const a = p.findRecords(null, { datatype: '{http://hl7.org/fhir}Observation' });
    const b = p.findRecords(null, { datatype: '{http://hl7.org/fhir}Observation' });
    expect(a).not.toBe(b);
    expect(a[0]).toBe(b[0]);
    expect(p.findRecords(null, { datatype: '{http://hl7.org/fhir}NoSuchType' })).toEqual([]);
    expect(p.getId()).toBe('p1');
  });

  it('rejects data without a Patient and bad executionDateTime with INPUT_INVALID', async () => {
    expect(() => indexPatient(model, [obs('o1')])).toThrow(expect.objectContaining({ code: 'INPUT_INVALID' }));
    expect(() => indexPatient(model, { resourceType: 'Bundle' } as PatientData)).toThrow(expect.objectContaining({ code: 'INPUT_INVALID' }));
    await expect(executeLibrary(edges, [patient], { executionDateTime: 'yesterday' })).rejects.toMatchObject({ code: 'INPUT_INVALID' });
  });

  it('prepareLibrary reports includes that do not resolve', () => {
    const main = { library: { identifier: { id: 'Main', version: '1' }, includes: { def: [{ localIdentifier: 'H', path: 'Helpers', version: '2' }] } } };
    expect(() => prepareLibrary(main, [], model)).toThrow(expect.objectContaining({ code: 'CQL_INCLUDE' }));
  });
});

describe('contained resources are read as their own resourceType', () => {
  const CONTAINED_CQL = `library ContainedResources version '1.0.0'
using FHIR version '4.0.1'
include FHIRHelpers version '4.0.1' called FHIRHelpers
context Patient
define "Order": First([MedicationRequest])
define "Contained Medication":
  First("Order".contained C
    where C is FHIR.Medication and ('#' + C.id) = ("Order".medication as FHIR.Reference).reference.value)
define "Is Medication": "Contained Medication" is FHIR.Medication
define "Medication Code": FHIRHelpers.ToConcept(("Contained Medication" as FHIR.Medication).code)
define "Contained Ids": "Order".contained C return all C.id.value
define "Contained Types": "Order".contained C return all (if C is FHIR.Medication then 'Medication' else if C is FHIR.Practitioner then 'Practitioner' else 'other')
`;
  const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
  const patient: FhirResource = { resourceType: 'Patient', id: 'p1' };
  const order: FhirResource = {
    resourceType: 'MedicationRequest',
    id: 'mr1',
    status: 'draft',
    intent: 'order',
    contained: [
      { resourceType: 'Practitioner', id: 'doc' },
      { resourceType: 'Medication', id: 'med1', code: { coding: [{ system: RXNORM, code: '1049621', display: 'oxycodone 5 MG Oral Tablet' }] } },
    ],
    medicationReference: { reference: '#med1' },
    subject: { reference: 'Patient/p1' },
  };

  let prepared: PreparedLibrary;
  let plain: Library;

  beforeAll(async () => {
    const result = await createCqlCompiler({ cacheDir: CACHE_DIR }).compile([{ file: 'test/ContainedResources.cql', text: CONTAINED_CQL }], []);
    expect(result.problems).toEqual([]);
    const main = result.libraries.find((l) => l.name === 'ContainedResources');
    if (main === undefined) throw new Error('ContainedResources did not compile');
    const includes = result.libraries.filter((l) => l !== main).map((l) => l.elm);
    prepared = prepareLibrary(main.elm, includes, model);
    plain = plainLibrary(main.elm, includes);
  }, 120_000);

  it('is FHIR.Medication / as FHIR.Medication see a contained Medication, and #id resolves', async () => {
    const ours = await runOurs(prepared, [patient, order], new CodeService({}), {});
    if (!ours.ok) throw new Error(ours.message);
    expect(ours.defines['Is Medication']).toBe(true);
    const concept = ours.defines['Medication Code'] as Concept;
    expect(concept).toBeInstanceOf(Concept);
    expect(concept.codes.map((c: Code) => [c.system, c.code])).toEqual([[RXNORM, '1049621']]);
    expect(ours.defines['Contained Ids']).toEqual(['doc', 'med1']);
    expect(ours.defines['Contained Types']).toEqual(['Practitioner', 'Medication']);
  });

  it('differs from cql-exec-fhir only where it typed contained resources as FHIR.Resource', async () => {
    const bundle = { resourceType: 'Bundle', entry: [patient, order].map((resource) => ({ resource })) };
    const theirs = Object.values(await runPlain(plain, [bundle], new CodeService({}), {}))[0];
    if (theirs === undefined || !theirs.ok) throw new Error('plain run failed');
    expect(theirs.defines['Contained Medication']).toBeNull();
    expect(theirs.defines['Medication Code']).toBeNull();
    expect(theirs.defines['Contained Ids']).toEqual(['doc', 'med1']);
    expect(theirs.defines['Contained Types']).toEqual(['other', 'other']);
  });
});
