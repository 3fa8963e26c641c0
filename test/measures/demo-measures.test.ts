import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FhirResource } from '../../src/cql-engine/fhir-model.ts';
import { indexPatient } from '../../src/cql-engine/patient-source.ts';
import { loadKnowledge } from '../../src/knowledge/load.ts';
import type { KnowledgeSet } from '../../src/knowledge/knowledge-set.ts';
import { careGaps } from '../../src/measures/care-gaps.ts';
import { splitLibraryCanonical } from '../../src/measures/definition.ts';
import { evaluateMeasurePatient, measurementPeriod } from '../../src/measures/evaluate.ts';
import { populationCodeOf, type IndividualReport, type ReportGroup } from '../../src/measures/measure-report.ts';
import { readPatients } from '../../src/measures/patient-files.ts';
import { prepareMeasure, type PreparedMeasure } from '../../src/measures/prepare.ts';
import { summarize } from '../../src/measures/summarize.ts';
import { generatePopulation } from '../../src/synthetic/generate.ts';
import { PROJECT_ROOT, testDeps } from '../support/knowledge.ts';

/**
 * Cairn's own measures (measures/*.json + cql/CairnCMS*.cql), written with the intent of CMS122,
 * CMS125, CMS130 and CMS165: small hand-written patients on both sides of every bound, then a
 * generated population where each measure must find both hits and misses. Measurement period 2025
 * (each Measure's effectivePeriod).
 */

const MEASURES_DIR = path.join(PROJECT_ROOT, 'measures');
const CMS122 = 'cairn-cms122-hba1c-poor-control';
const CMS125 = 'cairn-cms125-breast-cancer-screening';
const CMS130 = 'cairn-cms130-colorectal-cancer-screening';
const CMS165 = 'cairn-cms165-controlling-blood-pressure';

const SYSTEM = {
  cpt: 'http://www.ama-assn.org/go/cpt',
  snomed: 'http://snomed.info/sct',
  icd10cm: 'http://hl7.org/fhir/sid/icd-10-cm',
  loinc: 'http://loinc.org',
  actCode: 'http://terminology.hl7.org/CodeSystem/v3-ActCode',
} as const;

// ---- Small patients -----------------------------------------------------------------------------

const PATIENT_ID = 'p1';
const subject = { reference: `Patient/${PATIENT_ID}` };
let nextId = 0;
const id = (prefix: string): string => `${prefix}-${++nextId}`;
const concept = (system: string, code: string): Record<string, unknown> => ({ coding: [{ system, code }] });

function patient(birthDate: string, gender: 'female' | 'male' = 'female'): FhirResource {
  return { resourceType: 'Patient', id: PATIENT_ID, gender, birthDate };
}

function encounter(date: string, options: { code?: string; system?: string; status?: string; classCode?: string; id?: string } = {}): FhirResource {
  return {
    resourceType: 'Encounter', id: options.id ?? id('enc'), status: options.status ?? 'finished',
    class: { system: SYSTEM.actCode, code: options.classCode ?? 'AMB' },
    type: [concept(options.system ?? SYSTEM.cpt, options.code ?? '99213')], subject,
    period: { start: `${date}T09:00:00Z`, end: `${date}T09:30:00Z` },
  };
}

/** An office visit in the measurement period: what puts a patient in every initial population. */
const officeVisit = (): FhirResource => encounter('2025-06-02');

function condition(system: string, code: string, onset: string, options: { verification?: string; clinical?: string; abatement?: string } = {}): FhirResource {
  return {
    resourceType: 'Condition', id: id('cond'),
    clinicalStatus: concept('http://terminology.hl7.org/CodeSystem/condition-clinical', options.clinical ?? 'active'),
    verificationStatus: concept('http://terminology.hl7.org/CodeSystem/condition-ver-status', options.verification ?? 'confirmed'),
    code: concept(system, code), subject, onsetDateTime: `${onset}T00:00:00Z`,
    ...(options.abatement === undefined ? {} : { abatementDateTime: `${options.abatement}T00:00:00Z` }),
  };
}

