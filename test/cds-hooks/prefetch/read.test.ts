import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { classifyFhirJson, normalizePatientId, prefetchTokenValues, readPrefetch, resolvePrefetchTemplates } from '../../../src/cds-hooks/prefetch/index.ts';
import { HAS_SHARED, SHARED_FIXTURES, SHARED_MISSING, readJson } from '../../support/knowledge.ts';

const CDS = path.join(SHARED_FIXTURES, 'cds-hooks');
type Json = Record<string, unknown>;

/** Templates the AHRQ CQL Services fixtures were written against (keys named after resource types). */
const AHRQ_TEMPLATES = {
  Patient: 'Patient/{{context.patientId}}',
  Observation: 'Observation?patient={{context.patientId}}',
  Condition: 'Condition?patient={{context.patientId}}',
};

describe('resolvePrefetchTemplates', () => {
  const templates = {
    patient: 'Patient/{{context.patientId}}',
    encounter: 'Encounter/{{context.encounterId}}',
    practitioner: 'Practitioner/{{userPractitionerId}}',
    role: 'PractitionerRole?_id={{userPractitionerRoleId}}',
    user: '{{context.userId}}',
    meds: 'Medication?_id={{context.draftOrders.entry.resource.ofType(MedicationRequest).medication.resolve().id}}',
    recent: 'Observation?patient={{context.patientId}}&date=gt{{today() - 90 days}}',
  };

  it.each([
    {
      name: 'bare ids and a Practitioner user',
      context: { patientId: '123', encounterId: '456', userId: 'Practitioner/abc' },
      queries: { encounter: 'Encounter/456', patient: 'Patient/123', practitioner: 'Practitioner/abc', user: 'Practitioner/abc' },
      unresolved: ['meds', 'recent', 'role'],
    },
    {
      name: 'Patient/ and Encounter/ prefixes (as opioid-cds-r4 sends them) and a PractitionerRole user',
      context: { patientId: 'Patient/123', encounterId: 'Encounter/456', userId: 'PractitionerRole/r1' },
      queries: { encounter: 'Encounter/456', patient: 'Patient/123', role: 'PractitionerRole?_id=r1', user: 'PractitionerRole/r1' },
      unresolved: ['meds', 'practitioner', 'recent'],
    },
    {
      name: 'no context values at all',
      context: {},
      queries: {},
      unresolved: ['encounter', 'meds', 'patient', 'practitioner', 'recent', 'role', 'user'],
    },
    {
      name: 'values that would change the query are encoded',
      context: { patientId: '1&_include=*', userId: 'Patient/p 1' },
      queries: { patient: 'Patient/1%26_include%3D*', user: 'Patient%2Fp%201' },
      unresolved: ['encounter', 'meds', 'practitioner', 'recent', 'role'],
    },
  ])('$name', ({ context, queries, unresolved }) => {
    const resolved = resolvePrefetchTemplates(templates, context);
    expect(resolved.queries).toEqual(queries);
    expect(resolved.unresolved.map((u) => u.key)).toEqual(unresolved);
  });

  it('names the tokens that failed', () => {
    const { unresolved } = resolvePrefetchTemplates({ recent: templates.recent }, { patientId: '1' });
    expect(unresolved).toEqual([{ key: 'recent', template: templates.recent, tokens: ['{{today() - 90 days}}'] }]);
  });

  it('keeps any patientId inside its query parameter or path segment', () => {
    const templates = { patient: 'Patient/{{context.patientId}}', obs: 'Observation?patient={{context.patientId}}&_count=5' };
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), (patientId) => {
        const { queries } = resolvePrefetchTemplates(templates, { patientId });
        const id = normalizePatientId(patientId);
        if (!id) return;
        const search = new URLSearchParams((queries.obs ?? '').split('?')[1]);
        expect([...search.keys()]).toEqual(['patient', '_count']);
        expect(search.get('patient')).toBe(id);
        expect(queries.patient).toBe(`Patient/${encodeURIComponent(id)}`);
      }),
      { numRuns: 300 },
    );
  });

  it('derives the user tokens from userId', () => {
    expect(prefetchTokenValues({ userId: 'Patient/p1' })).toMatchObject({ userPatientId: 'p1' });
    expect(prefetchTokenValues({ userId: 'RelatedPerson/rp' })).toMatchObject({ userRelatedPersonId: 'rp' });
    expect(prefetchTokenValues({ userId: 'Device/d' })).toEqual({ 'context.userId': 'Device/d' });
  });

  it.skipIf(!HAS_SHARED)(`resolves the spec example templates with the spec and hook-library contexts (${SHARED_MISSING})`, async () => {
    const { prefetch } = await readJson<{ prefetch: Record<string, string> }>(path.join(CDS, 'spec-examples/06-example-prefetch-templates.json'));
    const { context } = await readJson<{ context: Json }>(path.join(CDS, 'spec-examples/03-example-prefetch-token.json'));
    const resolved = resolvePrefetchTemplates(prefetch, context);
    expect(resolved.queries).toEqual({
      'diabetes-type2': 'Condition?patient=123&code=44054006&category=problem-list-item&status=active',
      'hemoglobin-a1c': 'Observation?patient=123&code=4548-4&_count=1&sort:desc=date',
      patient: 'Patient/123',
    });
    expect(resolved.unresolved.map((u) => u.key)).toEqual(['user']);

    const orderSign = await readJson<{ context: Json }>(path.join(CDS, 'hook-examples/order-sign--01-example-r4.json'));
    const withUser = resolvePrefetchTemplates(prefetch, orderSign.context);
    expect(withUser.queries.user).toBe('PractitionerRole?_id=123');
    expect(withUser.queries.patient).toBe('Patient/1288992');
  });
});

