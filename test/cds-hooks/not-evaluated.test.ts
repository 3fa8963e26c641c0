import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOT_EVALUATED_TOPIC } from '../../src/cds-hooks/not-evaluated.ts';
import type { Card } from '../../src/domain/decisions.ts';
import { PROJECT_ROOT } from '../support/knowledge.ts';
import { cardIssues, nullOrEmptyFields } from './live.ts';
import { hookRequestFromCase, startService, type TestService } from './support.ts';

/**
 * A rule that throws in a hook call (here: an unrelated stored order whose `coding` is an object, not
 * an array) must not look like a rule that found nothing: the answer carries a warning card saying
 * which rule was not checked, next to the cards of the rules that ran.
 */
const ORDER_SIGN = '/cds-services/medication-safety-order-sign';
let service: TestService;
let request: Record<string, unknown>;

beforeAll(async () => {
  service = await startService();
  const discovery = await service.app.inject({ method: 'GET', url: '/cds-services', headers: { authorization: `Bearer ${await service.token('/cds-services')}` } });
  const templates = (discovery.json() as { services: { id: string; prefetch?: Record<string, string> }[] }).services.find((s) => ORDER_SIGN.endsWith(s.id))?.prefetch ?? {};
  const testCase = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'rules/opioid-benzodiazepine-concurrent.tests/order-sign-fires.json'), 'utf8')) as Parameters<typeof hookRequestFromCase>[0];
  request = hookRequestFromCase(testCase, templates);
});

afterAll(async () => service?.close());

async function post(url: string, body: unknown) {
  const response = await service.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', authorization: `Bearer ${await service.token(url)}` }, payload: JSON.stringify(body) });
  return { status: response.statusCode, json: response.json() as Record<string, unknown> };
}

/** The same call with one more active order whose medication coding is an object, as no FHIR server should send. */
function withMalformedOrder(): Record<string, unknown> {
  const prefetch = { ...(request.prefetch as Record<string, { entry?: unknown[] }>) };
  const junk = { resourceType: 'MedicationRequest', id: 'junk', status: 'active', intent: 'order', subject: { reference: 'Patient/p1' }, medicationCodeableConcept: { coding: { system: 'x', code: 'y' } } };
  prefetch.medicationRequests = { ...prefetch.medicationRequests, entry: [...(prefetch.medicationRequests?.entry ?? []), { resource: junk }] };
  return { ...request, hookInstance: 'not-evaluated-1', prefetch };
}

describe('a rule that fails in a hook call', () => {
  it('fires normally on well-formed data (the baseline)', async () => {
    const response = await post(ORDER_SIGN, request);
    expect(response.status).toBe(200);
    const cards = response.json.cards as Card[];
    expect(cards.some((card) => card.source.topic?.code === 'medication-safety')).toBe(true);
    expect(cards.some((card) => card.source.topic?.code === NOT_EVALUATED_TOPIC.code)).toBe(false);
  });

  it('answers a warning card naming the rule not checked, valid as any card, and feedback on it is taken', async () => {
    const response = await post(ORDER_SIGN, withMalformedOrder());
    expect(response.status).toBe(200);
    const cards = response.json.cards as Card[];
    const notChecked = cards.filter((card) => card.source.topic?.code === NOT_EVALUATED_TOPIC.code);
    expect(notChecked.length).toBeGreaterThan(0);
    const opioid = notChecked.find((card) => card.detail?.includes('`opioid-benzodiazepine-concurrent`'));
    expect(opioid, JSON.stringify(cards.map((c) => c.summary))).toBeDefined();
    expect(opioid).toMatchObject({ indicator: 'warning', source: { label: 'Cairn rule engine', topic: NOT_EVALUATED_TOPIC } });
    expect(opioid!.summary.length).toBeLessThan(140);
    expect(opioid!.detail).toContain('opioid-benzodiazepine-concurrent');
    for (const card of notChecked) expect([...cardIssues(card), ...nullOrEmptyFields(card)]).toEqual([]);
    // Never the patient's data: no drug names, no resource ids.
    expect(JSON.stringify(notChecked)).not.toMatch(/alprazolam|oxycodone|junk/);

    const feedback = await post(`${ORDER_SIGN}/feedback`, { feedback: [{ card: opioid!.uuid, outcome: 'overridden', outcomeTimestamp: '2026-03-01T12:00:05Z' }] });
    expect(feedback.status).toBe(200);
  });

  it('gives the same card uuid for the same call (ids derive from the inputs)', async () => {
    const first = (await post(ORDER_SIGN, withMalformedOrder())).json.cards as Card[];
    const second = (await post(ORDER_SIGN, withMalformedOrder())).json.cards as Card[];
    expect(second.map((c) => c.uuid)).toEqual(first.map((c) => c.uuid));
  });
});