function lab(code: string, date: string, value: number | undefined, status = 'final'): FhirResource {
  return {
    resourceType: 'Observation', id: id('obs'), status, code: concept(SYSTEM.loinc, code), subject, effectiveDateTime: `${date}T10:00:00Z`,
    ...(value === undefined ? {} : { valueQuantity: { value, unit: '%', system: 'http://unitsofmeasure.org', code: '%' } }),
  };
}

function result(code: string, date: string): FhirResource {
  return {
    resourceType: 'Observation', id: id('obs'), status: 'final', code: concept(SYSTEM.loinc, code), subject, effectiveDateTime: `${date}T10:00:00Z`,
    valueCodeableConcept: concept(SYSTEM.snomed, '260385009'),
  };
}

function procedure(system: string, code: string, date: string, status = 'completed'): FhirResource {
  return { resourceType: 'Procedure', id: id('proc'), status, code: concept(system, code), subject, performedDateTime: `${date}T10:00:00Z` };
}

function bloodPressure(date: string, systolic: number, diastolic: number, encounterId?: string): FhirResource {
  const component = (code: string, value: number): Record<string, unknown> => ({ code: concept(SYSTEM.loinc, code), valueQuantity: { value, unit: 'mm[Hg]', system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } });
  return {
    resourceType: 'Observation', id: id('bp'), status: 'final', code: concept(SYSTEM.loinc, '85354-9'), subject, effectiveDateTime: `${date}T10:00:00Z`,
    ...(encounterId === undefined ? {} : { encounter: { reference: `Encounter/${encounterId}` } }),
    component: [component('8480-6', systolic), component('8462-4', diastolic)],
  };
}

const diabetes = (onset = '2018-03-01', options: { verification?: string } = {}): FhirResource => condition(SYSTEM.icd10cm, 'E11.9', onset, options);
const hypertension = (onset = '2018-03-01', code = 'I10', system: string = SYSTEM.icd10cm): FhirResource => condition(system, code, onset);
const hospiceEncounter = (date: string): FhirResource => encounter(date, { system: SYSTEM.snomed, code: '385765002' });

// ---- Harness ------------------------------------------------------------------------------------

let knowledge: KnowledgeSet;
const prepared = new Map<string, PreparedMeasure>();

beforeAll(async () => {
  const deps = testDeps();
  knowledge = await loadKnowledge(PROJECT_ROOT, { compiler: deps.compiler });
  const libraries = [...knowledge.libraries.values()].map((l) => ({ elm: l.compiled.elm }));
  for (const file of (await readdir(MEASURES_DIR)).filter((f) => f.endsWith('.json')).sort()) {
    const json = JSON.parse(await readFile(path.join(MEASURES_DIR, file), 'utf8')) as unknown;
    const measure = prepareMeasure(json, libraries, knowledge.valueSets, deps.model, { file: `measures/${file}` });
    prepared.set(measure.definition.id, measure);
  }
});

function measure(measureId: string): PreparedMeasure {
  const found = prepared.get(measureId);
  if (found === undefined) throw new Error(`measure ${measureId} is not loaded`);
  return found;
}

async function evaluate(measureId: string, resources: readonly FhirResource[]): Promise<IndividualReport> {
  const m = measure(measureId);
  return evaluateMeasurePatient(m, resources, { period: measurementPeriod(m) });
}

type Populations = Partial<Record<'initial-population' | 'denominator' | 'denominator-exclusion' | 'numerator', number>>;

function populations(group: ReportGroup | undefined): Populations {
  return Object.fromEntries((group?.population ?? []).map((p) => [populationCodeOf(p) ?? '?', p.count]));
}

