import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_FEEDBACK_ITEMS, MAX_SNOOZE_DAYS, toRecords, type FeedbackRequest } from '../../src/cds-hooks/feedback.ts';
import type { Card } from '../../src/domain/decisions.ts';
import { PROJECT_ROOT } from '../support/knowledge.ts';
import { hookRequestFromCase, ISSUER, OTHER_ISSUER, startService, type TestService } from './support.ts';

/** Limits on what feedback may ask for: when a snooze starts and ends, whose calls it silences, how much one request carries and echoes. */
let service: TestService;
let body: Record<string, unknown>;
const HBA1C = '/cds-services/hba1c-above-9-patient-view';
const OVERRIDE = 'http://cairn.health/fhir/CodeSystem/override-reason';
const SNOOZE_30D = { system: OVERRIDE, code: 'snooze-30d' };
const DAY_MS = 86_400_000;

async function call(url: string, payload: unknown, issuer = ISSUER) {
  return service.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', authorization: `Bearer ${await service.token(url, {}, issuer)}` }, payload: JSON.stringify(payload) });
}

const cards = async (issuer = ISSUER): Promise<Card[]> => ((await call(HBA1C, body, issuer)).json() as { cards: Card[] }).cards;
const overridden = (card: Card, reason: { system: string; code: string }, at: string) => ({ feedback: [{ card: card.uuid, outcome: 'overridden', overrideReason: { reason }, outcomeTimestamp: at }] });
const feedback = (payload: unknown, issuer = ISSUER) => call(`${HBA1C}/feedback`, payload, issuer);
const fields = (response: { json(): unknown }) => (response.json() as { issues: { field: string }[] }).issues.map((i) => i.field);

beforeAll(async () => {
  // Room in the body for a card id of a megabyte.
  service = await startService({ bodyLimit: 4 * 1024 * 1024 });
  const discovery = await service.app.inject({ method: 'GET', url: '/cds-services', headers: { authorization: `Bearer ${await service.token('/cds-services')}` } });
  const templates = Object.fromEntries((discovery.json() as { services: { id: string; prefetch?: Record<string, string> }[] }).services.map((s) => [s.id, s.prefetch ?? {}]));
  const testCase = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'rules', 'hba1c-above-9.tests', 'hba1c-10-2.json'), 'utf8')) as Parameters<typeof hookRequestFromCase>[0];
  body = hookRequestFromCase(testCase, templates['hba1c-above-9-patient-view']!);
});

afterAll(async () => service.close());

// The cases run in order on one service and one patient (HbA1c of 2026-02-01), each in a period no earlier snooze reaches.
describe('when a snooze starts and ends', () => {
  it('refuses an outcomeTimestamp more than 5 minutes after receipt (400 naming it), and snoozes nothing', async () => {
    service.setNow('2026-02-15T12:00:00Z');
    const [card] = await cards();
    for (const at of ['9000-01-01T00:00:00Z', '2026-02-15T12:05:01Z', '2026-02-15T14:05:01+02:00']) {
      const response = await feedback(overridden(card!, SNOOZE_30D, at));
      expect(response.statusCode, at).toBe(400);
      expect(fields(response), at).toEqual(['feedback.0.outcomeTimestamp']);
    }
    service.setNow('2026-02-16T12:00:00Z');
    expect(await cards()).toHaveLength(1);
  });

  it('starts a snooze at receipt when the outcome time is ahead of it within the clock-skew allowance', async () => {
    service.setNow('2026-03-01T12:00:00Z');
    const [card] = await cards();
    expect((await feedback(overridden(card!, SNOOZE_30D, '2026-03-01T12:04:00Z'))).statusCode).toBe(200);
    service.setNow('2026-03-31T11:59:00Z');
    expect(await cards()).toEqual([]);
    // 30 days after receipt, not after the stated outcome time.
    service.setNow('2026-03-31T12:01:00Z');
    expect(await cards()).toHaveLength(1);
  });
});

describe('whose calls a snooze silences', () => {
  it("silences the patient only at the EHR client that asked (patient ids are per EHR)", async () => {
    service.setNow('2026-04-15T12:00:00Z');
    const [card] = await cards();
    expect((await feedback(overridden(card!, SNOOZE_30D, '2026-04-15T12:00:05Z'))).statusCode).toBe(200);
    service.setNow('2026-04-20T12:00:00Z');
    expect(await cards()).toEqual([]);
    expect(await cards(OTHER_ISSUER)).toHaveLength(1);
  });

  it('adds no snooze for a duplicate item (same card, outcome and time), whatever reason the duplicate gives', async () => {
    service.setNow('2026-06-01T12:00:00Z');
    const [card] = await cards();
    const at = '2026-06-01T12:00:05Z';
    expect((await feedback(overridden(card!, { system: OVERRIDE, code: 'patient-aware' }, at))).json()).toEqual({ stored: 1, duplicates: 0 });
    expect((await feedback(overridden(card!, SNOOZE_30D, at))).json()).toEqual({ stored: 0, duplicates: 1 });
    service.setNow('2026-06-02T12:00:00Z');
    expect(await cards()).toHaveLength(1);
  });
});

