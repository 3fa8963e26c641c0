import path from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROVENANCE_EXTENSION, SELECTIONS_EXTENSION, type CardDecision } from '../../src/domain/decisions.ts';
import { evaluatePatient } from '../../src/evaluate/evaluate.ts';
import { loadPreparedKnowledge } from '../../src/evaluate/knowledge-service.ts';
import type { PreparedKnowledge } from '../../src/evaluate/prepare.ts';
import { CairnError } from '../../src/domain/errors.ts';
import { FIXTURES, MINIMAL_KNOWLEDGE, readJson, testDeps } from '../support/knowledge.ts';

type Resource = { resourceType: string; id?: string; [k: string]: unknown };
type Bundle = { resourceType: 'Bundle'; entry: { resource: Resource }[] };

let prepared: PreparedKnowledge;
let patient: Bundle;
let context: Record<string, unknown>;
const AT = '2026-03-01T12:00:00Z';

beforeAll(async () => {
  prepared = await loadPreparedKnowledge(MINIMAL_KNOWLEDGE, testDeps());
  patient = await readJson<Bundle>(path.join(FIXTURES, 'patients/test-orders-patient.json'));
  context = await readJson(path.join(FIXTURES, 'patients/test-orders-context.json'));
});

describe('evaluatePatient', () => {
  it('sees draft orders from the hook context like stored data, and names the rule and knowledge version', async () => {
    const result = await evaluatePatient(prepared, patient, { evaluatedAt: AT, hook: 'order-select', context });
    expect(result.decisions).toHaveLength(1);
    const decision = result.decisions[0] as CardDecision;
    expect(decision).toMatchObject({ kind: 'card', ruleId: 'test-draft-order', ruleVersion: '1.0.0', knowledgeVersion: prepared.knowledge.version });
    expect(decision.card.summary).toBe('Test medication ordered with 1 active (age 55)');
    expect(decision.card.suggestions?.[0]?.actions?.[0]).toEqual({ type: 'delete', description: 'Remove the draft order', resourceId: 'MedicationRequest/draft-1' });
    expect(decision.card.selectionBehavior).toBe('at-most-one');
    expect(decision.card.extension).toEqual({
      [PROVENANCE_EXTENSION]: { ruleId: 'test-draft-order', ruleVersion: '1.0.0', knowledgeVersion: prepared.knowledge.version },
      [SELECTIONS_EXTENSION]: ['MedicationRequest/draft-1'],
    });
  });

  it('reads a context resource instead of a stored one with the same type and id (the newer state)', async () => {
    const drafts = (context.draftOrders as Bundle).entry.map((e) => e.resource);
    // The stored copy of the draft says active: were it kept, the card would count two active orders.
    const stored: Bundle = { ...patient, entry: [...patient.entry, ...drafts.map((draft) => ({ resource: { ...draft, status: 'active' } }))] };
    const result = await evaluatePatient(prepared, stored, { evaluatedAt: AT, hook: 'order-select', context });
    expect((result.decisions[0] as CardDecision).card.summary).toBe('Test medication ordered with 1 active (age 55)');
  });

  it('leaves out, on order-select, a card about a draft order other than the selected ones (it was answered when that one was selected)', async () => {
    const drafts = (context.draftOrders as Bundle).entry;
    const other = { resourceType: 'MedicationRequest', id: 'draft-other', status: 'draft', intent: 'order' };
    const withOther = { ...context, draftOrders: { ...(context.draftOrders as Bundle), entry: [...drafts, { resource: other }] } };
    const result = await evaluatePatient(prepared, patient, { evaluatedAt: AT, hook: 'order-select', context: { ...withOther, selections: ['MedicationRequest/draft-other'] } });
    expect(result.decisions).toEqual([]);
    // Without selections (order-sign) the card stands, naming no selection.
    const signed = await evaluatePatient(prepared, patient, { evaluatedAt: AT, hook: 'order-sign', context: { ...withOther, selections: undefined } });
    expect((signed.decisions[0] as CardDecision).card.extension?.[SELECTIONS_EXTENSION]).toBeUndefined();
  });

  it('fires nothing without the draft order, and never runs draft rules', async () => {
    const result = await evaluatePatient(prepared, patient, { evaluatedAt: AT, hook: 'order-select', context: { ...context, draftOrders: { resourceType: 'Bundle', entry: [] } } });
    expect(result.decisions).toEqual([]);
    const ruleIds = result.errors.map((e) => e.ruleId);
    expect(ruleIds).not.toContain('test-draft-rule');
  });

  it('keeps a failing rule as data without hiding the others', async () => {
    const result = await evaluatePatient(prepared, patient, { evaluatedAt: AT, hook: 'order-select', context });
    expect(result.errors).toEqual([expect.objectContaining({ ruleId: 'test-faulty', library: 'Faulty' })]);
    expect(result.errors[0]?.message).toContain('SingletonFrom');
    expect(result.decisions.map((d) => d.ruleId)).toEqual(['test-draft-order']);
  });

  it('produces alerts and care gaps for batch rules, due dates from CQL', async () => {
    const result = await evaluatePatient(prepared, patient, { evaluatedAt: AT });
    expect(result.decisions).toEqual([
      expect.objectContaining({ kind: 'alert', ruleId: 'test-birthday-gap', severity: 'info', message: 'Adult aged 55' }),
      expect.objectContaining({ kind: 'care-gap', ruleId: 'test-birthday-gap', guideline: 'Test guideline 1', missing: 'Annual check', dueDate: '2027-06-15' }),
    ]);
  });

  it('uses evaluatedAt as CQL Now(): the age bound moves with it', async () => {
    const child = { ...patient, entry: patient.entry.map((e) => (e.resource.resourceType === 'Patient' ? { resource: { ...e.resource, birthDate: '2008-03-02' } } : e)) };
    const dayBefore18 = await evaluatePatient(prepared, child, { evaluatedAt: '2026-03-01T12:00:00Z' });
    const on18 = await evaluatePatient(prepared, child, { evaluatedAt: '2026-03-02T12:00:00Z' });
    expect(dayBefore18.decisions).toEqual([]);
    expect(on18.decisions.map((d) => d.kind)).toEqual(['alert', 'care-gap']);
  });

  it('rejects an evaluatedAt without a time zone, and patient data without a patient', async () => {
    await expect(evaluatePatient(prepared, patient, { evaluatedAt: '2026-03-01T12:00:00' })).rejects.toBeInstanceOf(CairnError);
    await expect(evaluatePatient(prepared, { resourceType: 'Bundle', entry: [] }, { evaluatedAt: AT })).rejects.toThrow(/no Patient/);
  });

  it('gives byte-identical output for the same inputs (property)', async () => {
    const instants = fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2040-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString());
    const drafts = fc.array(fc.constantFrom('1049621', '197591', '000000'), { maxLength: 3 });
    const actives = fc.array(fc.constantFrom('1049621', '197591', '000000'), { maxLength: 3 });
    await fc.assert(
      fc.asyncProperty(instants, drafts, actives, fc.constantFrom<'order-select' | 'order-sign' | undefined>('order-select', 'order-sign', undefined), async (at, draftCodes, activeCodes, hook) => {
        const med = (id: string, status: string, code: string): Resource => ({
          resourceType: 'MedicationRequest', id, status, intent: 'order', subject: { reference: 'Patient/p1' },
          medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code }] },
        });
        const data: Bundle = { resourceType: 'Bundle', entry: [patient.entry[0]!, ...activeCodes.map((c, i) => ({ resource: med(`a${i}`, 'active', c) }))] };
        const ctx = { patientId: 'p1', userId: 'Practitioner/1', draftOrders: { resourceType: 'Bundle', entry: draftCodes.map((c, i) => ({ resource: med(`d${i}`, 'draft', c) })) } };
        const request = hook ? { evaluatedAt: at, hook, context: ctx } : { evaluatedAt: at };
        const first = JSON.stringify(await evaluatePatient(prepared, data, request));
        const second = JSON.stringify(await evaluatePatient(prepared, structuredClone(data), structuredClone(request)));
        expect(second).toBe(first);
        const fired = hook !== undefined && draftCodes.some((c) => c !== '000000') && activeCodes.some((c) => c !== '000000');
        expect(first.includes('"kind":"card"')).toBe(fired);
      }),
      { numRuns: 40 },
    );
  });
});