/** The population counts of the patient (1 = member, 0 = not), after proportion semantics. */
async function membership(measureId: string, resources: readonly FhirResource[]): Promise<Populations> {
  return populations((await evaluate(measureId, resources)).group[0]);
}

const IN_NUMERATOR: Populations = { 'initial-population': 1, denominator: 1, 'denominator-exclusion': 0, numerator: 1 };
const NOT_IN_NUMERATOR: Populations = { 'initial-population': 1, denominator: 1, 'denominator-exclusion': 0, numerator: 0 };
const EXCLUDED: Populations = { 'initial-population': 1, denominator: 1, 'denominator-exclusion': 1, numerator: 0 };
const OUTSIDE: Populations = { 'initial-population': 0, denominator: 0, 'denominator-exclusion': 0, numerator: 0 };

interface Case {
  readonly name: string;
  readonly input: readonly FhirResource[];
  readonly want: Populations;
}

function runCases(measureId: string, cases: readonly Case[]): void {
  for (const { name, input, want } of cases) {
    it(name, async () => {
      expect(await membership(measureId, input)).toEqual(want);
    });
  }
}

// ---- The Measure resources ----------------------------------------------------------------------

describe('measures/ resources', () => {
  it('are four proportion measures whose library[0] names a loaded CQL library defining every criteria expression', async () => {
    expect([...prepared.keys()].sort()).toEqual([CMS122, CMS125, CMS130, CMS165]);
    for (const file of (await readdir(MEASURES_DIR)).sort()) {
      const json = JSON.parse(await readFile(path.join(MEASURES_DIR, file), 'utf8')) as Record<string, unknown> & { library: string[]; improvementNotation: { coding: { code: string; display: string }[] } };
      const m = measure(String(json.id));
      expect(file).toBe(`${m.definition.id}.json`);
      expect(json.url).toBe(`http://cairn.health/fhir/Measure/${m.definition.id}`);
      expect(json.version).toBe('1.0.0');
      const libraryName = splitLibraryCanonical(json.library[0] ?? '').name;
      expect(json.library[0]).toBe(`http://cairn.health/fhir/Library/${libraryName}`);
      expect([...knowledge.libraries.values()].some((l) => l.summary.name === libraryName)).toBe(true);
      const notation = json.improvementNotation.coding[0];
      expect(notation?.display).toBe(notation?.code === 'decrease' ? 'Decreased score indicates improvement' : 'Increased score indicates improvement');
      expect(m.definition.warnings).toEqual([]);
      expect(m.definition.groups[0]?.stratifiers.length).toBeGreaterThan(0);
      expect(m.definition.supplementalData.map((s) => s.expression)).toEqual(['SDE Sex', 'SDE Race', 'SDE Ethnicity', 'SDE Age Group']);
    }
    expect(measure(CMS122).definition.groups[0]?.improvementNotation).toBe('decrease');
    for (const m of [CMS125, CMS130, CMS165]) expect(measure(m).definition.groups[0]?.improvementNotation).toBe('increase');
  });
});

// ---- CMS122: HbA1c poor control (inverse) -------------------------------------------------------

