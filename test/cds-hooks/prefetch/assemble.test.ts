import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assemblePatientData, type LocalSource } from '../../../src/cds-hooks/prefetch/index.ts';
import type { FhirResource } from '../../../src/cql-engine/fhir-model.ts';
import { startFhirServer, startOtherHost, TOKEN, type TestServer } from './fhir-server.ts';

const P = '{{context.patientId}}';
const auth = { access_token: TOKEN, token_type: 'Bearer', expires_in: 300, scope: 'patient/*.read', subject: 'cairn' };
const context = { patientId: 'p1', userId: 'Practitioner/u1' };
const ids = (resources: readonly FhirResource[]): string[] => resources.map((r) => `${r.resourceType}/${r.id}`).sort();

let fhir: TestServer;
let other: TestServer;

beforeAll(async () => {
  other = await startOtherHost();
  fhir = await startFhirServer({ otherHost: other.origin });
});

afterAll(async () => {
  await fhir.close();
  await other.close();
});

describe('assemblePatientData with a real FHIR server', () => {
  it('fetches what the prefetch lacks with the bearer token, following next links, and lets draft orders win', async () => {
    const before = fhir.requests.length;
    const draft = { resourceType: 'MedicationRequest', id: 'mr1', status: 'draft', intent: 'order', subject: { reference: 'Patient/p1' } };
    const result = await assemblePatientData({
      templates: { patient: `Patient/${P}`, medicationRequests: `MedicationRequest?patient=${P}`, medicationStatements: `MedicationStatement?patient=${P}` },
      context: { ...context, draftOrders: { resourceType: 'Bundle', entry: [{ resource: draft }] } },
      prefetch: { patient: { resourceType: 'Patient', id: 'p1' } },
      fhirServer: fhir.base,
      fhirAuthorization: auth,
    });
    expect(result.missing).toEqual([]);
    expect(result.incomplete).toEqual([]);
    expect(result.satisfiedBy).toEqual({ medicationRequests: 'fhir', medicationStatements: 'fhir', patient: 'prefetch' });
    expect(ids(result.resources)).toEqual(['MedicationRequest/mr1', 'MedicationRequest/mr2', 'MedicationRequest/mr3', 'Patient/p1']);
    expect(result.resources.find((r) => r.id === 'mr1')).toEqual(draft);
    const made = fhir.requests.slice(before);
    expect(made.map((r) => r.path).sort()).toEqual(['/fhir/MedicationRequest?patient=p1', '/fhir/MedicationRequest?patient=p1&page=2', '/fhir/MedicationRequest?patient=p1&page=3', '/fhir/MedicationStatement?patient=p1']);
    for (const request of made) {
      expect(request.authorization).toBe(`Bearer ${TOKEN}`);
      expect(request.accept).toBe('application/fhir+json');
    }
    expect(result.fetched).toHaveLength(4);
    expect(result.fetched.every((f) => f.status === 200 && f.ms >= 0)).toBe(true);
  });

  it('stops at the time budget without waiting for a slow search, keeping what arrived in time', async () => {
    const started = performance.now();
    const result = await assemblePatientData({
      templates: { patient: `Patient/${P}`, observations: `Observation?patient=${P}` },
      context,
      fhirServer: fhir.base,
      fhirAuthorization: auth,
      budgetMs: 300,
    });
    const elapsed = performance.now() - started;
    expect(elapsed).toBeLessThan(1500);
    expect(result.satisfiedBy).toEqual({ patient: 'fhir' });
    expect(result.missing).toEqual([{ key: 'observations', template: `Observation?patient=${P}`, reason: 'timeout', detail: 'time budget spent' }]);
    expect(result.fetched.find((f) => f.key === 'observations')).toMatchObject({ status: 0, error: 'time budget spent' });
    expect(result.timing.budgetMs).toBe(300);
  });

  it('never follows a next link to another host: the key keeps page one and is reported incomplete', async () => {
    const result = await assemblePatientData({ templates: { conditions: `Condition?patient=${P}` }, context, fhirServer: fhir.base, fhirAuthorization: auth });
    expect(other.requests).toEqual([]);
    expect(ids(result.resources)).toEqual(['Condition/c1']);
    expect(result.satisfiedBy).toEqual({ conditions: 'fhir' });
    expect(result.incomplete).toEqual([{ key: 'conditions', url: `${other.origin}/fhir/Condition?patient=p1&page=2`, reason: 'next link is outside the fhirServer base URL' }]);
  });

  it('fetches the context patient when the prefetched Patient is another one, and never uses the other', async () => {
    const templates = { patient: `Patient/${P}` };
    const prefetch = { patient: { resourceType: 'Patient', id: 'p2' } };
    const fetched = await assemblePatientData({ templates, context, prefetch, fhirServer: fhir.base, fhirAuthorization: auth });
    expect(fetched.satisfiedBy).toEqual({ patient: 'fhir' });
    expect(ids(fetched.resources)).toEqual(['Patient/p1']);
    const without = await assemblePatientData({ templates, context, prefetch });
    expect(without.missing).toEqual([{ key: 'patient', template: templates.patient, reason: 'other-patient', detail: 'holds Patient/p2, not the context patient p1' }]);
    expect(without.resources).toEqual([]);
  });

  it('does not believe a fhirServer that answers with another patient: the key is missing', async () => {
    const templates = { patient: 'Patient/{{context.patientId}}' };
    const result = await assemblePatientData({ templates, context: { ...context, patientId: 'mixed-up' }, prefetch: {}, fhirServer: fhir.base, fhirAuthorization: auth });
    expect(result.missing).toEqual([{ key: 'patient', template: templates.patient, reason: 'other-patient', detail: "the fhirServer's answer holds Patient/p2, not the context patient mixed-up" }]);
    expect(result.resources).toEqual([]);
  });

  it('bounds the pages read per key', async () => {
    const result = await assemblePatientData({ templates: { encounters: `Encounter?patient=${P}` }, context, fhirServer: fhir.base, fhirAuthorization: auth, maxPages: 3 });
    expect(ids(result.resources)).toEqual(['Encounter/e1', 'Encounter/e2', 'Encounter/e3']);
    expect(result.incomplete).toEqual([{ key: 'encounters', url: `${fhir.base}/Encounter?patient=p1&page=4`, reason: 'page limit 3 reached' }]);
  });

  it('reports server errors, OperationOutcomes and a wrong token as missing keys with their templates', async () => {
    const templates = { allergies: `AllergyIntolerance?patient=${P}`, gone: 'Patient/p404' };
    const result = await assemblePatientData({ templates, context, fhirServer: fhir.base, fhirAuthorization: auth });
    expect(result.missing).toEqual([
      { key: 'allergies', template: templates.allergies, reason: 'fetch-failed', detail: 'HTTP 500 OperationOutcome: error exception database unavailable' },
      { key: 'gone', template: templates.gone, reason: 'fetch-failed', detail: 'HTTP 404 OperationOutcome: error not-found Patient/p404 is not known' },
    ]);
    const denied = await assemblePatientData({ templates: { patient: `Patient/${P}` }, context, fhirServer: fhir.base, fhirAuthorization: { access_token: 'wrong' } });
    expect(denied.missing).toEqual([{ key: 'patient', template: `Patient/${P}`, reason: 'fetch-failed', detail: 'HTTP 401 OperationOutcome: error login bearer token required' }]);
  });

  it('does not repeat a query the client answered with an OperationOutcome, but lets the local copy fill it', async () => {
    const before = fhir.requests.length;
    const failed = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'too-costly' }] };
    const templates = { conditions: `Condition?patient=${P}` };
    const withoutLocal = await assemblePatientData({ templates, context, prefetch: { conditions: failed }, fhirServer: fhir.base, fhirAuthorization: auth });
    expect(withoutLocal.missing).toEqual([{ key: 'conditions', template: templates.conditions, reason: 'operation-outcome', detail: 'OperationOutcome: error too-costly' }]);
    // The copy holds the patient (it returns the Patient), so what it has for them counts.
    const localSource: LocalSource = async () => [{ resourceType: 'Patient', id: 'p1' }, { resourceType: 'Condition', id: 'c-local' }];
    const withLocal = await assemblePatientData({ templates, context, prefetch: { conditions: failed }, fhirServer: fhir.base, fhirAuthorization: auth, localSource });
    expect(withLocal.satisfiedBy).toEqual({ conditions: 'local' });
    expect(ids(withLocal.resources)).toEqual(['Condition/c-local']);
    expect(fhir.requests.length).toBe(before);
  });

  it('follows the next link of a prefetched searchset on the fhirServer', async () => {
    const result = await assemblePatientData({
      templates: { medicationRequests: `MedicationRequest?patient=${P}` },
      context,
      prefetch: { medicationRequests: { resourceType: 'Bundle', type: 'searchset', link: [{ relation: 'next', url: `${fhir.base}/MedicationRequest?patient=p1&page=2` }], entry: [{ resource: { resourceType: 'MedicationRequest', id: 'mr1' } }] } },
      fhirServer: fhir.base,
      fhirAuthorization: auth,
    });
    expect(ids(result.resources)).toEqual(['MedicationRequest/mr1', 'MedicationRequest/mr2', 'MedicationRequest/mr3']);
    expect(result.satisfiedBy).toEqual({ medicationRequests: 'prefetch' });
    expect(result.incomplete).toEqual([]);
  });

  it('reads referenced Medications by id when asked', async () => {
    const result = await assemblePatientData({ templates: { medicationRequests: `MedicationRequest?patient=${P}` }, context, fhirServer: fhir.base, fhirAuthorization: auth, followReferences: ['Medication'] });
    expect(ids(result.resources)).toContain('Medication/med1');
    expect(result.fetched.map((f) => f.url)).toContain(`${fhir.base}/Medication?_id=med1`);
  });

  it('fills what the FHIR server could not give from the local source, and only that', async () => {
    const calls: { patientId: string; types: readonly string[] }[] = [];
    const localSource: LocalSource = async (patientId, types) => {
      calls.push({ patientId, types });
      return [
        { resourceType: 'Observation', id: 'o-local', subject: { reference: 'Patient/p1' } },
        { resourceType: 'Patient', id: 'p1', gender: 'stale' },
      ];
    };
    const result = await assemblePatientData({
      templates: { patient: `Patient/${P}`, observations: `Observation?patient=${P}` },
      context: { ...context, patientId: 'Patient/p1' },
      fhirServer: fhir.base,
      fhirAuthorization: auth,
      localSource,
      budgetMs: 400,
    });
    expect(calls).toEqual([{ patientId: 'p1', types: ['Observation'] }]);
    expect(result.satisfiedBy).toEqual({ observations: 'local', patient: 'fhir' });
    expect(result.missing).toEqual([]);
    expect(ids(result.resources)).toEqual(['Observation/o-local', 'Patient/p1']);
    expect(result.resources.find((r) => r.resourceType === 'Patient')).toMatchObject({ gender: 'female' });
    expect(result.timing.localMs).toBeGreaterThanOrEqual(0);
  });

  it('stops waiting for a local source that outlives the budget', async () => {
    const localSource: LocalSource = () => new Promise(() => undefined);
    const result = await assemblePatientData({ templates: { observations: `Observation?patient=${P}` }, context, localSource, budgetMs: 100 });
    expect(result.missing).toMatchObject([{ key: 'observations', reason: 'no-fhir-server' }]);
    expect(result.warnings).toEqual(['local source failed for Observation: time budget spent']);
  });
});