describe('system actions', () => {
  it('returns the actions a rule asks for in a hook, rendered from its facts', async () => {
    const { copyKnowledge } = await import('../support/knowledge.ts');
    const { writeFile } = await import('node:fs/promises');
    const root = await copyKnowledge();
    await writeFile(path.join(root, 'rules/test-system-action.json'), JSON.stringify({
      id: 'test-system-action', version: '1.0.0', title: 'Task on order', description: 'Creates a review task.', status: 'active',
      source: { label: 'Cairn test fixture' }, runs: { hooks: ['order-select'] },
      cql: { library: 'TestOrders', facts: ['Has Draft Test Order', 'Age'] },
      conditions: { all: [{ fact: 'Has Draft Test Order', operator: 'equal', value: true }] },
      outcome: { systemActions: [{ type: 'create', description: 'Create a review task', resource: { resourceType: 'Task', status: 'requested', intent: 'order', description: 'Review order for patient aged {{Age}}' } }] },
    }));
    const withAction = await loadPreparedKnowledge(root, testDeps());
    const result = await evaluatePatient(withAction, patient, { evaluatedAt: AT, hook: 'order-select', context, ruleIds: ['test-system-action'] });
    expect(result.decisions).toEqual([expect.objectContaining({
      kind: 'system-action',
      ruleId: 'test-system-action',
      actions: [{ type: 'create', description: 'Create a review task', resource: { resourceType: 'Task', status: 'requested', intent: 'order', description: 'Review order for patient aged 55' } }],
    })]);
  });
});