describe(`${CMS122} (inverse: numerator = poor control)`, () => {
  const base = (born = '1965-05-01'): FhirResource[] => [patient(born), officeVisit(), diabetes()];
  runCases(CMS122, [
    { name: 'most recent HbA1c 9.5% is poor control', input: [...base(), lab('4548-4', '2025-10-01', 9.5)], want: IN_NUMERATOR },
    { name: 'most recent HbA1c 9.0% is not above 9', input: [...base(), lab('4548-4', '2025-10-01', 9.0)], want: NOT_IN_NUMERATOR },
    { name: 'no HbA1c in the period counts as poor control', input: [...base(), lab('4548-4', '2024-12-31', 6.5)], want: IN_NUMERATOR },
    { name: 'a test without a result counts as poor control', input: [...base(), lab('17856-6', '2025-04-01', undefined)], want: IN_NUMERATOR },
    { name: 'the most recent result decides (10% in March, 7% in October)', input: [...base(), lab('4548-4', '2025-03-01', 10), lab('4548-4', '2025-10-01', 7)], want: NOT_IN_NUMERATOR },
    { name: 'the lowest result of the most recent day decides', input: [...base(), lab('4548-4', '2025-10-01', 9.6), lab('17856-6', '2025-10-01', 8.1)], want: NOT_IN_NUMERATOR },
    { name: 'an entered-in-error result is ignored', input: [...base(), lab('4548-4', '2025-09-01', 7.2), lab('4548-4', '2025-11-01', 12.5, 'entered-in-error')], want: NOT_IN_NUMERATOR },
    { name: 'age 75 at the end of the period is in', input: [...base('1950-12-31'), lab('4548-4', '2025-10-01', 7)], want: NOT_IN_NUMERATOR },
    { name: 'age 76 at the end of the period is out', input: [...base('1949-12-31'), lab('4548-4', '2025-10-01', 7)], want: OUTSIDE },
    { name: 'age 18 at the end of the period is in', input: [...base('2007-12-31'), lab('4548-4', '2025-10-01', 7)], want: NOT_IN_NUMERATOR },
    { name: 'age 17 at the end of the period is out', input: [...base('2008-01-01'), lab('4548-4', '2025-10-01', 7)], want: OUTSIDE },
    { name: 'no diabetes, no population', input: [patient('1965-05-01'), officeVisit(), lab('4548-4', '2025-10-01', 9.5)], want: OUTSIDE },
    { name: 'a diabetes diagnosis entered in error does not count', input: [patient('1965-05-01'), officeVisit(), diabetes('2018-03-01', { verification: 'entered-in-error' })], want: OUTSIDE },
    { name: 'a visit on 31 December of the year before does not qualify', input: [patient('1965-05-01'), encounter('2024-12-31'), diabetes()], want: OUTSIDE },
    { name: 'a cancelled visit does not qualify', input: [patient('1965-05-01'), encounter('2025-06-02', { status: 'cancelled' }), diabetes()], want: OUTSIDE },
    { name: 'an inpatient stay is not a qualifying visit', input: [patient('1965-05-01'), encounter('2025-06-02', { system: SYSTEM.snomed, code: '32485007', classCode: 'IMP' }), diabetes()], want: OUTSIDE },
    { name: 'a preventive visit qualifies', input: [patient('1965-05-01'), encounter('2025-02-03', { code: '99396' }), diabetes(), lab('4548-4', '2025-02-03', 6.9)], want: NOT_IN_NUMERATOR },
    { name: 'a telephone visit qualifies', input: [patient('1965-05-01'), encounter('2025-02-03', { code: '98966' }), diabetes(), lab('4548-4', '2025-02-03', 6.9)], want: NOT_IN_NUMERATOR },
    { name: 'a hospice encounter in the period excludes (and keeps the patient out of the numerator)', input: [...base(), hospiceEncounter('2025-11-20')], want: EXCLUDED },
    { name: 'a hospice encounter in the year before does not exclude', input: [...base(), hospiceEncounter('2024-11-20'), lab('4548-4', '2025-10-01', 7)], want: NOT_IN_NUMERATOR },
    { name: 'a palliative care diagnosis active in the period excludes', input: [...base(), condition(SYSTEM.icd10cm, 'Z51.5', '2025-08-01')], want: EXCLUDED },
    { name: 'a palliative care procedure in the period excludes', input: [...base(), procedure(SYSTEM.snomed, '103735009', '2025-08-01')], want: EXCLUDED },
  ]);

  it('opens a care gap when the patient is in the numerator (decrease), not otherwise; strata and SDEs are reported', async () => {
    const poor = await evaluate(CMS122, [...base('1955-02-01'), lab('4548-4', '2025-10-01', 10.2)]);
    expect(careGaps(measure(CMS122), poor)).toHaveLength(1);
    expect(poor.group[0]?.stratifier?.[0]?.stratum[0]?.value.text).toBe('65-75');
    const sdes = (poor.contained ?? []).map((c) => [c.code, c.valueCodeableConcept]);
    expect(sdes).toContainEqual([{ text: 'SDE Sex' }, { coding: [{ system: 'http://hl7.org/fhir/administrative-gender', code: 'female', display: 'Female' }] }]);
    expect(sdes).toContainEqual([{ text: 'SDE Age Group' }, { text: '65-75' }]);
    const controlled = await evaluate(CMS122, [...base(), lab('4548-4', '2025-10-01', 6.4)]);
    expect(careGaps(measure(CMS122), controlled)).toEqual([]);
    expect(controlled.group[0]?.stratifier?.[0]?.stratum[0]?.value.text).toBe('18-64');
  });
});

