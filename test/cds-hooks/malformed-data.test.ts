import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOT_EVALUATED_TOPIC } from '../../src/cds-hooks/not-evaluated.ts';
import type { Card } from '../../src/domain/decisions.ts';
import { PROJECT_ROOT } from '../support/knowledge.ts';
import { hookRequestFromCase, startService, type TestService } from './support.ts';

/**
 * Patient data whose JSON contradicts the FHIR R4 model where a rule reads it (an array for a
 * single element, a string for a Reference or a decimal, a date that does not parse) must not be
 * read as absent, which silently keeps a safety warning from firing: the rule fails, and the
 * answer says which rule was not checked.
 */
type Json = Record<string, unknown>;
interface Case {
  readonly url: string;
  readonly ruleId: string;
  readonly topic: string;
  readonly request: Json;
}

let service: TestService;
let opioid: Case;
let nsaid: Case;

async function caseFor(service: TestService, hook: string, ruleId: string, file: string): Promise<Case> {
  const discovery = await service.app.inject({ method: 'GET', url: '/cds-services', headers: { authorization: `Bearer ${await service.token('/cds-services')}` } });
  const found = (discovery.json() as { services: { id: string; hook: string; prefetch?: Record<string, string> }[] }).services.find((s) => s.id === `medication-safety-${hook}`);
  if (found === undefined) throw new Error(`no medication-safety-${hook} service`);
  const testCase = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'rules', `${ruleId}.tests`, file), 'utf8')) as Parameters<typeof hookRequestFromCase>[0];
  return { url: `/cds-services/${found.id}`, ruleId, topic: 'medication-safety', request: hookRequestFromCase(testCase, found.prefetch ?? {}) };
}

beforeAll(async () => {
  service = await startService();
  opioid = await caseFor(service, 'order-sign', 'opioid-benzodiazepine-concurrent', 'order-sign-fires.json');
  nsaid = await caseFor(service, 'order-select', 'nsaid-renal-anticoagulant-risk', 'egfr-below-30.json');
});

afterAll(async () => service?.close());

async function post(url: string, body: unknown) {
  const response = await service.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', authorization: `Bearer ${await service.token(url)}` }, payload: JSON.stringify(body) });
  return { status: response.statusCode, json: response.json() as Json };
}

/** A deep copy of the case's request with the resource `id` (in the prefetch or the draft orders) changed by `change`. */
function withResource(request: Json, id: string, change: (resource: Json) => void): Json {
  const copy = structuredClone(request) as Json & { context: { draftOrders?: { entry?: { resource: Json }[] } }; prefetch: Record<string, { entry?: { resource: Json }[] } | null> };
  const bundles = [copy.context.draftOrders, ...Object.values(copy.prefetch)];
  const resources = bundles.flatMap((bundle) => bundle?.entry?.map((e) => e.resource) ?? []);
  const found = resources.filter((r) => r.id === id);
  if (found.length === 0) throw new Error(`no resource ${id} in the request`);
  for (const resource of found) change(resource);
  return { ...copy, hookInstance: `malformed-${id}-${Math.random().toString(36).slice(2)}` };
}

async function cardsFor(testCase: Case, request: Json): Promise<Card[]> {
  const response = await post(testCase.url, request);
  expect(response.status).toBe(200);
  return response.json.cards as Card[];
}

function notChecked(cards: readonly Card[], ruleId: string): Card | undefined {
  return cards.find((card) => card.source.topic?.code === NOT_EVALUATED_TOPIC.code && card.detail?.includes(`\`${ruleId}\``) === true);
}

describe('well-formed data (the baseline)', () => {
  it('fires the opioid and benzodiazepine warning, with no "not checked" card', async () => {
    const cards = await cardsFor(opioid, opioid.request);
    expect(cards.some((card) => card.source.topic?.code === 'medication-safety')).toBe(true);
    expect(cards.some((card) => card.source.topic?.code === NOT_EVALUATED_TOPIC.code)).toBe(false);
  });

  it('fires the NSAID renal warning, with no "not checked" card', async () => {
    const cards = await cardsFor(nsaid, nsaid.request);
    expect(cards.some((card) => card.source.topic?.code === 'medication-safety')).toBe(true);
    expect(cards.some((card) => card.source.topic?.code === NOT_EVALUATED_TOPIC.code)).toBe(false);
  });
});

describe('malformed patient data a rule reads gives a "not checked" card, not silence', () => {
  const variants: readonly { readonly name: string; readonly which: () => Case; readonly id: string; readonly change: (r: Json) => void }[] = [
    { name: 'an active benzodiazepine order whose medicationCodeableConcept is an array', which: () => opioid, id: 'benzo-1', change: (r) => void (r.medicationCodeableConcept = [r.medicationCodeableConcept]) },
    {
      name: 'a draft order whose medicationReference is a string',
      which: () => opioid,
      id: 'draft-1',
      change: (r) => {
        delete r.medicationCodeableConcept;
        r.medicationReference = 'Medication/oxycodone';
      },
    },
    { name: 'an eGFR whose valueQuantity.value is a string', which: () => nsaid, id: 'egfr-1', change: (r) => void ((r.valueQuantity as Json).value = '24') },
    { name: 'an eGFR whose effectiveDateTime does not parse', which: () => nsaid, id: 'egfr-1', change: (r) => void (r.effectiveDateTime = 'garbage') },
    { name: 'an eGFR whose effectiveDateTime is a number', which: () => nsaid, id: 'egfr-1', change: (r) => void (r.effectiveDateTime = 20260215) },
    { name: 'an eGFR whose status is a boolean', which: () => nsaid, id: 'egfr-1', change: (r) => void (r.status = true) },
    { name: 'an eGFR whose code.coding is an object', which: () => nsaid, id: 'egfr-1', change: (r) => void ((r.code as Json).coding = ((r.code as Json).coding as unknown[])[0]) },
  ];

  for (const variant of variants) {
    it(variant.name, async () => {
      const testCase = variant.which();
      const cards = await cardsFor(testCase, withResource(testCase.request, variant.id, variant.change));
      const card = notChecked(cards, testCase.ruleId);
      expect(card, JSON.stringify(cards.map((c) => c.summary))).toBeDefined();
      expect(card).toMatchObject({ indicator: 'warning', source: { topic: { code: 'rule-not-evaluated' } } });
      // The card never carries the patient's data.
      expect(JSON.stringify(card)).not.toMatch(/alprazolam|oxycodone|ibuprofen|benzo-1|draft-1|egfr-1|garbage/);
    });
  }
});
