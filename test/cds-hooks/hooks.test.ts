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
  // appointment-book: a card only for a proposed follow-up, read from the context's Appointment
  // (no stored appointment exists), suggesting an update of that Appointment.
  await writeFile(path.join(root, 'cql/FollowUpBooking.cql'), [
    "library FollowUpBooking version '1.0.0'",
    "using FHIR version '4.0.1'",
    "include FHIRHelpers version '4.0.1' called FHIRHelpers",
    'context Patient',
    'define "Proposed Follow-ups": [Appointment] A where A.status = \'proposed\' and exists (A.appointmentType.coding C where C.code = \'FOLLOWUP\')',
    'define "Has Proposed Follow-up": exists "Proposed Follow-ups"',
    'define "Follow-up": First("Proposed Follow-ups")',
    'define "Follow-up Id": "Follow-up".id',
    'define "Follow-up Type": "Follow-up".appointmentType',
    'define "Follow-up Participants": "Follow-up".participant',
  ].join('\n'));
  await writeFile(path.join(root, 'rules/follow-up-booking.json'), JSON.stringify({
    id: 'follow-up-booking', version: '1.0.0', title: 'Follow-up booking', description: 'Suggests a longer slot when a follow-up visit is being booked.', status: 'active',
    source: { label: 'Cairn test fixture' }, runs: { hooks: ['appointment-book'] },
    cql: { library: 'FollowUpBooking', facts: ['Has Proposed Follow-up', 'Follow-up Id', 'Follow-up Type', 'Follow-up Participants'] },
    conditions: { all: [{ fact: 'Has Proposed Follow-up', operator: 'equal', value: true }] },
    outcome: {
      card: {
        summary: 'Follow-up Appointment/{{Follow-up Id}}: book a 40-minute slot',
        indicator: 'info',
        suggestions: [{
          label: 'Lengthen to 40 minutes',
          actions: [{
            type: 'update',
            description: 'Set Appointment/{{Follow-up Id}} to 40 minutes',
            resource: { resourceType: 'Appointment', id: '{{Follow-up Id}}', status: 'proposed', appointmentType: '{{Follow-up Type}}', minutesDuration: 40, participant: '{{Follow-up Participants}}' },
          }],
        }],
        selectionBehavior: 'at-most-one',
      },
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

describe('appointment-book: the context appointments reach CQL and the rules', () => {
  const url = '/cds-services/follow-up-booking-appointment-book';
  const followUp = { code: 'FOLLOWUP', system: 'http://terminology.hl7.org/CodeSystem/v2-0276', display: 'A follow up visit from a previous appointment' };
  const participant = [{ actor: { reference: 'Patient/p1' }, status: 'needs-action' }];
  const proposedFollowUp = { resourceType: 'Appointment', id: 'appt-2', status: 'proposed', appointmentType: { coding: [followUp] }, participant };

  /** book calls the service with `booked` as the context's one appointment; the prefetch has the Patient and no stored appointment. */
  async function book(booked: Record<string, unknown>, hookInstance: string) {
    const discovery = await service.app.inject({ method: 'GET', url: '/cds-services', headers: { authorization: `Bearer ${await service.token('/cds-services')}` } });
    const entry = (discovery.json() as { services: { id: string; prefetch?: Record<string, string> }[] }).services.find((s) => s.id === 'follow-up-booking-appointment-book');
    // The Appointment retrieve is in the prefetch templates; no stored appointment is sent, so only the context's can fire the rule.
    expect(Object.values(entry?.prefetch ?? {})).toContain('Appointment?patient={{context.patientId}}');
    const prefetch = Object.fromEntries(Object.entries(entry?.prefetch ?? {}).map(([key, template]) => [key, template.startsWith('Patient/') ? patient : null]));
    const context = { userId: USER, patientId: 'p1', appointments: { resourceType: 'Bundle', type: 'collection', entry: [{ resource: booked }] } };
    return call(url, { hook: 'appointment-book', hookInstance, context, prefetch });
  }

  it('answers a card only for an appointment of the status and type the rule reads', async () => {
    const cases = [
      { name: 'proposed follow-up', appointment: proposedFollowUp, cards: 1 },
      { name: 'follow-up already booked', appointment: { ...proposedFollowUp, status: 'booked' }, cards: 0 },
      { name: 'proposed routine visit', appointment: { ...proposedFollowUp, appointmentType: { coding: [{ ...followUp, code: 'ROUTINE', display: 'Routine appointment' }] } }, cards: 0 },
      { name: 'proposed, no type', appointment: { ...proposedFollowUp, appointmentType: undefined }, cards: 0 },
    ];
    for (const [i, c] of cases.entries()) {
      const answered = await book(c.appointment, `e5a0c1a2-0000-4000-8000-00000000000${i}`);
      expect(answered.status, c.name).toBe(200);
      expect(answered.json.cards, c.name).toHaveLength(c.cards);
    }
  });

  it('renders a suggestion whose update action carries a description and the resource to update', async () => {
    const answered = await book(proposedFollowUp, 'e5a0c1a2-0000-4000-8000-0000000000aa');
    expect(answered.status).toBe(200);
    expect(CardsResponseSchema.safeParse(answered.json).success).toBe(true);
    const [card] = answered.json.cards as { summary: string; suggestions?: { label: string; uuid?: string; actions?: Record<string, unknown>[] }[]; selectionBehavior?: string }[];
    expect(card?.summary).toBe('Follow-up Appointment/appt-2: book a 40-minute slot');
    expect(card?.selectionBehavior).toBe('at-most-one');
    expect(card?.suggestions).toHaveLength(1);
    const [action] = card!.suggestions![0]!.actions!;
    expect(action).toEqual({
      type: 'update',
      description: 'Set Appointment/appt-2 to 40 minutes',
      // The facts' FHIR values travel as JSON: the appointment's own type and participants.
      resource: { resourceType: 'Appointment', id: 'appt-2', status: 'proposed', appointmentType: { coding: [followUp] }, minutesDuration: 40, participant },
    });
  });
});