// ---- CMS125: breast cancer screening ------------------------------------------------------------

describe(CMS125, () => {
  const base = (born = '1965-05-01', gender: 'female' | 'male' = 'female'): FhirResource[] => [patient(born, gender), officeVisit()];
  runCases(CMS125, [
    { name: 'a mammography report on 1 October two years before the period counts', input: [...base(), result('24606-6', '2023-10-01')], want: IN_NUMERATOR },
    { name: 'a mammography report on 30 September two years before does not', input: [...base(), result('24606-6', '2023-09-30')], want: NOT_IN_NUMERATOR },
    { name: 'a completed mammography procedure in the period counts', input: [...base(), procedure(SYSTEM.cpt, '77067', '2025-02-01')], want: IN_NUMERATOR },
    { name: 'a mammography procedure not completed does not count', input: [...base(), procedure(SYSTEM.cpt, '77067', '2025-02-01', 'not-done')], want: NOT_IN_NUMERATOR },
    { name: 'no mammogram', input: base(), want: NOT_IN_NUMERATOR },
    { name: 'men are not in the population', input: [...base('1965-05-01', 'male'), result('24606-6', '2025-01-10')], want: OUTSIDE },
    { name: 'age 52 at the end of the period is in', input: base('1973-12-31'), want: NOT_IN_NUMERATOR },
    { name: 'age 51 at the end of the period is out', input: base('1974-01-01'), want: OUTSIDE },
    { name: 'age 74 at the end of the period is in', input: base('1951-12-31'), want: NOT_IN_NUMERATOR },
    { name: 'age 75 at the end of the period is out', input: base('1950-12-31'), want: OUTSIDE },
    { name: 'status post bilateral mastectomy excludes', input: [...base(), condition(SYSTEM.icd10cm, 'Z90.13', '2015-04-01', { clinical: 'resolved' })], want: EXCLUDED },
    { name: 'a bilateral mastectomy after the period does not exclude', input: [...base(), procedure(SYSTEM.snomed, '27865001', '2026-02-01')], want: NOT_IN_NUMERATOR },
    { name: 'hospice care (a hospice supervision procedure) in the period excludes', input: [...base(), procedure(SYSTEM.cpt, '99377', '2025-07-01')], want: EXCLUDED },
  ]);
});

// ---- CMS130: colorectal cancer screening --------------------------------------------------------

