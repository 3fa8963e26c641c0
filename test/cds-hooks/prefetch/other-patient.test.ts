/**
 * Another patient's resources are never evaluated as the context patient's: a resource whose patient
 * reference (Observation.subject, AllergyIntolerance.patient, Coverage.beneficiary...) names another
 * patient makes its prefetch key or FHIR-server answer unusable, and the call a 412 naming it, on the
 * worker fast path (which falls back) and the full path alike; a hook-context Bundle (draftOrders)
 * holding one makes the request contradict itself: a 400 naming the field.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assemblePatientData, shortfallOf } from '../../../src/cds-hooks/prefetch/assemble.ts';
import { readPrefetch } from '../../../src/cds-hooks/prefetch/read.ts';
import { evaluateFromPrefetch } from '../../../src/cds-hooks/prefetch-evaluation.ts';
import { describeServices, type CdsService } from '../../../src/cds-hooks/services.ts';
import type { FhirResource } from '../../../src/cql-engine/fhir-model.ts';
import { parseHookContext } from '../../../src/domain/hook-context.ts';
import { PROJECT_ROOT } from '../../support/knowledge.ts';
import { EHR_TOKEN, startEhrServer, type EhrServer } from '../live.ts';
import { hookRequestFromCase, startService, type TestService } from '../support.ts';

const P = '{{context.patientId}}';
const AT = '2026-03-01T12:00:00.000Z';
const auth = { access_token: EHR_TOKEN };
const ids = (resources: readonly FhirResource[]): string[] => resources.map((r) => `${r.resourceType}/${r.id}`).sort();
const observation = (id: string, subject?: unknown): FhirResource => ({ resourceType: 'Observation', id, status: 'final', ...(subject === undefined ? {} : { subject }) });
const searchset = (...resources: unknown[]): Record<string, unknown> => ({ resourceType: 'Bundle', type: 'searchset', entry: resources.map((resource) => ({ resource })) });
const draftOrders = (...resources: unknown[]): Record<string, unknown> => ({ resourceType: 'Bundle', type: 'collection', entry: resources.map((resource) => ({ resource })) });
const draft = (subject: string): FhirResource => ({ resourceType: 'MedicationRequest', id: 'draft-9', status: 'draft', intent: 'order', subject: { reference: subject }, medicationCodeableConcept: { text: 'oxycodone' } });

describe('a prefetched resource is checked against the context patient', () => {
  const whose = (element: string): string => `whose ${element} is not the context patient p1`;
  it.each([
    { name: 'an Observation of the context patient', resource: observation('o1', { reference: 'Patient/p1' }) },
    { name: 'an absolute reference to the context patient', resource: observation('o1', { reference: 'https://ehr.example.org/fhir/R4/Patient/p1' }) },
    { name: 'a versioned reference to the context patient', resource: observation('o1', { reference: 'Patient/p1/_history/3' }) },
    { name: 'an absolute versioned reference to the context patient', resource: observation('o1', { reference: 'https://ehr.example.org/fhir/Patient/p1/_history/3' }) },
    { name: 'no subject', resource: observation('o1') },
    { name: 'a subject by identifier only', resource: observation('o1', { identifier: { system: 'urn:mrn', value: '42' } }) },
    { name: 'a Group subject', resource: observation('o1', { reference: 'Group/g1' }) },
    { name: 'a contained subject', resource: observation('o1', { reference: '#p' }) },
    { name: 'a subject that is a bare string naming the context patient', resource: observation('o1', 'Patient/p1') },
    { name: 'a trailing slash after the context patient', resource: observation('o1', { reference: 'Patient/p1/' }) },
    { name: "a subject that is a bare string naming another patient", resource: observation('o9', 'Patient/p2'), detail: `holds Observation/o9 ${whose('subject')}` },
    { name: 'another patient with a trailing slash', resource: observation('o9', { reference: 'Patient/p2/' }), detail: `holds Observation/o9 ${whose('subject')}` },
    { name: 'another patient, absolutely, with a trailing slash', resource: observation('o9', { reference: 'http://other.example/fhir/Patient/p2/' }), detail: `holds Observation/o9 ${whose('subject')}` },
    { name: 'another patient after a space', resource: observation('o9', { reference: ' Patient/p2' }), detail: `holds Observation/o9 ${whose('subject')}` },
    { name: 'another patient after a doubled slash', resource: observation('o9', { reference: 'Patient//p2' }), detail: `holds Observation/o9 ${whose('subject')}` },
    { name: 'another patient, the type in lower case', resource: observation('o9', { reference: 'patient/p2' }), detail: `holds Observation/o9 ${whose('subject')}` },
    { name: 'a Medication (no patient)', resource: { resourceType: 'Medication', id: 'm1', subject: { reference: 'Patient/p2' } } },
    { name: "a Coverage whose subscriber is someone else (the beneficiary is who it covers)", resource: { resourceType: 'Coverage', id: 'cv1', beneficiary: { reference: 'Patient/p1' }, subscriber: { reference: 'Patient/p2' } } },
    { name: 'an Appointment with several participants', resource: { resourceType: 'Appointment', id: 'ap1', participant: [{ actor: { reference: 'Patient/p2' } }] } },
    { name: "another patient's Observation", resource: observation('o9', { reference: 'Patient/p2' }), detail: `holds Observation/o9 ${whose('subject')}` },
    { name: "another patient's Observation, absolutely", resource: observation('o9', { reference: 'https://ehr.example.org/fhir/Patient/p2' }), detail: `holds Observation/o9 ${whose('subject')}` },
    { name: "another patient's Observation, versioned", resource: observation('o9', { reference: 'Patient/p2/_history/1' }), detail: `holds Observation/o9 ${whose('subject')}` },
    { name: 'an id that only starts like the context patient', resource: observation('o9', { reference: 'Patient/p10' }), detail: `holds Observation/o9 ${whose('subject')}` },
    { name: "another patient's Observation without an id", resource: { resourceType: 'Observation', subject: { reference: 'Patient/p2' } }, detail: `holds an Observation without an id ${whose('subject')}` },
    { name: "another patient's AllergyIntolerance", resource: { resourceType: 'AllergyIntolerance', id: 'a1', patient: { reference: 'Patient/p2' } }, detail: `holds AllergyIntolerance/a1 ${whose('patient')}` },
    { name: "another patient's Immunization", resource: { resourceType: 'Immunization', id: 'i1', patient: { reference: 'Patient/p2' } }, detail: `holds Immunization/i1 ${whose('patient')}` },
    { name: "another patient's Coverage", resource: { resourceType: 'Coverage', id: 'cv1', beneficiary: { reference: 'Patient/p2' } }, detail: `holds Coverage/cv1 ${whose('beneficiary')}` },
    { name: "another patient's Encounter", resource: { resourceType: 'Encounter', id: 'e1', subject: { reference: 'Patient/p2' } }, detail: `holds Encounter/e1 ${whose('subject')}` },
    { name: "another patient's Task", resource: { resourceType: 'Task', id: 't1', for: { reference: 'Patient/p2' } }, detail: `holds Task/t1 ${whose('for')}` },
  ])('$name', ({ resource, detail }) => {
    const template = `${resource.resourceType}?patient=${P}`;
    // The context patient given as `Patient/p1`, as some clients send it.
    for (const patientId of ['p1', 'Patient/p1']) {
      const reading = readPrefetch({ key: template }, { key: searchset(resource) }, { patientId });
      expect(reading.missing).toEqual(detail ? [{ key: 'key', template, reason: 'other-patient', detail }] : []);
      expect(reading.resources).toEqual(detail ? [] : [resource]);
    }
  });

  it('does not page through a searchset that holds another patient', () => {
    const value = { ...searchset(observation('o9', { reference: 'Patient/p2' })), link: [{ relation: 'next', url: 'https://ehr.example.org/fhir/Observation?patient=p1&page=2' }] };
    const reading = readPrefetch({ observations: `Observation?patient=${P}` }, { observations: value }, { patientId: 'p1' });
    expect(reading.pending).toEqual([]);
    expect(reading.missing.map((m) => m.reason)).toEqual(['other-patient']);
  });
});

describe('assemblePatientData with another patient in the data', () => {
  const templates = { patient: `Patient/${P}`, observations: `Observation?patient=${P}` };
  let ehr: EhrServer;

  beforeAll(async () => {
    ehr = await startEhrServer({
      pageSize: 1,
      patients: {
        // A misbehaving server: p1's search also answers with p2's result on its second page.
        p1: [{ resourceType: 'Patient', id: 'p1' }, observation('o1', { reference: 'Patient/p1' }), observation('o-p2', { reference: 'Patient/p2' })],
        p3: [{ resourceType: 'Patient', id: 'p3' }, observation('o3', { reference: `http://127.0.0.1/fhir/Patient/p3` })],
      },
    });
  });

  afterAll(async () => {
    await ehr.close();
  });

  it('gives 412 naming the prefetch key that holds another patient, without a FHIR server', async () => {
    const prefetch = { patient: { resourceType: 'Patient', id: 'p1' }, observations: searchset(observation('o1', { reference: 'Patient/p1' }), observation('o-p2', { reference: 'Patient/p2' })) };
    const result = await assemblePatientData({ templates, context: { patientId: 'p1' }, prefetch });
    expect(ids(result.resources)).toEqual(['Patient/p1']);
    expect(shortfallOf(result, templates)).toEqual({
      missing: [{ key: 'observations', template: templates.observations, reason: 'other-patient' }],
      unresolved: [],
      detail: 'prefetch "observations" (Observation?patient={{context.patientId}}) not obtained: holds Observation/o-p2 whose subject is not the context patient p1',
    });
  });

  it("does not believe a FHIR server's answer that holds another patient's resource, on any page", async () => {
    const result = await assemblePatientData({ templates, context: { patientId: 'p1' }, fhirServer: ehr.base, fhirAuthorization: auth });
    expect(result.satisfiedBy).toEqual({ patient: 'fhir' });
    expect(result.missing).toEqual([{ key: 'observations', template: templates.observations, reason: 'other-patient', detail: "the fhirServer's answer holds Observation/o-p2 whose subject is not the context patient p1" }]);
    expect(ids(result.resources)).toEqual(['Patient/p1']);
    expect(shortfallOf(result, templates)?.missing).toEqual([{ key: 'observations', template: templates.observations, reason: 'other-patient' }]);
  });

  it("reports a prefetched searchset partial when its next page on the FHIR server holds another patient", async () => {
    const first = { ...searchset(observation('o1', { reference: 'Patient/p1' })), link: [{ relation: 'next', url: `${ehr.base}/Observation?patient=p1&page=2` }] };
    const result = await assemblePatientData({ templates, context: { patientId: 'p1' }, prefetch: { patient: { resourceType: 'Patient', id: 'p1' }, observations: first }, fhirServer: ehr.base, fhirAuthorization: auth });
    expect(result.incomplete).toEqual([{ key: 'observations', url: '', reason: 'a next page holds Observation/o-p2 whose subject is not the context patient p1' }]);
    expect(shortfallOf(result, templates)?.missing).toEqual([{ key: 'observations', template: templates.observations, reason: 'incomplete' }]);
  });

  it("takes the key from the FHIR server when the prefetch held another patient's resource, as for a prefetched Patient", async () => {
    const prefetch = { patient: { resourceType: 'Patient', id: 'p3' }, observations: searchset(observation('o-p2', { reference: 'Patient/p2' })) };
    const result = await assemblePatientData({ templates, context: { patientId: 'p3' }, prefetch, fhirServer: ehr.base, fhirAuthorization: auth });
    expect(result.satisfiedBy).toEqual({ observations: 'fhir', patient: 'prefetch' });
    // The server's absolute reference names the same patient.
    expect(ids(result.resources)).toEqual(['Observation/o3', 'Patient/p3']);
    expect(shortfallOf(result, templates)).toBeUndefined();
  });

  it('refuses a context whose draft order is for another patient, naming context.draftOrders', () => {
    const context = (subject: string, patientId = 'p1') => ({ userId: 'Practitioner/u1', patientId, draftOrders: draftOrders(draft(subject)) });
    expect(parseHookContext('order-sign', context('Patient/p2'))).toEqual({
      ok: false,
      issues: [{ field: 'context.draftOrders', message: 'holds MedicationRequest/draft-9 whose subject is not the context patient p1: a call is about the context patient only' }],
    });
    for (const subject of ['Patient/p1', 'https://ehr.example.org/fhir/Patient/p1']) expect(parseHookContext('order-sign', context(subject, 'Patient/p1')).ok, subject).toBe(true);
  });
});

describe('a service call with another patient in its data', () => {
  let service: TestService;
  let services: CdsService[];

  beforeAll(async () => {
    service = await startService();
    services = describeServices(service.knowledge.current);
  }, 120_000);

  afterAll(async () => {
    await service.close();
  });

  async function caseRequest(rule: string, name: string, serviceId: string): Promise<{ body: Record<string, unknown>; target: CdsService; summary?: string }> {
    const testCase = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'rules', `${rule}.tests`, `${name}.json`), 'utf8')) as Parameters<typeof hookRequestFromCase>[0] & { expect?: { card?: { summary?: string } } };
    const target = services.find((s) => s.id === serviceId)!;
    return { body: hookRequestFromCase(testCase, target.prefetch), target, ...(testCase.expect?.card?.summary ? { summary: testCase.expect.card.summary } : {}) };
  }

  async function call(target: CdsService, body: Record<string, unknown>) {
    const url = `/cds-services/${target.id}`;
    const text = JSON.stringify(body);
    const fast = await evaluateFromPrefetch(service.knowledge.current, target, text, AT);
    const response = await service.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', authorization: `Bearer ${await service.token(url)}` }, payload: text });
    return { fast: fast.kind, status: response.statusCode, json: response.json() as { cards?: { summary: string }[]; missing?: unknown[]; detail?: string; issues?: unknown[] } };
  }

  /** The case's HbA1c Observations with `subject` replaced. */
  function withSubject(body: Record<string, unknown>, reference: string): Record<string, unknown> {
    const prefetch = body.prefetch as Record<string, { entry?: { resource: Record<string, unknown> }[] }>;
    const key = Object.keys(prefetch).find((k) => prefetch[k]?.entry?.some((e) => e.resource.resourceType === 'Observation'))!;
    const entry = prefetch[key]!.entry!.map((e) => ({ resource: { ...e.resource, subject: { reference } } }));
    return { ...body, prefetch: { ...prefetch, [key]: { ...prefetch[key], entry } } };
  }

  it("answers 412 naming the key rather than firing p1's HbA1c card on p2's result, on both paths", async () => {
    const { body, target, summary } = await caseRequest('hba1c-above-9', 'hba1c-10-2', 'hba1c-above-9-patient-view');
    const fires = await call(target, body);
    expect(summary).toBeDefined();
    expect([fires.fast, fires.status, fires.json.cards?.map((c) => c.summary)]).toEqual(['evaluated', 200, [summary]]);
    const key = Object.keys(target.prefetch).find((k) => target.prefetch[k]!.startsWith('Observation?'))!;
    const other = await call(target, withSubject(body, 'Patient/p2'));
    expect(other.fast).toBe('fallback');
    expect(other.status).toBe(412);
    expect(other.json.missing).toEqual([{ key, template: target.prefetch[key], reason: 'other-patient' }]);
    expect(other.json.detail).toContain('holds Observation/a1c-1 whose subject is not the context patient p1');
  });

  it('evaluates an absolute reference to the context patient as its own', async () => {
    const { body, target } = await caseRequest('hba1c-above-9', 'hba1c-10-2', 'hba1c-above-9-patient-view');
    const absolute = await call(target, withSubject(body, 'https://ehr.example.org/fhir/Patient/p1'));
    expect([absolute.fast, absolute.status, absolute.json.cards?.length]).toEqual(['evaluated', 200, 1]);
  });

  it('answers 400 naming context.draftOrders for a draft order of another patient, on both paths', async () => {
    const { body, target } = await caseRequest('opioid-benzodiazepine-concurrent', 'order-sign-fires', 'medication-safety-order-sign');
    expect((await call(target, body)).status).toBe(200);
    const context = body.context as { draftOrders: { entry: { resource: Record<string, unknown> }[] } };
    const entry = context.draftOrders.entry.map((e) => ({ resource: { ...e.resource, subject: { reference: 'Patient/p2' } } }));
    const other = await call(target, { ...body, context: { ...context, draftOrders: { ...context.draftOrders, entry } } });
    expect([other.fast, other.status]).toEqual(['invalid', 400]);
    expect(other.json.issues).toEqual([{ field: 'context.draftOrders', message: 'holds MedicationRequest/draft-1 whose subject is not the context patient p1: a call is about the context patient only' }]);
  });
});
