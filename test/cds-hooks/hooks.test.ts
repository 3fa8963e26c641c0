import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyKnowledge } from '../support/knowledge.ts';
import { CardsResponseSchema } from './live.ts';
import { startService, type TestService } from './support.ts';

/**
 * The hooks the sample knowledge has no rule for (encounter-start, encounter-discharge,
 * appointment-book), and systemActions, over HTTP: a knowledge copy with one rule that runs in all
 * three and answers with a card and a system action.
 */
let service: TestService;
const HOOKS = ['encounter-start', 'encounter-discharge', 'appointment-book'] as const;
const USER = 'Practitioner/dr-1';
const patient = { resourceType: 'Patient', id: 'p1', birthDate: '1960-05-01' };
const appointment = { resourceType: 'Appointment', id: 'appt-1', status: 'proposed', participant: [{ actor: { reference: 'Patient/p1' }, status: 'needs-action' }] };
const contexts: Record<(typeof HOOKS)[number], Record<string, unknown>> = {
  'encounter-start': { userId: USER, patientId: 'p1', encounterId: 'enc-1' },
  'encounter-discharge': { userId: USER, patientId: 'p1', encounterId: 'enc-1' },
  'appointment-book': { userId: USER, patientId: 'p1', appointments: { resourceType: 'Bundle', type: 'collection', entry: [{ resource: appointment }] } },
};

async function call(url: string, body: unknown) {
  const response = await service.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', authorization: `Bearer ${await service.token(url)}` }, payload: JSON.stringify(body) });
  return { status: response.statusCode, json: response.json() as Record<string, unknown> };
}

beforeAll(async () => {
  const root = await copyKnowledge();
  await writeFile(path.join(root, 'cql/AdultVisit.cql'), [
    "library AdultVisit version '1.0.0'",
    "using FHIR version '4.0.1'",
    "include FHIRHelpers version '4.0.1' called FHIRHelpers",
    'context Patient',
    'define "Is Adult": AgeInYears() >= 18',
    'define "Age": AgeInYears()',
  ].join('\n'));
  await writeFile(path.join(root, 'rules/adult-visit.json'), JSON.stringify({
    id: 'adult-visit', version: '1.0.0', title: 'Adult visit', description: 'Reminds of adult screening and queues a review task.', status: 'active',
    source: { label: 'Cairn test fixture' }, runs: { hooks: [...HOOKS] },
    cql: { library: 'AdultVisit', facts: ['Is Adult', 'Age'] },
    conditions: { all: [{ fact: 'Is Adult', operator: 'equal', value: true }] },
    outcome: {
      card: { summary: 'Adult aged {{Age}}: review screening', indicator: 'info' },
      systemActions: [{ type: 'create', description: 'Queue a screening review', resource: { resourceType: 'Task', status: 'requested', intent: 'order', description: 'Screening review (age {{Age}})' } }],
    },
  }));
  service = await startService({ knowledgeRoot: root });
  service.setNow('2026-03-01T12:00:00Z');
});

afterAll(async () => service.close());

describe('encounter-start, encounter-discharge and appointment-book over HTTP', () => {
  it.each(HOOKS)('%s: discovered, answered with its card and systemActions, and its context checked', async (hook) => {
    const discovery = await service.app.inject({ method: 'GET', url: '/cds-services', headers: { authorization: `Bearer ${await service.token('/cds-services')}` } });
    const entry = (discovery.json() as { services: { id: string; hook: string; prefetch?: Record<string, string> }[] }).services.find((s) => s.id === `adult-visit-${hook}`);
    expect(entry?.hook).toBe(hook);
    const url = `/cds-services/adult-visit-${hook}`;
    const prefetch = Object.fromEntries(Object.entries(entry?.prefetch ?? {}).map(([key, template]) => [key, template.startsWith('Patient/') ? patient : null]));
    const answered = await call(url, { hook, hookInstance: `d3f0c1a2-0000-4000-8000-00000000000${HOOKS.indexOf(hook)}`, context: contexts[hook], prefetch });
    expect(answered.status).toBe(200);
    expect(CardsResponseSchema.safeParse(answered.json).success).toBe(true);
    expect(answered.json.cards).toEqual([expect.objectContaining({ summary: 'Adult aged 65: review screening', indicator: 'info' })]);
    expect(answered.json.systemActions).toEqual([{ type: 'create', description: 'Queue a screening review', resource: { resourceType: 'Task', status: 'requested', intent: 'order', description: 'Screening review (age 65)' } }]);

    const { encounterId: _e, appointments: _a, ...withoutHookFields } = contexts[hook];
    const invalid = await call(url, { hook, hookInstance: 'd3f0c1a2-0000-4000-8000-0000000000ff', context: withoutHookFields, prefetch });
    expect(invalid.status).toBe(400);
    expect((invalid.json.issues as { field: string }[]).map((i) => i.field)).toEqual([hook === 'appointment-book' ? 'context.appointments' : 'context.encounterId']);
  });
});