describe(CMS130, () => {
  const base = (born = '1965-05-01'): FhirResource[] => [patient(born, 'male'), officeVisit()];
  runCases(CMS130, [
    { name: 'a colonoscopy on 1 January nine years before the period counts', input: [...base(), procedure(SYSTEM.cpt, '45378', '2016-01-01')], want: IN_NUMERATOR },
    { name: 'a colonoscopy on 31 December ten years before does not', input: [...base(), procedure(SYSTEM.cpt, '45378', '2015-12-31')], want: NOT_IN_NUMERATOR },
    { name: 'a FIT in the period counts', input: [...base(), result('29771-3', '2025-01-01')], want: IN_NUMERATOR },
    { name: 'a FIT the year before does not', input: [...base(), result('29771-3', '2024-12-31')], want: NOT_IN_NUMERATOR },
    { name: 'a FIT without a result does not count', input: [...base(), lab('29771-3', '2025-03-01', undefined)], want: NOT_IN_NUMERATOR },
    { name: 'a stool FIT-DNA two years before the period counts', input: [...base(), result('77353-1', '2023-01-01')], want: IN_NUMERATOR },
    { name: 'a stool FIT-DNA three years before does not', input: [...base(), result('77353-1', '2022-12-31')], want: NOT_IN_NUMERATOR },
    { name: 'a CT colonography four years before the period counts', input: [...base(), result('60515-4', '2021-01-01')], want: IN_NUMERATOR },
    { name: 'age 46 at the end of the period is in', input: base('1979-12-31'), want: NOT_IN_NUMERATOR },
    { name: 'age 45 at the end of the period is out', input: base('1980-01-01'), want: OUTSIDE },
    { name: 'age 75 at the end of the period is in', input: base('1950-12-31'), want: NOT_IN_NUMERATOR },
    { name: 'age 76 at the end of the period is out', input: base('1949-12-31'), want: OUTSIDE },
    { name: 'colon cancer excludes', input: [...base(), condition(SYSTEM.icd10cm, 'C18.9', '2019-05-01')], want: EXCLUDED },
    { name: 'colon cancer entered in error does not exclude', input: [...base(), condition(SYSTEM.icd10cm, 'C18.9', '2019-05-01', { verification: 'entered-in-error' })], want: NOT_IN_NUMERATOR },
  ]);

  it('stratifies 46-49 and 50-75 with boolean stratifiers', async () => {
    const young = await evaluate(CMS130, base('1978-06-01'));
    expect(young.group[0]?.stratifier?.map((s) => s.stratum.map((x) => x.value.text))).toEqual([['true'], []]);
    const older = await evaluate(CMS130, base('1960-06-01'));
    expect(older.group[0]?.stratifier?.map((s) => s.stratum.map((x) => x.value.text))).toEqual([[], ['true']]);
  });
});

// ---- CMS165: controlling high blood pressure ----------------------------------------------------