describe('readPrefetch', () => {
  it('reads a resource, a searchset, a null and an absent key as the spec means them', () => {
    const reading = readPrefetch(
      { patient: 'Patient/{{context.patientId}}', labs: 'Observation?patient={{context.patientId}}', conditions: 'Condition?patient={{context.patientId}}', meds: 'MedicationRequest?patient={{context.patientId}}' },
      {
        patient: { resourceType: 'Patient', id: 'p1' },
        labs: { resourceType: 'Bundle', type: 'searchset', entry: [{ resource: { resourceType: 'Observation', id: 'o1' } }, { resource: { resourceType: 'OperationOutcome', issue: [{ severity: 'warning', code: 'informational' }] } }, {}] },
        conditions: null,
      },
      { patientId: 'Patient/p1' },
    );
    expect(reading.satisfied).toEqual(['conditions', 'labs', 'patient']);
    expect(reading.byKey).toEqual({ conditions: [], labs: [{ resourceType: 'Observation', id: 'o1' }], patient: [{ resourceType: 'Patient', id: 'p1' }] });
    expect(reading.missing).toEqual([{ key: 'meds', template: 'MedicationRequest?patient={{context.patientId}}', reason: 'absent' }]);
    expect(reading.pending).toEqual([]);
    expect(reading.warnings).toEqual([]);
  });

  it('treats an OperationOutcome, alone or as an error entry of a Bundle, as missing', () => {
    const outcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'timeout', diagnostics: 'upstream timed out' }] };
    const reading = readPrefetch({ a: 'Observation?patient=1', b: 'Condition?patient=1' }, { a: outcome, b: { resourceType: 'Bundle', entry: [{ resource: outcome }] } });
    expect(reading.satisfied).toEqual([]);
    expect(reading.missing).toEqual([
      { key: 'a', template: 'Observation?patient=1', reason: 'operation-outcome', detail: 'OperationOutcome: error timeout upstream timed out' },
      { key: 'b', template: 'Condition?patient=1', reason: 'operation-outcome', detail: 'OperationOutcome: error timeout upstream timed out' },
    ]);
  });

  it('lists searchsets with a next link as pending, and ignores keys it did not ask for', () => {
    const reading = readPrefetch(
      { meds: 'MedicationRequest?patient=1' },
      { meds: { resourceType: 'Bundle', type: 'searchset', link: [{ relation: 'self', url: 'x' }, { relation: 'next', url: 'https://ehr.example.org/fhir/MedicationRequest?patient=1&_page=2' }], entry: [] }, other: { resourceType: 'Patient', id: '2' } },
    );
    expect(reading.pending).toEqual([{ key: 'meds', url: 'https://ehr.example.org/fhir/MedicationRequest?patient=1&_page=2' }]);
    expect(reading.warnings).toEqual(['prefetch key "other" is not one of this service\'s templates; ignored']);
  });

  it.each([
    { name: 'the context patient', value: { resourceType: 'Patient', id: 'p1' }, satisfied: ['patient'] },
    { name: 'a Patient without an id', value: { resourceType: 'Patient', gender: 'female' }, satisfied: ['patient'] },
    { name: 'another patient', value: { resourceType: 'Patient', id: 'p2' }, satisfied: [], detail: 'holds Patient/p2, not the context patient p1' },
    { name: 'a searchset with the context patient and another', value: { resourceType: 'Bundle', entry: [{ resource: { resourceType: 'Patient', id: 'p1' } }, { resource: { resourceType: 'Patient', id: 'p2' } }] }, satisfied: [], detail: 'holds Patient/p2, not the context patient p1' },
  ])('a prefetched Patient: $name', ({ value, satisfied, detail }) => {
    const template = 'Patient/{{context.patientId}}';
    const reading = readPrefetch({ patient: template }, { patient: value }, { patientId: 'Patient/p1' });
    expect(reading.satisfied).toEqual(satisfied);
    expect(reading.missing).toEqual(detail ? [{ key: 'patient', template, reason: 'other-patient', detail }] : []);
    expect(reading.resources).toEqual(detail ? [] : [value]);
  });

  it('does not page through the searchset of another patient', () => {
    const value = { resourceType: 'Bundle', link: [{ relation: 'next', url: 'https://ehr.example.org/fhir/Patient?page=2' }], entry: [{ resource: { resourceType: 'Patient', id: 'p2' } }] };
    const reading = readPrefetch({ patient: 'Patient?_id={{context.patientId}}' }, { patient: value }, { patientId: 'p1' });
    expect(reading.pending).toEqual([]);
    expect(reading.missing.map((m) => m.reason)).toEqual(['other-patient']);
  });

  it.each([
    { name: 'a string', value: '123', kind: 'invalid' },
    { name: 'an object without resourceType', value: { id: '1' }, kind: 'invalid' },
    { name: 'an array of resources', value: [{ resourceType: 'Observation', id: '1' }], kind: 'resources' },
    { name: 'a mixed array', value: [{ resourceType: 'Observation' }, 3], kind: 'invalid' },
    { name: 'the pre-1.0 wrapper', value: { response: { status: '200 OK' }, resource: { resourceType: 'Patient', id: '1' } }, kind: 'resources' },
    { name: 'the pre-1.0 wrapper of a failure', value: { response: { status: '404 Not Found' }, resource: null }, kind: 'outcome' },
    { name: 'null', value: null, kind: 'empty' },
  ])('classifies $name as $kind', ({ value, kind }) => {
    expect(classifyFhirJson(value).kind).toBe(kind);
  });

  it.skipIf(!HAS_SHARED)(`AHRQ missing_prefetch_keys: the absent Condition key is missing (${SHARED_MISSING})`, async () => {
    const request = await readJson<Json>(path.join(CDS, 'ahrq-cql-services/fixtures/hooks-patients/R4/missing_prefetch_keys_invocation.json'));
    const reading = readPrefetch(AHRQ_TEMPLATES, request.prefetch);
    expect(reading.satisfied).toEqual(['Observation', 'Patient']);
    expect(reading.missing).toEqual([{ key: 'Condition', template: AHRQ_TEMPLATES.Condition, reason: 'absent' }]);
    expect(reading.resources.map((r) => `${r.resourceType}/${r.id}`)).toEqual(['Observation/2', 'Patient/1']);
    expect(reading.warnings).toEqual([]);
    // The fixture's data (Patient 1, an Observation of Patient/1) is not its context patient's (1288992): neither key is satisfied.
    const checked = readPrefetch(AHRQ_TEMPLATES, request.prefetch, { patientId: (request.context as Json).patientId as string });
    expect(checked.satisfied).toEqual([]);
    expect(checked.missing).toEqual([
      { key: 'Condition', template: AHRQ_TEMPLATES.Condition, reason: 'absent' },
      { key: 'Observation', template: AHRQ_TEMPLATES.Observation, reason: 'other-patient', detail: 'holds Observation/2 whose subject is not the context patient 1288992' },
      { key: 'Patient', template: AHRQ_TEMPLATES.Patient, reason: 'other-patient', detail: 'holds Patient/1, not the context patient 1288992' },
    ]);
  });

  it.skipIf(!HAS_SHARED)(`AHRQ null_prefetch_values: null keys are satisfied with nothing (${SHARED_MISSING})`, async () => {
    const request = await readJson<Json>(path.join(CDS, 'ahrq-cql-services/fixtures/hooks-patients/R4/null_prefetch_values_invocation.json'));
    const reading = readPrefetch(AHRQ_TEMPLATES, request.prefetch);
    expect(reading.satisfied).toEqual(['Condition', 'Observation', 'Patient']);
    expect(reading.missing).toEqual([]);
    expect(reading.byKey).toMatchObject({ Condition: [], Observation: [] });
  });

  it.skipIf(!HAS_SHARED)(`opioid-cds-r4: single resources for searches, pre-1.0 wrappers, Patient/ ids (${SHARED_MISSING})`, async () => {
    const request = await readJson<{ context: Json; prefetch: Json }>(path.join(CDS, 'opioid-cds-r4/requests/OpioidCDSREC11PatientView/request-example-rec-11-patient-view-benzo-trigger-with-opioid.json'));
    const templates = { item1: 'Patient?_id={{context.patientId}}', item2: 'MedicationRequest?patient={{context.patientId}}', item3: 'MedicationRequest?patient={{context.patientId}}&status=active' };
    const reading = readPrefetch(templates, request.prefetch, { patientId: request.context.patientId as string });
    expect(reading.satisfied).toEqual(['item1', 'item2', 'item3']);
    expect(reading.resources.map((r) => r.resourceType)).toEqual(['Patient', 'MedicationRequest', 'MedicationRequest']);
    expect(reading.warnings).toEqual([]);
    expect(resolvePrefetchTemplates(templates, request.context).queries.item1).toBe('Patient?_id=example-rec-11-benzo-trigger-with-opioid');
  });

  it('never throws on arbitrary JSON, and accounts for every template key exactly once', () => {
    const templates = { a: 'Patient/{{context.patientId}}', b: 'Observation?patient={{context.patientId}}', c: '{{context.userId}}' };
    const value = fc.oneof(
      fc.jsonValue(),
      fc.record({ resourceType: fc.constantFrom('Bundle', 'OperationOutcome', 'Patient'), entry: fc.jsonValue(), link: fc.jsonValue(), issue: fc.jsonValue() }, { requiredKeys: ['resourceType'] }),
    );
    const prefetch = fc.oneof(fc.jsonValue(), fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd', '__proto__', 'constructor'), value));
    fc.assert(
      fc.property(prefetch, fc.jsonValue(), (p, context) => {
        const reading = readPrefetch(templates, p);
        const keys = [...reading.satisfied, ...reading.missing.map((m) => m.key)].sort();
        expect(keys).toEqual(['a', 'b', 'c']);
        resolvePrefetchTemplates(templates, context);
      }),
      { numRuns: 500 },
    );
  });
});