describe('assemblePatientData without a FHIR server', () => {
  it('says which keys are missing and why, for a 412 answer', async () => {
    const templates = { patient: `Patient/${P}`, conditions: `Condition?patient=${P}`, user: 'Practitioner/{{userPractitionerId}}' };
    const result = await assemblePatientData({ templates, context: { patientId: 'p1' }, prefetch: { patient: { resourceType: 'Patient', id: 'p1' } } });
    expect(result.missing).toEqual([
      { key: 'conditions', template: templates.conditions, reason: 'no-fhir-server', detail: 'not in prefetch, and no usable fhirServer' },
      { key: 'user', template: templates.user, reason: 'unresolved-token', detail: 'no value in the hook context for {{userPractitionerId}}' },
    ]);
    expect(result.fetched).toEqual([]);
  });

  it('keeps a prefetched first page and marks it incomplete when there is no server to page through', async () => {
    const result = await assemblePatientData({
      templates: { meds: `MedicationRequest?patient=${P}` },
      context,
      prefetch: { meds: { resourceType: 'Bundle', link: [{ relation: 'next', url: 'https://ehr.example.org/fhir/x' }], entry: [{ resource: { resourceType: 'MedicationRequest', id: 'm' } }] } },
      fhirServer: 'not a url',
    });
    expect(ids(result.resources)).toEqual(['MedicationRequest/m']);
    expect(result.incomplete).toEqual([{ key: 'meds', url: 'https://ehr.example.org/fhir/x', reason: 'searchset has a next page and no usable fhirServer to read it from' }]);
    expect(result.warnings).toEqual(['fhirServer "not a url" is not an absolute http(s) URL; not used']);
  });

  it('never throws on arbitrary prefetch and context JSON', async () => {
    const templates = { patient: `Patient/${P}`, obs: `Observation?patient=${P}`, user: '{{context.userId}}' };
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), fc.dictionary(fc.string(), fc.jsonValue()), async (prefetch, ctx) => {
        const result = await assemblePatientData({ templates, context: ctx, prefetch, budgetMs: 50 });
        expect(result.missing.length + Object.keys(result.satisfiedBy).length).toBe(3);
      }),
      { numRuns: 200 },
    );
  });
});
