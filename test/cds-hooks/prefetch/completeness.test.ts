/**
 * When assembled data may be evaluated: Medications referenced by id are obtained or reported, the
 * local copy fills keys only for a patient it holds, and incomplete searchsets are never taken for
 * complete ({@link shortfallOf} is what both service-call paths ask).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assemblePatientData, shortfallOf, type LocalSource } from '../../../src/cds-hooks/prefetch/assemble.ts';
import type { FhirResource } from '../../../src/cql-engine/fhir-model.ts';
import { openWarehouse, type Warehouse } from '../../../src/warehouse/database.ts';
import { ingestPaths } from '../../../src/warehouse/ingest.ts';
import { readPatientResources } from '../../../src/warehouse/patient-data.ts';
import { startFhirServer, startOtherHost, TOKEN, type TestServer } from './fhir-server.ts';

const P = '{{context.patientId}}';
const auth = { access_token: TOKEN, token_type: 'Bearer', expires_in: 300, scope: 'patient/*.read', subject: 'cairn' };
const ids = (resources: readonly FhirResource[]): string[] => resources.map((r) => `${r.resourceType}/${r.id}`).sort();
const subject = { reference: 'Patient/p1' };
const order = (medication: Record<string, unknown>, extra: Record<string, unknown> = {}): FhirResource => ({ resourceType: 'MedicationRequest', id: 'draft-1', status: 'draft', intent: 'order', subject, ...medication, ...extra });
const draftOrders = (...resources: unknown[]): Record<string, unknown> => ({ resourceType: 'Bundle', type: 'collection', entry: resources.map((resource) => ({ resource })) });
const MEDS = { medicationRequests: `MedicationRequest?patient=${P}` };

let fhir: TestServer;
let other: TestServer;
let dir: string;
let warehouse: Warehouse;
let localSource: LocalSource;

beforeAll(async () => {
  other = await startOtherHost();
  fhir = await startFhirServer({ otherHost: other.origin });
  // A real local copy, wired as `cairn serve` wires it: it holds p-local (one Condition, one order by reference) and not p1.
  dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-completeness-'));
  const stored = [
    { resourceType: 'Patient', id: 'p-local', gender: 'female', birthDate: '1960-01-01' },
    { resourceType: 'Condition', id: 'c-local', subject: { reference: 'Patient/p-local' }, code: { text: 'hypertension' } },
    { resourceType: 'MedicationRequest', id: 'mr-local', status: 'active', intent: 'order', subject: { reference: 'Patient/p-local' }, medicationReference: { reference: 'Medication/med-local' } },
    { resourceType: 'Medication', id: 'med-local', code: { text: 'alprazolam 0.5 mg' } },
    { resourceType: 'Medication', id: 'med-unreferenced', code: { text: 'metformin 500 mg' } },
  ];
  await writeFile(path.join(dir, 'records.ndjson'), stored.map((r) => JSON.stringify(r)).join('\n'));
  warehouse = await openWarehouse({ path: path.join(dir, 'local.duckdb') });
  await ingestPaths(warehouse, [path.join(dir, 'records.ndjson')], { now: new Date('2026-01-01T00:00:00Z') });
  const reader = { ...warehouse, connection: await warehouse.connect() };
  localSource = (patientId, types, { medicationIds }) => readPatientResources(reader, patientId, types, medicationIds);
});

afterAll(async () => {
  await fhir.close();
  await other.close();
  warehouse.close();
  await rm(dir, { recursive: true, force: true });
});

describe('Medications referenced by id', () => {
  it('reads one a draft order references from the fhirServer with the bearer token', async () => {
    const before = fhir.requests.length;
    const result = await assemblePatientData({
      templates: {},
      context: { patientId: 'p1', draftOrders: draftOrders(order({ medicationReference: { reference: 'Medication/med1' } })) },
      fhirServer: fhir.base,
      fhirAuthorization: auth,
      followReferences: ['Medication'],
    });
    expect(result.unresolved).toEqual([]);
    expect(ids(result.resources)).toEqual(['Medication/med1', 'MedicationRequest/draft-1']);
    expect(fhir.requests.slice(before)).toEqual([{ path: '/fhir/Medication?_id=med1', authorization: `Bearer ${TOKEN}`, accept: 'application/fhir+json' }]);
    expect(shortfallOf(result, {})).toBeUndefined();
  });

  it('needs nothing for contained Medications, Medications in a prefetch Bundle or codes', async () => {
    const contained = order({ medicationReference: { reference: '#m' } }, { contained: [{ resourceType: 'Medication', id: 'm' }] });
    const byCode = { ...order({ medicationCodeableConcept: { text: 'oxycodone' } }), id: 'draft-2' };
    const bundled = { resourceType: 'MedicationRequest', id: 'mr9', status: 'active', intent: 'order', subject, medicationReference: { reference: 'Medication/med9' } };
    const included = { resourceType: 'Bundle', type: 'searchset', entry: [{ resource: bundled }, { resource: { resourceType: 'Medication', id: 'med9' }, search: { mode: 'include' } }] };
    const result = await assemblePatientData({ templates: MEDS, context: { patientId: 'p1', draftOrders: draftOrders(contained, byCode) }, prefetch: { medicationRequests: included }, followReferences: ['Medication'] });
    expect(result.unresolved).toEqual([]);
    expect(result.fetched).toEqual([]);
    expect(shortfallOf(result, MEDS)).toBeUndefined();
  });

  it('reports one no source can give as unresolved, naming why', async () => {
    const context = { patientId: 'p1', draftOrders: draftOrders(order({ medicationReference: { reference: 'Medication/med404' } })) };
    const noServer = await assemblePatientData({ templates: {}, context, followReferences: ['Medication'] });
    expect(noServer.unresolved).toEqual([{ reference: 'Medication/med404', reason: 'no-fhir-server', detail: 'not in the request, and no usable fhirServer' }]);
    const notThere = await assemblePatientData({ templates: {}, context, fhirServer: fhir.base, fhirAuthorization: auth, followReferences: ['Medication'] });
    expect(notThere.unresolved).toEqual([{ reference: 'Medication/med404', reason: 'absent', detail: 'not on the fhirServer' }]);
    const denied = await assemblePatientData({ templates: {}, context, fhirServer: fhir.base, fhirAuthorization: { access_token: 'wrong' }, followReferences: ['Medication'] });
    expect(denied.unresolved).toEqual([{ reference: 'Medication/med404', reason: 'fetch-failed', detail: 'HTTP 401 OperationOutcome: error login bearer token required' }]);
    expect(shortfallOf(notThere, {})).toEqual({ missing: [], unresolved: notThere.unresolved, detail: 'Medication/med404 not obtained: not on the fhirServer' });
  });

  it('takes one the local copy holds for a patient whose records reference it', async () => {
    const context = { patientId: 'p-local', draftOrders: draftOrders(order({ medicationReference: { reference: 'Medication/med-local' } }, { subject: { reference: 'Patient/p-local' } })) };
    const result = await assemblePatientData({ templates: MEDS, context, prefetch: { medicationRequests: null }, localSource, followReferences: ['Medication'] });
    expect(result.unresolved).toEqual([]);
    expect(ids(result.resources)).toEqual(['Medication/med-local', 'MedicationRequest/draft-1']);
  });

  it('takes one the local copy holds that a draft order names and no stored record references', async () => {
    const context = { patientId: 'p-local', draftOrders: draftOrders(order({ medicationReference: { reference: 'Medication/med-unreferenced' } }, { subject: { reference: 'Patient/p-local' } })) };
    const result = await assemblePatientData({ templates: MEDS, context, prefetch: { medicationRequests: null }, localSource, followReferences: ['Medication'] });
    expect(result.unresolved).toEqual([]);
    // The Medication its stored order references comes along (the local copy reads both in one query).
    expect(ids(result.resources)).toEqual(['Medication/med-local', 'Medication/med-unreferenced', 'MedicationRequest/draft-1']);
    expect(shortfallOf(result, MEDS)).toBeUndefined();
  });

  it('gives no Medication a draft order names for a patient the local copy does not know', async () => {
    const context = { patientId: 'p-absent', draftOrders: draftOrders(order({ medicationReference: { reference: 'Medication/med-unreferenced' } }, { subject: { reference: 'Patient/p-absent' } })) };
    const result = await assemblePatientData({ templates: {}, context, localSource, followReferences: ['Medication'] });
    expect(result.unresolved).toEqual([{ reference: 'Medication/med-unreferenced', reason: 'no-fhir-server', detail: 'not in the request, and no usable fhirServer; the local copy has no record of the patient' }]);
  });

  it('takes from the local copy the Medications of the orders it fills, and only those', async () => {
    const result = await assemblePatientData({ templates: MEDS, context: { patientId: 'p-local' }, localSource, followReferences: ['Medication'] });
    expect(result.unresolved).toEqual([]);
    expect(result.satisfiedBy).toEqual({ medicationRequests: 'local' });
    expect(ids(result.resources)).toEqual(['Medication/med-local', 'MedicationRequest/mr-local']);
  });
});

describe('the local copy', () => {
  const templates = { patient: `Patient/${P}`, conditions: `Condition?patient=${P}` };

  it('leaves every key missing for a patient it does not hold, saying so', async () => {
    const result = await assemblePatientData({ templates, context: { patientId: 'p-absent' }, localSource });
    expect(result.satisfiedBy).toEqual({});
    expect(result.missing).toEqual([
      { key: 'conditions', template: templates.conditions, reason: 'no-fhir-server', detail: 'not in prefetch, and no usable fhirServer; the local copy has no record of the patient' },
      { key: 'patient', template: templates.patient, reason: 'no-fhir-server', detail: 'not in prefetch, and no usable fhirServer; the local copy has no record of the patient' },
    ]);
    expect(shortfallOf(result, templates)?.missing.map((m) => m.key)).toEqual(['conditions', 'patient']);
  });

  it('fills every key for a patient it holds, an empty search included', async () => {
    const result = await assemblePatientData({ templates: { ...templates, observations: `Observation?patient=${P}` }, context: { patientId: 'p-local' }, localSource });
    expect(result.missing).toEqual([]);
    expect(result.satisfiedBy).toEqual({ conditions: 'local', observations: 'local', patient: 'local' });
    expect(ids(result.resources)).toEqual(['Condition/c-local', 'Patient/p-local']);
  });

  it('does not complete a searchset for a patient it does not hold', async () => {
    const partial = { resourceType: 'Bundle', type: 'searchset', link: [{ relation: 'next', url: 'https://ehr.example/fhir/MedicationRequest?patient=p-absent&page=2' }], entry: [] };
    const result = await assemblePatientData({ templates: MEDS, context: { patientId: 'p-absent' }, prefetch: { medicationRequests: partial }, localSource });
    expect(result.incomplete).toEqual([{ key: 'medicationRequests', url: 'https://ehr.example/fhir/MedicationRequest?patient=p-absent&page=2', reason: 'searchset has a next page and no usable fhirServer to read it from; the local copy has no record of the patient' }]);
  });
});

describe('shortfallOf', () => {
  it('names a searchset still incomplete after every source, as a missing key would be', async () => {
    const partial = { resourceType: 'Bundle', type: 'searchset', link: [{ relation: 'next', url: 'https://ehr.example/fhir/MedicationRequest?patient=p1&page=2' }], entry: [] };
    const result = await assemblePatientData({ templates: { ...MEDS, conditions: `Condition?patient=${P}` }, context: { patientId: 'p1' }, prefetch: { medicationRequests: partial } });
    expect(shortfallOf(result, { ...MEDS, conditions: `Condition?patient=${P}` })).toEqual({
      missing: [
        { key: 'conditions', template: `Condition?patient=${P}`, reason: 'no-fhir-server' },
        { key: 'medicationRequests', template: MEDS.medicationRequests, reason: 'incomplete' },
      ],
      unresolved: [],
      detail:
        'prefetch "conditions" (Condition?patient={{context.patientId}}) not obtained: not in prefetch, and no usable fhirServer; ' +
        'prefetch "medicationRequests" (MedicationRequest?patient={{context.patientId}}) incomplete: searchset has a next page and no usable fhirServer to read it from',
    });
  });
});