describe('what a patient evaluation computes', () => {
  it('computes only the facts the conditions read until the rule fires, then the rest (and all of them for a trace)', async () => {
    const { copyKnowledge } = await import('../support/knowledge.ts');
    const { writeFile } = await import('node:fs/promises');
    const root = await copyKnowledge();
    await writeFile(path.join(root, 'cql/LazyFacts.cql'), [
      "library LazyFacts version '1.0.0'",
      "using FHIR version '4.0.1'",
      "include FHIRHelpers version '4.0.1' called FHIRHelpers",
      'context Patient',
      'define "Is Adult": AgeInYears() >= 18',
      'define "Adult Age": 18',
      // Fails for every patient: read only to fill the card.
      "define \"Display Name\": singleton from { 'a', 'b' }",
    ].join('\n'));
    await writeFile(path.join(root, 'rules/lazy-facts.json'), JSON.stringify({
      id: 'lazy-facts', version: '1.0.0', title: 'Lazy facts', description: 'Reads a failing fact only on its card.', status: 'active',
      source: { label: 'Cairn test fixture' }, runs: { hooks: ['order-select'], batch: true },
      cql: { library: 'LazyFacts', facts: ['Is Adult', 'Adult Age', 'Display Name'] },
      // A fact may also be read as a condition's value: it is computed to decide too.
      conditions: { all: [{ fact: 'Is Adult', operator: 'equal', value: true }, { fact: 'Adult Age', operator: 'equal', value: { fact: 'Adult Age' } }] },
      outcome: { alert: { severity: 'info', message: 'Adult: {{Display Name}}' } },
    }));
    const lazy = await loadPreparedKnowledge(root, testDeps());
    expect(lazy.rules.find((r) => r.loaded.rule.id === 'lazy-facts')?.decidingFacts).toEqual(['Is Adult', 'Adult Age']);
    const child = { ...patient, entry: patient.entry.map((e) => (e.resource.resourceType === 'Patient' ? { resource: { ...e.resource, birthDate: '2020-01-01' } } : e)) };
    const request = { evaluatedAt: AT, ruleIds: ['lazy-facts'] };

    const notFired = await evaluatePatient(lazy, child, request);
    expect(notFired).toMatchObject({ decisions: [], errors: [] });
    // The adult's rule fires, so the card's fact is computed, and its failure is the rule's error.
    const fired = await evaluatePatient(lazy, patient, request);
    expect(fired.decisions).toEqual([]);
    expect(fired.errors).toEqual([expect.objectContaining({ ruleId: 'lazy-facts', library: 'LazyFacts', message: expect.stringContaining('SingletonFrom') })]);
    // A trace shows every fact, fired or not.
    const traced = await evaluatePatient(lazy, child, { ...request, trace: true });
    expect(traced.errors).toEqual([expect.objectContaining({ ruleId: 'lazy-facts' })]);
  });
});