describe(CMS165, () => {
  const base = (born = '1965-05-01', hypertensionOnset = '2018-03-01'): FhirResource[] => [patient(born, 'male'), officeVisit(), hypertension(hypertensionOnset)];
  runCases(CMS165, [
    { name: '138/88 is controlled', input: [...base(), bloodPressure('2025-11-01', 138, 88)], want: IN_NUMERATOR },
    { name: '140/85 is not (systolic must be below 140)', input: [...base(), bloodPressure('2025-11-01', 140, 85)], want: NOT_IN_NUMERATOR },
    { name: '135/90 is not (diastolic must be below 90)', input: [...base(), bloodPressure('2025-11-01', 135, 90)], want: NOT_IN_NUMERATOR },
    { name: 'no reading is not controlled', input: base(), want: NOT_IN_NUMERATOR },
    { name: 'the most recent day decides (130/80 in May, 150/95 in November)', input: [...base(), bloodPressure('2025-05-01', 130, 80), bloodPressure('2025-11-01', 150, 95)], want: NOT_IN_NUMERATOR },
    { name: 'the lowest systolic and diastolic of the most recent day count', input: [...base(), bloodPressure('2025-11-01', 150, 84), bloodPressure('2025-11-01', 132, 92)], want: IN_NUMERATOR },
    {
      name: 'a reading during an emergency visit does not count',
      input: [...base(), encounter('2025-11-01', { id: 'er', classCode: 'EMER', system: SYSTEM.snomed, code: '4525004' }), bloodPressure('2025-05-01', 150, 95), bloodPressure('2025-11-01', 130, 80, 'er')],
      want: NOT_IN_NUMERATOR,
    },
    { name: 'a reading of the year before does not count', input: [...base(), bloodPressure('2024-12-31', 120, 70)], want: NOT_IN_NUMERATOR },
    { name: 'hypertension diagnosed on 30 June of the period is in', input: [...base('1965-05-01', '2025-06-30'), bloodPressure('2025-11-01', 120, 70)], want: IN_NUMERATOR },
    { name: 'hypertension diagnosed on 1 July of the period is out', input: base('1965-05-01', '2025-07-01'), want: OUTSIDE },
    { name: 'hypertension resolved before the period is out', input: [patient('1965-05-01', 'male'), officeVisit(), condition(SYSTEM.icd10cm, 'I10', '2015-01-01', { clinical: 'resolved', abatement: '2019-01-01' })], want: OUTSIDE },
    { name: 'a "hypertensive disorder" (SNOMED CT 38341003) is not essential hypertension', input: [patient('1965-05-01', 'male'), officeVisit(), hypertension('2018-03-01', '38341003', SYSTEM.snomed)], want: OUTSIDE },
    { name: 'age 85 at the end of the period is in', input: base('1940-12-31'), want: NOT_IN_NUMERATOR },
    { name: 'age 86 at the end of the period is out', input: base('1939-12-31'), want: OUTSIDE },
    { name: 'end-stage renal disease excludes', input: [...base(), condition(SYSTEM.icd10cm, 'N18.6', '2022-01-01')], want: EXCLUDED },
    { name: 'chronic kidney disease stage 4 does not exclude', input: [...base(), condition(SYSTEM.icd10cm, 'N18.4', '2022-01-01')], want: NOT_IN_NUMERATOR },
    { name: 'hospice care on the problem list excludes', input: [...base(), condition(SYSTEM.snomed, '170935008', '2025-10-01')], want: EXCLUDED },
  ]);

  it('stratifies by age group', async () => {
    const report = await evaluate(CMS165, [...base('1950-03-01'), bloodPressure('2025-11-01', 120, 70)]);
    expect(report.group[0]?.stratifier?.[0]?.stratum).toEqual([expect.objectContaining({ value: { text: '65-85' } })]);
  });
});

// ---- A generated population ---------------------------------------------------------------------

describe('a generated population (200 patients, seed 1)', () => {
  let dir: string;

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('gives every measure a denominator and a numerator strictly between none and all', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-demo-measures-'));
    await generatePopulation({ patients: 200, seed: 1, outDir: dir });
    const ids = [CMS122, CMS125, CMS130, CMS165];
    const reports = new Map<string, IndividualReport[]>(ids.map((m) => [m, []]));
    let patients = 0;
    for await (const data of readPatients([dir])) {
      patients++;
      const indexed = indexPatient(testDeps().model, data);
      for (const m of ids) reports.get(m)?.push(await evaluateMeasurePatient(measure(m), indexed, { period: measurementPeriod(measure(m)) }));
    }
    expect(patients).toBe(200);
    const lines: string[] = [];
    for (const m of ids) {
      const summary = summarize(measure(m), reports.get(m) ?? []);
      const counts = populations(summary.group[0]);
      const scored = (counts.denominator ?? 0) - (counts['denominator-exclusion'] ?? 0);
      const numerator = counts.numerator ?? 0;
      lines.push(`${m}: initial ${counts['initial-population']}, denominator ${counts.denominator}, exclusions ${counts['denominator-exclusion']}, numerator ${numerator}, rate ${summary.group[0]?.measureScore?.value.toFixed(3)}`);
      expect(scored, `${m} scored denominator`).toBeGreaterThan(0);
      expect(numerator, `${m} numerator`).toBeGreaterThan(0);
      expect(numerator, `${m} numerator`).toBeLessThan(scored);
    }
    console.info(`Cairn demo measures over 200 generated patients (2025):\n  ${lines.join('\n  ')}`);
  }, 180_000);
});
