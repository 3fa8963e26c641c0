import { fileURLToPath } from 'node:url';
import { CodeService, DateTime, Executor, Library, Repository } from 'cql-execution';
import { beforeAll, describe, expect, it } from 'vitest';
import { structural } from '../../bench/structural.ts';
import { createCqlCompiler } from '../../src/cql-engine/compiler.ts';
import { executeLibrary, prepareLibrary, type PreparedLibrary } from '../../src/cql-engine/execute.ts';
import { loadFhirR4Model, type FhirModel, type FhirResource } from '../../src/cql-engine/fhir-model.ts';
import { createPatientSource, indexPatient } from '../../src/cql-engine/patient-source.ts';

const CACHE_DIR = fileURLToPath(new URL('../../.cache/test-elm/', import.meta.url));
const AS_OF = '2025-06-01T12:00:00.000+00:00';

const HELPERS_CQL = `library OverloadHelpers version '1.0.0'
using FHIR version '4.0.1'
include FHIRHelpers version '4.0.1' called FHIRHelpers

define function Describe(x FHIR.Observation): 'Observation ' + x.id
define function Describe(x FHIR.Condition): 'Condition ' + x.id
define function Describe(x String): 'String ' + x
`;

const MAIN_CQL = `library Overloads version '1.0.0'
using FHIR version '4.0.1'
include FHIRHelpers version '4.0.1' called FHIRHelpers
include OverloadHelpers version '1.0.0' called H

context Patient

define function Kind(x Integer): 'Integer'
define function Kind(x String): 'String'
define function Kind(x Boolean): 'Boolean'
define function Kind(x FHIR.Observation): 'Observation'
define function Kind(x FHIR.Condition): 'Condition'
define function Kind(x List<Integer>): 'List<Integer>'
define function Kind(x Integer, y Integer): 'Integer, Integer'
define function Label(x FHIR.id): 'id'
define function Label(x FHIR.string): 'string'
define function When(o FHIR.Observation): (o.effective as dateTime).value
define function Stamp(p FHIR.Patient): Now()
define function "Observation Count"(p FHIR.Patient): Count([Observation])

define "Integer": Kind(1)
define "String": Kind('a')
define "Boolean": Kind(true)
define "Observation": [Observation] O return all Kind(O)
define "Condition": [Condition] C return Kind(C)
define "List": Kind({1, 2})
define "Two Arguments": Kind(1, 2)
define "Qualified Observation": [Observation] O return all H.Describe(O)
define "Qualified Condition": [Condition] C return H.Describe(C)
define "Qualified String": H.Describe('s')
define "Null Integer": Kind(null as Integer)
define "Id Label": [Observation] O return all Label(O.id)
define "When A": First([Observation] O return When(O))
define "When B": First([Observation] O return When(O))
define "Stamp": Stamp(Patient)
define "Observation Count": "Observation Count"(Patient)
`;

const PATIENT: readonly FhirResource[] = [
  { resourceType: 'Patient', id: 'p1', gender: 'female' },
  { resourceType: 'Observation', id: 'o1', status: 'final', code: { text: 'x' }, effectiveDateTime: '2025-05-01T08:00:00+02:00' },
  { resourceType: 'Observation', id: 'o2', status: 'final', code: { text: 'y' }, effectiveDateTime: '2025-05-02' },
  { resourceType: 'Condition', id: 'c1', code: { text: 'z' } },
];

let model: FhirModel;
let prepared: PreparedLibrary;
let unbound: Library;

beforeAll(async () => {
  model = loadFhirR4Model();
  const result = await createCqlCompiler({ cacheDir: CACHE_DIR }).compile(
    [{ file: 'test/OverloadHelpers.cql', text: HELPERS_CQL }, { file: 'test/Overloads.cql', text: MAIN_CQL }],
    [],
  );
  expect(result.problems).toEqual([]);
  const main = result.libraries.find((l) => l.name === 'Overloads');
  if (main === undefined) throw new Error('Overloads did not compile');
  const includes = result.libraries.filter((l) => l !== main).map((l) => l.elm);
  prepared = prepareLibrary(main.elm, includes, model);
  unbound = new Library(main.elm as never, new Repository(Object.fromEntries(includes.map((elm, i) => [String(i), elm]))));
}, 120_000);

