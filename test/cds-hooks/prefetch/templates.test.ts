import { readFile } from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { derivePrefetchPlan, derivePrefetchTemplates, PATIENT_SEARCH_PARAM, templateKey, withIncludes } from '../../../src/cds-hooks/prefetch/index.ts';
import { findLibrary, type KnowledgeSet } from '../../../src/knowledge/knowledge-set.ts';
import { loadKnowledge } from '../../../src/knowledge/load.ts';
import { FIXTURES, PROJECT_ROOT, testDeps } from '../../support/knowledge.ts';

const P = '{{context.patientId}}';
let knowledge: KnowledgeSet;
let allElm: unknown[];
let shapes: unknown[];

function elmOf(name: string): unknown {
  const library = findLibrary(knowledge, name);
  if (!library) throw new Error(`library ${name} is not loaded`);
  return library.compiled.elm;
}

beforeAll(async () => {
  knowledge = await loadKnowledge(PROJECT_ROOT, { compiler: testDeps().compiler });
  allElm = [...knowledge.libraries.values()].map((lib) => lib.compiled.elm);
  const dir = path.join(FIXTURES, 'cds-hooks-prefetch');
  const sources = await Promise.all(['PrefetchShapes.cql', 'PrefetchShared.cql'].map(async (file) => ({ file, text: await readFile(path.join(dir, file), 'utf8') })));
  const compiled = await testDeps().compiler.compile(sources, []);
  expect(compiled.problems).toEqual([]);
  shapes = compiled.libraries.map((lib) => lib.elm);
});

describe('derivePrefetchTemplates over the sample CQL', () => {
  it('gives the opioid library, with its CairnCommon include, Patient and medication searches', () => {
    const elm = withIncludes([elmOf('OpioidBenzodiazepine')], allElm);
    expect(elm.map((doc) => (doc as { library: { identifier: { id: string } } }).library.identifier.id)).toEqual(['OpioidBenzodiazepine', 'FHIRHelpers', 'CairnCommon']);
    const plan = derivePrefetchPlan(elm);
    expect(plan.templates).toEqual({
      medicationRequests: `MedicationRequest?patient=${P}`,
      medicationStatements: `MedicationStatement?patient=${P}`,
      patient: `Patient/${P}`,
    });
    expect(plan.resourceTypes).toEqual({ medicationRequests: 'MedicationRequest', medicationStatements: 'MedicationStatement', patient: 'Patient' });
    // CairnCommon reads referenced Medications: no patient search exists for them and _include is outside the subset.
    expect(plan.notPrefetchable).toEqual([{ dataType: '{http://hl7.org/fhir}Medication', reason: expect.stringContaining('_include') }]);
  });

  it('misses what only the include retrieves without it: includes matter', () => {
    const alone = derivePrefetchTemplates([elmOf('OpioidBenzodiazepine')]);
    expect(alone).not.toHaveProperty('medicationStatements');
    expect(Object.keys(alone).length).toBeLessThan(Object.keys(derivePrefetchTemplates(withIncludes([elmOf('OpioidBenzodiazepine')], allElm))).length);
  });

  it('has exactly one Patient template however many libraries retrieve the patient', () => {
    const templates = derivePrefetchTemplates(allElm);
    const patientReads = Object.values(templates).filter((t) => t.startsWith('Patient'));
    expect(patientReads).toEqual([`Patient/${P}`]);
    expect(Object.keys(templates)).toEqual([...Object.keys(templates)].sort());
    expect(templates).toMatchObject({
      allergyIntolerances: `AllergyIntolerance?patient=${P}`,
      conditions: `Condition?patient=${P}`,
      diagnosticReports: `DiagnosticReport?patient=${P}`,
      observations: `Observation?patient=${P}`,
      procedures: `Procedure?patient=${P}`,
    });
  });

  it('uses only the recommended query subset: a Patient read or a search by patient reference (and code:in)', () => {
    for (const valueSetFilters of [false, true]) {
      for (const [key, template] of Object.entries(derivePrefetchTemplates(allElm, { valueSetFilters }))) {
        if (key === 'patient') continue;
        const [type, query] = template.split('?');
        const param = PATIENT_SEARCH_PARAM[type ?? ''];
        expect(param, template).toBeDefined();
        const params = new URLSearchParams(query).keys();
        for (const name of params) expect([param, 'code:in'], template).toContain(name);
        expect(key).toBe(templateKey(type ?? ''));
      }
    }
  });

  it('narrows by value set only when asked and when every retrieve of the type is value-set filtered', () => {
    const hba1c = withIncludes([elmOf('Hba1cPoorControl')], allElm);
    expect(derivePrefetchTemplates(hba1c).observations).toBe(`Observation?patient=${P}`);
    expect(derivePrefetchTemplates(hba1c, { valueSetFilters: true }).observations).toMatch(new RegExp(`^Observation\\?patient=\\{\\{context.patientId\\}\\}&code:in=http://[^,&]+$`));
  });

  it('is deterministic: input order and duplicates do not change the output', () => {
    const expected = JSON.stringify(derivePrefetchPlan(allElm, { valueSetFilters: true }));
    fc.assert(
      fc.property(fc.shuffledSubarray(allElm, { minLength: allElm.length, maxLength: allElm.length }), fc.array(fc.nat({ max: allElm.length - 1 }), { maxLength: 4 }), (docs, dupes) => {
        const input = [...docs, ...dupes.map((i) => allElm[i])];
        expect(JSON.stringify(derivePrefetchPlan(input, { valueSetFilters: true }))).toBe(expected);
      }),
      { numRuns: 25 },
    );
  });
});