describe('how much one feedback request carries and echoes', () => {
  const unknownCard = (i: number) => ({ card: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, outcome: 'accepted', outcomeTimestamp: '2026-07-01T12:00:00Z' });

  it(`refuses more than ${MAX_FEEDBACK_ITEMS} items with one 400 naming feedback, before reading any card`, async () => {
    service.setNow('2026-07-01T12:00:00Z');
    const started = performance.now();
    const response = await feedback({ feedback: Array.from({ length: 10_000 }, (_, i) => unknownCard(i)) });
    expect(response.statusCode).toBe(400);
    expect(fields(response)).toEqual(['feedback']);
    expect((response.json() as { detail: string }).detail).toContain(String(MAX_FEEDBACK_ITEMS));
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it(`takes ${MAX_FEEDBACK_ITEMS} items, and its 404 lists at most 10 unknown cards`, async () => {
    const response = await feedback({ feedback: Array.from({ length: MAX_FEEDBACK_ITEMS }, (_, i) => unknownCard(i)) });
    expect(response.statusCode).toBe(404);
    const { detail } = response.json() as { detail: string };
    expect(detail).toContain(unknownCard(9).card);
    expect(detail).not.toContain(unknownCard(10).card);
    expect(detail).toContain(`and ${MAX_FEEDBACK_ITEMS - 10} more`);
  });

  it('cuts each echoed card id to 64 characters, and names a repeated one once', async () => {
    const huge = 'x'.repeat(1024 * 1024);
    const response = await feedback({ feedback: [huge, huge, 'y'.repeat(65), 'short'].map((card) => ({ card, outcome: 'accepted', outcomeTimestamp: '2026-07-01T12:00:00Z' })) });
    expect(response.statusCode).toBe(404);
    const { detail } = response.json() as { detail: string };
    expect(detail).toBe(`service "hba1c-above-9-patient-view" never issued card ${'x'.repeat(64)}…, ${'y'.repeat(64)}…, short`);
  });

  it('cuts the ids a 400 about suggestions echoes, and lists at most 10 of its problems', async () => {
    service.setNow('2026-07-02T12:00:00Z');
    const [card] = await cards();
    const suggestions = Array.from({ length: 5000 }, (_, i) => ({ id: `${'s'.repeat(100)}-${i}` }));
    const response = await feedback({ feedback: [{ card: card!.uuid, outcome: 'accepted', acceptedSuggestions: suggestions, outcomeTimestamp: '2026-07-02T12:00:05Z' }] });
    expect(response.statusCode).toBe(400);
    const problem = response.json() as { detail: string; issues: { field: string; message: string }[] };
    expect(problem.issues).toHaveLength(11);
    expect(problem.issues[0]).toEqual({ field: 'feedback.0.acceptedSuggestions.0.id', message: `card ${card!.uuid} offered no suggestion "${'s'.repeat(64)}…"` });
    expect(problem.issues[10]).toEqual({ field: 'feedback', message: 'and 4990 more problems' });
    expect(problem.detail.length).toBeLessThan(3000);
  });
});

describe('toRecords: a snooze runs from the outcome (never after receipt) for its period, a year after receipt at most', () => {
  const receivedAt = '2026-03-01T12:00:00.000Z';
  const cases = [
    { name: 'an outcome before receipt: from the outcome', outcomeTimestamp: '2026-03-01T11:00:00Z', code: 'snooze-30d', want: '2026-03-31T11:00:00.000Z' },
    { name: 'an outcome after receipt: from receipt', outcomeTimestamp: '2026-03-01T12:04:00Z', code: 'snooze-30d', want: '2026-03-31T12:00:00.000Z' },
    { name: 'an outcome millennia ahead: from receipt', outcomeTimestamp: '9000-01-01T00:00:00Z', code: 'snooze-30d', want: '2026-03-31T12:00:00.000Z' },
    { name: 'the longest period: a year', outcomeTimestamp: '9000-01-01T00:00:00Z', code: `snooze-${MAX_SNOOZE_DAYS}d`, want: new Date(Date.parse(receivedAt) + MAX_SNOOZE_DAYS * DAY_MS).toISOString() },
    { name: 'an outcome long past: already over', outcomeTimestamp: '2020-01-01T00:00:00Z', code: 'snooze-30d', want: '2020-01-31T00:00:00.000Z' },
  ];
  for (const { name, outcomeTimestamp, code, want } of cases) {
    it(name, () => {
      const request: FeedbackRequest = { feedback: [{ card: 'c1', outcome: 'overridden', overrideReason: { reason: { system: OVERRIDE, code } }, outcomeTimestamp }] };
      const { records, snoozes } = toRecords(request, {
        serviceId: 'svc',
        client: 'ehr-a',
        receivedAt,
        cardOwner: () => ({ ruleId: 'r', patientId: 'p1' }),
        offeredReasons: () => [{ system: OVERRIDE, code }],
      });
      expect(records.map((r) => r.outcomeTimestamp)).toEqual([outcomeTimestamp]);
      expect(snoozes).toEqual([{ ruleId: 'r', patientId: 'p1', client: 'ehr-a', until: want, item: 0 }]);
    });
  }
});