async function runUnbound(): Promise<Record<string, unknown>> {
  const executor = new Executor(unbound, new CodeService({}));
  const results = await executor.exec_patient_context(createPatientSource(model, [PATIENT]), DateTime.parse(AS_OF) as DateTime);
  return Object.values(results.patientResults)[0] as Record<string, unknown>;
}

describe('static overload binding (overloads.ts)', () => {
  it('binds every function reference of this library and its includes', () => {
    expect(prepared.overloads.unbound).toBe(0);
    expect(prepared.overloads.bound).toBeGreaterThan(20);
    expect(prepared.overloads.remembered).toBeGreaterThan(0);
  });

  // `want` is the compiler's choice, which the bound library runs; `runtime` is what
  // cql-execution's own resolution (last overload whose parameter types accept the values) gives.
  const cases: readonly { readonly name: string; readonly want: unknown; readonly runtime?: unknown }[] = [
    // cql-execution 3.3.2 lets a value without `_is` pass any model type test (matchesNamedTypeSpecifier
    // defaults to true), so at runtime Kind(FHIR.Condition), defined later, also accepts 1, 'a' and true.
    { name: 'Integer', want: 'Integer', runtime: 'Condition' },
    { name: 'String', want: 'String', runtime: 'Condition' },
    { name: 'Boolean', want: 'Boolean', runtime: 'Condition' },
    { name: 'Observation', want: ['Observation', 'Observation'] },
    { name: 'Condition', want: ['Condition'] },
    { name: 'List', want: 'List<Integer>' },
    { name: 'Two Arguments', want: 'Integer, Integer' },
    { name: 'Qualified Observation', want: ['Observation o1', 'Observation o2'] },
    { name: 'Qualified Condition', want: ['Condition c1'] },
    { name: 'Qualified String', want: 'String s' },
    // A null argument passes every runtime type test, so the runtime takes the last one-argument Kind.
    { name: 'Null Integer', want: 'Integer', runtime: 'List<Integer>' },
    // FHIR.id derives from FHIR.string, so both overloads accept an id; the compiler picks the exact one.
    { name: 'Id Label', want: ['id', 'id'], runtime: ['string', 'string'] },
  ];

  for (const { name, want, runtime } of cases) {
    it(`${name}: bound runs the compiler's overload${runtime === undefined ? ', same as runtime resolution' : ''}`, async () => {
      const ours = await executeLibrary(prepared, PATIENT, { executionDateTime: AS_OF });
      const plain = await runUnbound();
      expect(ours[name]).toEqual(want);
      expect(plain[name]).toEqual(runtime ?? want);
    });
  }

  it('every other define equals the unbound library', async () => {
    const ours = await executeLibrary(prepared, PATIENT, { executionDateTime: AS_OF });
    const plain = await runUnbound();
    const others = Object.keys(plain).filter((name) => !cases.some((c) => c.name === name));
    expect(others.length).toBeGreaterThan(3);
    for (const name of others) expect(structural(ours[name]), name).toEqual(structural(plain[name]));
  });

  it('remembers a pure function per record but hands out copies of DateTime results', async () => {
    const ours = await executeLibrary(prepared, PATIENT, { executionDateTime: AS_OF });
    expect(ours['When A']).toBeInstanceOf(DateTime);
    expect(String(ours['When A'])).toBe('2025-05-01T08:00:00+02:00');
    expect(ours['When A']).toEqual(ours['When B']);
    expect(ours['When A']).not.toBe(ours['When B']);
  });

  it('never remembers functions that read the clock or data, even across evaluations of one patient', async () => {
    const patient = indexPatient(model, PATIENT);
    const first = await executeLibrary(prepared, patient, { executionDateTime: AS_OF });
    const second = await executeLibrary(prepared, patient, { executionDateTime: '2026-01-01T00:00:00.000+00:00' });
    expect(String(first.Stamp)).toBe('2025-06-01T12:00:00.000+00:00');
    expect(String(second.Stamp)).toBe('2026-01-01T00:00:00.000+00:00');
    expect(second['Observation Count']).toBe(2);
  });
});