describe('derivePrefetchPlan over retrieves of every shape (test/fixtures/cds-hooks-prefetch)', () => {
  it('uses subject= where R4 has no patient search parameter, and lists what cannot be prefetched', () => {
    const plan = derivePrefetchPlan(shapes);
    expect(plan.templates).toEqual({
      adverseEvents: `AdverseEvent?subject=${P}`,
      allergyIntolerances: `AllergyIntolerance?patient=${P}`,
      conditions: `Condition?patient=${P}`,
      encounters: `Encounter?patient=${P}`,
      observations: `Observation?patient=${P}`,
      patient: `Patient/${P}`,
    });
    expect(plan.notPrefetchable.map((n) => n.dataType)).toEqual(['{http://hl7.org/fhir}Medication', '{http://hl7.org/fhir}Practitioner']);
  });

  it('resolves value sets of included libraries, and keeps a type unfiltered when one retrieve of it is', () => {
    const templates = derivePrefetchTemplates(shapes, { valueSetFilters: true });
    expect(templates.conditions).toBe(`Condition?patient=${P}&code:in=http://example.org/fhir/ValueSet/diabetes,http://example.org/fhir/ValueSet/hypertension`);
    expect(templates.allergyIntolerances).toBe(`AllergyIntolerance?patient=${P}&code:in=http://example.org/fhir/ValueSet/diabetes`);
    expect(templates.observations).toBe(`Observation?patient=${P}`);
  });

  it('ignores what is not ELM', () => {
    expect(derivePrefetchTemplates([null, 42, 'x', {}, { library: {} }, [{ type: 'Retrieve', dataType: '{http://hl7.org/fhir}Condition' }]])).toEqual({});
  });
});

describe('templateKey', () => {
  it.each([
    ['Patient', 'patient'],
    ['Observation', 'observations'],
    ['MedicationRequest', 'medicationRequests'],
    ['FamilyMemberHistory', 'familyMemberHistories'],
    ['ImagingStudy', 'imagingStudies'],
    ['AdverseEvent', 'adverseEvents'],
  ])('%s -> %s', (type, key) => expect(templateKey(type)).toBe(key));
});
