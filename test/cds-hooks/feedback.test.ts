import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snoozeDays, MAX_SNOOZE_DAYS } from '../../src/cds-hooks/feedback.ts';
import type { Card } from '../../src/domain/decisions.ts';
import { PROJECT_ROOT } from '../support/knowledge.ts';
import { hookRequestFromCase, OTHER_ISSUER, startService, type TestService } from './support.ts';

let service: TestService;
let templates: Record<string, Record<string, string>>;
const ORDER_SELECT = '/cds-services/medication-safety-order-select';
const HBA1C = '/cds-services/hba1c-above-9-patient-view';
const OVERRIDE = 'http://cairn.health/fhir/CodeSystem/override-reason';

async function requestFor(rule: string, name: string, serviceId: string): Promise<Record<string, unknown>> {
  const testCase = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'rules', `${rule}.tests`, `${name}.json`), 'utf8')) as Parameters<typeof hookRequestFromCase>[0];
  return hookRequestFromCase(testCase, templates[serviceId]!);
}

async function call(url: string, body: unknown, issuer?: string) {
  return service.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', authorization: `Bearer ${await service.token(url, {}, issuer)}` }, payload: JSON.stringify(body) });
}

const cardsOf = async (url: string, body: unknown): Promise<Card[]> => ((await call(url, body)).json() as { cards: Card[] }).cards;

const overridden = (card: Card, reason: { system: string; code: string }, at: string) => ({ feedback: [{ card: card.uuid, outcome: 'overridden', overrideReason: { reason }, outcomeTimestamp: at }] });

beforeAll(async () => {
  service = await startService();
  const discovery = await service.app.inject({ method: 'GET', url: '/cds-services', headers: { authorization: `Bearer ${await service.token('/cds-services')}` } });
  templates = Object.fromEntries((discovery.json() as { services: { id: string; prefetch?: Record<string, string> }[] }).services.map((s) => [s.id, s.prefetch ?? {}]));
});

afterAll(async () => service.close());

/** Feedback drives suppression, but only through the snooze reasons a card offers. */
describe('snooze feedback', () => {
  it('silences a rule for its period when the card offered that snooze reason', async () => {
    service.setNow('2026-03-01T12:00:00Z');
    const body = await requestFor('hba1c-above-9', 'hba1c-10-2', 'hba1c-above-9-patient-view');
    const [card] = await cardsOf(HBA1C, body);
    expect(card?.overrideReasons?.map((r) => r.code)).toContain('snooze-30d');
    expect((await call(`${HBA1C}/feedback`, overridden(card!, { system: OVERRIDE, code: 'snooze-30d' }, '2026-03-01T12:00:05Z'))).statusCode).toBe(200);
    service.setNow('2026-03-20T12:00:00Z');
    expect(await cardsOf(HBA1C, body)).toEqual([]);
    service.setNow('2026-04-02T12:00:00Z');
    expect(await cardsOf(HBA1C, body)).toHaveLength(1);
  });

  it('never silences a card with a snooze code it did not offer (a made-up one is stored, not obeyed)', async () => {
    service.setNow('2026-03-01T12:00:00Z');
    const body = await requestFor('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine', 'medication-safety-order-select');
    const [card] = await cardsOf(ORDER_SELECT, body);
    expect(card?.overrideReasons?.some((r) => r.code.includes('snooze'))).toBe(false);
    const madeUp = await call(`${ORDER_SELECT}/feedback`, overridden(card!, { system: 'urn:any', code: 'snooze-36500d' }, '2026-03-01T12:00:06Z'));
    expect(madeUp.json()).toEqual({ stored: 1, duplicates: 0 });
    // The right code in the wrong system is not the offered reason either.
    await call(`${ORDER_SELECT}/feedback`, overridden(card!, { system: 'urn:any', code: 'snooze-30d' }, '2026-03-01T12:00:07Z'));
    service.setNow('2026-03-02T12:00:00Z');
    expect(await cardsOf(ORDER_SELECT, body)).toHaveLength(1);
  });

  it('answers a snooze code asking for centuries without a server error', async () => {
    // After the first case's 30-day snooze of this patient has ended.
    service.setNow('2026-05-01T12:00:00Z');
    const body = await requestFor('hba1c-above-9', 'hba1c-10-2', 'hba1c-above-9-patient-view');
    const [card] = await cardsOf(HBA1C, body);
    const huge = await call(`${HBA1C}/feedback`, overridden(card!, { system: OVERRIDE, code: 'snooze-999999999999d' }, '2026-05-01T12:00:08Z'));
    expect(huge.statusCode).toBe(200);
  });
});

describe('feedback checked against the card', () => {
  it('refuses feedback on a card issued to another client (404, as for a card never issued)', async () => {
    service.setNow('2026-06-01T12:00:00Z');
    const body = await requestFor('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine', 'medication-safety-order-select');
    const [card] = await cardsOf(ORDER_SELECT, body);
    const accepted = { feedback: [{ card: card!.uuid, outcome: 'accepted', acceptedSuggestions: [{ id: card!.suggestions![0]!.uuid }], outcomeTimestamp: '2026-06-01T12:00:05Z' }] };
    expect((await call(`${ORDER_SELECT}/feedback`, accepted, OTHER_ISSUER)).statusCode).toBe(404);
    expect((await call(`${ORDER_SELECT}/feedback`, accepted)).statusCode).toBe(200);
  });

  it('refuses a suggestion the card did not offer, and fields of the other outcome (400 naming them)', async () => {
    service.setNow('2026-06-02T12:00:00Z');
    const body = await requestFor('opioid-benzodiazepine-concurrent', 'opioid-ordered-with-active-benzodiazepine', 'medication-safety-order-select');
    const [card] = await cardsOf(ORDER_SELECT, body);
    const item = { card: card!.uuid, outcomeTimestamp: '2026-06-02T12:00:05Z' };
    const cases = [
      { feedback: { ...item, outcome: 'accepted', acceptedSuggestions: [{ id: 'not-a-suggestion' }] }, field: 'feedback.0.acceptedSuggestions.0.id' },
      { feedback: { ...item, outcome: 'accepted', overrideReason: { reason: { system: OVERRIDE, code: 'benefit-outweighs-risk' } } }, field: 'feedback.0.overrideReason' },
      { feedback: { ...item, outcome: 'overridden', acceptedSuggestions: [{ id: card!.suggestions![0]!.uuid }] }, field: 'feedback.0.acceptedSuggestions' },
    ];
    for (const { feedback, field } of cases) {
      const response = await call(`${ORDER_SELECT}/feedback`, { feedback: [feedback] });
      expect(response.statusCode, field).toBe(400);
      expect((response.json() as { issues: { field: string }[] }).issues.map((i) => i.field)).toEqual([field]);
    }
  });
});

describe('snoozeDays', () => {
  it('reads days, weeks and months, and no period beyond a year', () => {
    expect(snoozeDays('snooze-30d')).toBe(30);
    expect(snoozeDays('snooze-2w')).toBe(14);
    expect(snoozeDays('snooze_3months')).toBe(90);
    expect(snoozeDays(`snooze-${MAX_SNOOZE_DAYS}d`)).toBe(MAX_SNOOZE_DAYS);
    expect(snoozeDays(`snooze-${MAX_SNOOZE_DAYS + 1}d`)).toBeUndefined();
    expect(snoozeDays('snooze-999999999999d')).toBeUndefined();
    expect(snoozeDays('snooze-0d')).toBeUndefined();
    expect(snoozeDays('benefit-outweighs-risk')).toBeUndefined();
  });
});