describe('what a card never carries', () => {
  it('reports a card whose summary, suggestion label or action description renders empty as a rule error, and drops empty resource fields', async () => {
    const { copyKnowledge } = await import('../support/knowledge.ts');
    const { writeFile } = await import('node:fs/promises');
    const root = await copyKnowledge();
    await writeFile(path.join(root, 'cql/BlankFacts.cql'), [
      "library BlankFacts version '1.0.0'",
      "using FHIR version '4.0.1'",
      'context Patient',
      'define "Fires": true',
      "define \"Blank\": ''",
      'define "No Ids": List<String>{}',
      'define "Nothing": null as String',
    ].join('\n'));
    const rule = (id: string, outcome: Record<string, unknown>): string => JSON.stringify({
      id, version: '1.0.0', title: id, description: 'Renders blank facts.', status: 'active',
      source: { label: 'Cairn test fixture' }, runs: { hooks: ['patient-view'] },
      cql: { library: 'BlankFacts', facts: ['Fires', 'Blank', 'No Ids', 'Nothing'] },
      conditions: { all: [{ fact: 'Fires', operator: 'equal', value: true }] },
      outcome,
    });
    const card = (fields: Record<string, unknown>): Record<string, unknown> => ({ card: { summary: 'Something to know', indicator: 'info', ...fields } });
    const create = (description: string, resource: Record<string, unknown>): Record<string, unknown> => ({ type: 'create', description, resource });
    await writeFile(path.join(root, 'rules/blank-summary.json'), rule('blank-summary', card({ summary: ' {{Blank}}{{No Ids}} ' })));
    await writeFile(path.join(root, 'rules/blank-label.json'), rule('blank-label', card({ suggestions: [{ label: '{{Blank}}' }], selectionBehavior: 'any' })));
    await writeFile(path.join(root, 'rules/blank-description.json'), rule('blank-description', { systemActions: [create('{{No Ids}}', { resourceType: 'Task' })] }));
    await writeFile(path.join(root, 'rules/null-fields.json'), rule('null-fields', {
      systemActions: [create('Create a task', { resourceType: 'Task', status: 'requested', intent: 'order', for: '{{Nothing}}', note: [{ text: '{{Blank}}' }], input: '{{No Ids}}' })],
    }));
    const blanks = await loadPreparedKnowledge(root, testDeps());
    const result = await evaluatePatient(blanks, patient, { evaluatedAt: AT, hook: 'patient-view', context: { patientId: 'p1', userId: 'Practitioner/1' }, ruleIds: ['blank-summary', 'blank-label', 'blank-description', 'null-fields'] });
    expect(result.errors).toEqual([
      expect.objectContaining({ ruleId: 'blank-description', message: expect.stringMatching(/outcome\.systemActions\[0\]\.description.*empty/) }),
      expect.objectContaining({ ruleId: 'blank-label', message: expect.stringMatching(/outcome\.card\.suggestions\[0\]\.label.*empty/) }),
      expect.objectContaining({ ruleId: 'blank-summary', message: expect.stringMatching(/outcome\.card\.summary.*empty/) }),
    ]);
    expect(result.decisions).toEqual([expect.objectContaining({
      kind: 'system-action',
      ruleId: 'null-fields',
      actions: [{ type: 'create', description: 'Create a task', resource: { resourceType: 'Task', status: 'requested', intent: 'order' } }],
    })]);
  });
});

describe('facts that are FHIR elements', () => {
  it('reads a FHIR primitive (an id, a status, a dateTime, a list of them) as its value, not as an object holding it', async () => {
    const { copyKnowledge } = await import('../support/knowledge.ts');
    const { writeFile } = await import('node:fs/promises');
    const root = await copyKnowledge();
    await writeFile(path.join(root, 'cql/PrimitiveFacts.cql'), [
      "library PrimitiveFacts version '1.0.0'",
      "using FHIR version '4.0.1'",
      'context Patient',
      'define "Fires": true',
      'define "Patient Id": Patient.id',
      'define "Gender": Patient.gender',
      'define "Birth Date": Patient.birthDate',
      'define "Order Ids": [MedicationRequest] M return M.id',
      'define "Order": First([MedicationRequest])',
      'define "Wrapped Status": { status: First([MedicationRequest]).status }',
    ].join('\n'));
    await writeFile(path.join(root, 'rules/primitive-facts.json'), JSON.stringify({
      id: 'primitive-facts', version: '1.0.0', title: 'Primitive facts', description: 'Shows FHIR primitives in card text.', status: 'active',
      source: { label: 'Cairn test fixture' }, runs: { hooks: ['patient-view'] },
      cql: { library: 'PrimitiveFacts', facts: ['Fires', 'Patient Id', 'Gender', 'Birth Date', 'Order Ids', 'Order', 'Wrapped Status'] },
      conditions: { all: [{ fact: 'Fires', operator: 'equal', value: true }] },
      outcome: { card: { summary: 'Patient {{Patient Id}} ({{Gender}}, born {{Birth Date}}): orders {{Order Ids}}', indicator: 'info' } },
    }));
    const knowledge = await loadPreparedKnowledge(root, testDeps());
    const result = await evaluatePatient(knowledge, patient, { evaluatedAt: AT, hook: 'patient-view', context: { patientId: 'p1', userId: 'Practitioner/1' }, ruleIds: ['primitive-facts'], trace: true });
    expect(result.errors).toEqual([]);
    const stored = patient.entry.map((e) => e.resource);
    const patientResource = stored.find((r) => r.resourceType === 'Patient')!;
    const orders = stored.filter((r) => r.resourceType === 'MedicationRequest');
    expect(orders.length).toBeGreaterThan(0);
    const card = result.decisions[0] as CardDecision;
    expect(card.card.summary).toBe(`Patient ${patientResource.id} (${String(patientResource.gender)}, born ${String(patientResource.birthDate)}): orders ${orders.map((o) => o.id).join(', ')}`);
    const facts = result.traces?.[0]?.facts ?? {};
    expect(facts).toMatchObject({ 'Patient Id': patientResource.id, 'Order Ids': orders.map((o) => o.id), 'Wrapped Status': { status: orders[0]!.status } });
    // A resource stays its FHIR JSON.
    expect(facts.Order).toEqual(orders[0]);
  });
});