describe('feedback on a "not checked" card', () => {
  const HBA1C = '/cds-services/hba1c-above-9-patient-view';
  const SNOOZE = { system: 'http://cairn.health/fhir/CodeSystem/override-reason', code: 'snooze-30d' };

  it('records a snooze the rule offers on its own cards, but does not obey it: the card offered none', async () => {
    const discovery = await service.app.inject({ method: 'GET', url: '/cds-services', headers: { authorization: `Bearer ${await service.token('/cds-services')}` } });
    const templates = (discovery.json() as { services: { id: string; prefetch?: Record<string, string> }[] }).services.find((s) => HBA1C.endsWith(s.id))?.prefetch ?? {};
    const testCase = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'rules/hba1c-above-9.tests/hba1c-10-2.json'), 'utf8')) as Parameters<typeof hookRequestFromCase>[0] & { patient: { entry: { resource: Record<string, unknown> }[] } };
    const valid = { ...hookRequestFromCase(testCase, templates), context: { ...testCase.context, patientId: 'p-nc' } };
    const withPatient = (body: Record<string, unknown>, extra: Record<string, unknown>[] = []): Record<string, unknown> => {
      const prefetch = Object.fromEntries(Object.entries(body.prefetch as Record<string, { resourceType: string; id?: string; entry?: { resource: Record<string, unknown> }[] }>).map(([key, value]) => {
        if (value?.resourceType === 'Patient') return [key, { ...value, id: 'p-nc' }];
        const entry = (value?.entry ?? []).map((e) => ({ resource: { ...e.resource, subject: { reference: 'Patient/p-nc' } } }));
        return [key, { ...value, entry: key === 'observations' || (value?.entry ?? []).some((e) => e.resource.resourceType === 'Observation') ? [...entry, ...extra.map((resource) => ({ resource }))] : entry }];
      }));
      return { ...body, prefetch };
    };
    const broken = { resourceType: 'Observation', id: 'broken', status: 'final', subject: { reference: 'Patient/p-nc' }, code: { coding: [{ system: 'http://loinc.org', code: '4548-4' }] }, effectiveDateTime: { not: 'a date' }, valueQuantity: { value: 10, unit: '%', system: 'http://unitsofmeasure.org', code: '%' } };

    const failed = await post(HBA1C, { ...withPatient(valid, [broken]), hookInstance: 'nc-1' });
    expect(failed.status).toBe(200);
    const notChecked = (failed.json.cards as Card[]).find((card) => card.source.topic?.code === NOT_EVALUATED_TOPIC.code);
    expect(notChecked, JSON.stringify(failed.json)).toBeDefined();
    expect(notChecked!.overrideReasons).toBeUndefined();
    const feedback = await post(`${HBA1C}/feedback`, { feedback: [{ card: notChecked!.uuid, outcome: 'overridden', outcomeTimestamp: '2026-03-01T12:00:05Z', overrideReason: { reason: SNOOZE } }] });
    expect(feedback.status).toBe(200);

    // The rule is not silenced for this patient: well-formed data gets its card.
    const answered = await post(HBA1C, { ...withPatient(valid), hookInstance: 'nc-2' });
    expect(answered.status).toBe(200);
    expect((answered.json.cards as Card[]).map((card) => card.source.topic?.code)).toEqual(['diabetes-care']);
  });
});
