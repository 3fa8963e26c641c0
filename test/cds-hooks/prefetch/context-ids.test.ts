import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HookId } from '../../../src/domain/hooks.ts';
import { callIdentifiers, parseHookRequest } from '../../../src/cds-hooks/request.ts';

/**
 * The context ids that end up in FHIR URLs (`Patient/{{context.patientId}}`, `{{context.userId}}`,
 * `Encounter/{{context.encounterId}}`) must be FHIR ids: `.` and `..` match the id grammar's
 * characters but are URL dot segments (`Patient/.` reads `Patient/`, a search over every patient).
 */
const request = (hook: HookId, context: Record<string, unknown>): unknown => ({ hook, hookInstance: 'x', context: { userId: 'Practitioner/u1', patientId: 'p1', ...context } });
const fieldsOf = (hook: HookId, context: Record<string, unknown>): string[] => {
  const parsed = parseHookRequest(request(hook, context), hook);
  return parsed.ok ? [] : parsed.issues.map((i) => i.field);
};

describe('context ids', () => {
  it.each([
    { name: 'a bare id', input: '123', want: '123' },
    { name: 'a Patient/ reference (tolerated, as opioid-cds-r4 sends it)', input: 'Patient/123', want: '123' },
    { name: 'dots and dashes inside an id', input: 'example-rec-11.v2', want: 'example-rec-11.v2' },
    { name: '64 characters', input: 'a'.repeat(64), want: 'a'.repeat(64) },
    { name: 'surrounding spaces', input: ' 1288992 ', want: '1288992' },
  ])('patientId: accepts $name', ({ input, want }) => {
    const parsed = parseHookRequest(request('patient-view', { patientId: input }), 'patient-view');
    expect(parsed.ok ? parsed.context.patientId : parsed.issues).toBe(want);
  });

  it.each([
    { name: 'a single dot', input: '.' },
    { name: 'two dots', input: '..' },
    { name: 'Patient/.', input: 'Patient/.' },
    { name: 'Patient/..', input: 'Patient/..' },
    { name: 'an empty id after the prefix', input: 'Patient/' },
    { name: 'a slash', input: 'a/b' },
    { name: 'a path that climbs', input: '../Observation' },
    { name: 'a percent-encoded dot segment', input: '%2e%2e' },
    { name: 'a query', input: '1?_include=*' },
    { name: 'a space', input: 'a b' },
    { name: '65 characters', input: 'a'.repeat(65) },
    { name: 'a full URL', input: 'https://ehr.example.org/fhir/Patient/1' },
  ])('patientId: refuses $name with a 400 naming context.patientId', ({ input }) => {
    expect(fieldsOf('patient-view', { patientId: input })).toEqual(['context.patientId']);
  });

  it.each([
    { hook: 'patient-view' as const, encounterId: '..' },
    { hook: 'patient-view' as const, encounterId: 'Encounter/.' },
    { hook: 'encounter-start' as const, encounterId: 'a/b' },
    { hook: 'encounter-discharge' as const, encounterId: 'Encounter/..' },
  ])('encounterId: refuses "$encounterId" in $hook', ({ hook, encounterId }) => {
    expect(fieldsOf(hook, { encounterId })).toEqual(['context.encounterId']);
  });

  it('encounterId: accepts a bare id or an Encounter/ reference, as the bare id', () => {
    for (const encounterId of ['456', 'Encounter/456']) {
      const parsed = parseHookRequest(request('encounter-start', { encounterId }), 'encounter-start');
      expect(parsed.ok ? parsed.context.encounterId : parsed.issues).toBe('456');
    }
  });

  it.each(['Practitioner/.', 'Practitioner/..', 'PractitionerRole/..', 'Practitioner/a/b', 'Device/1'])('userId: refuses %s', (userId) => {
    expect(fieldsOf('patient-view', { userId })).toEqual(['context.userId']);
  });
});

describe('the ids a refused call is audited under', () => {
  it('are read from an invalid body: its hookInstance and patient id where well formed, else empty', () => {
    const noUser = parseHookRequest({ hook: 'patient-view', hookInstance: 'call-1', context: { patientId: 'Patient/p1' } }, 'patient-view');
    expect(noUser).toMatchObject({ ok: false, hookInstance: 'call-1', patientId: 'p1' });
    const wrongHook = parseHookRequest(request('order-sign', {}), 'patient-view');
    expect(wrongHook).toMatchObject({ ok: false, hookInstance: 'x', patientId: 'p1' });
    const badIds = parseHookRequest({ hook: 'patient-view', hookInstance: 'y'.repeat(257), context: { patientId: '..' } }, 'patient-view');
    expect(badIds).toMatchObject({ ok: false, hookInstance: '', patientId: '' });
  });

  it('refuses a hookInstance over 256 characters (a UUID is 36) and accepts one of 256', () => {
    expect(parseHookRequest({ ...(request('patient-view', {}) as object), hookInstance: 'h'.repeat(256) }, 'patient-view').ok).toBe(true);
    const long = parseHookRequest({ ...(request('patient-view', {}) as object), hookInstance: 'h'.repeat(257) }, 'patient-view');
    expect(long.ok ? [] : long.issues.map((i) => i.field)).toEqual(['hookInstance']);
  });

  it('never throw, whatever the body, and are strings', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), fc.record({ hookInstance: fc.jsonValue(), context: fc.oneof(fc.jsonValue(), fc.record({ patientId: fc.jsonValue() })) })), (body) => {
        const ids = callIdentifiers(body);
        expect(typeof ids.hookInstance).toBe('string');
        expect(typeof ids.patientId).toBe('string');
      }),
    );
  });
});

describe('who the user may be, per hook', () => {
  it.each([
    { hook: 'order-sign' as const, userId: 'Patient/1' },
    { hook: 'order-select' as const, userId: 'RelatedPerson/1' },
    { hook: 'encounter-start' as const, userId: 'Patient/1' },
    { hook: 'encounter-discharge' as const, userId: 'RelatedPerson/1' },
  ])('refuses $userId in $hook (clinicians only), naming context.userId', ({ hook, userId }) => {
    const parsed = parseHookRequest({ hook, hookInstance: 'x', context: { userId, patientId: 'p1', encounterId: 'e1', draftOrders: { resourceType: 'Bundle' }, selections: ['MedicationRequest/1'] } }, hook);
    expect(parsed.ok ? [] : parsed.issues.map((i) => i.field)).toContain('context.userId');
    expect(parsed.ok ? '' : parsed.issues.find((i) => i.field === 'context.userId')?.message).toMatch(/Practitioner or PractitionerRole/);
  });

  it.each([
    { hook: 'patient-view' as const, userId: 'Patient/1' },
    { hook: 'patient-view' as const, userId: 'RelatedPerson/1' },
    { hook: 'appointment-book' as const, userId: 'Patient/1' },
    { hook: 'order-sign' as const, userId: 'PractitionerRole/1' },
  ])('accepts $userId in $hook', ({ hook, userId }) => {
    const parsed = parseHookRequest({ hook, hookInstance: 'x', context: { userId, patientId: 'p1', draftOrders: { resourceType: 'Bundle' }, appointments: { resourceType: 'Bundle' } } }, hook);
    expect(parsed.ok ? [] : parsed.issues).toEqual([]);
  });
});

describe('nesting', () => {
  /** nested builds `levels` objects, each inside the last, without recursion. */
  const nested = (levels: number): Record<string, unknown> => {
    let value: Record<string, unknown> = {};
    for (let i = 1; i < levels; i++) value = { a: value };
    return value;
  };

  it('accepts 100 levels and refuses 101 in the context; prefetch is not walked', () => {
    const body = (context: unknown, prefetch?: unknown) => ({ hook: 'patient-view', hookInstance: 'x', context: { userId: 'Practitioner/u1', patientId: 'p1', deep: context }, ...(prefetch ? { prefetch } : {}) });
    // The context object itself is the first level.
    expect(parseHookRequest(body(nested(99)), 'patient-view').ok).toBe(true);
    const tooDeep = parseHookRequest(body(nested(100)), 'patient-view');
    expect(tooDeep.ok ? [] : tooDeep.issues.map((i) => i.field)).toEqual(['context']);
    expect(parseHookRequest(body({}, { patient: nested(101) }), 'patient-view').ok).toBe(true);
  });

  it('refuses 50,000 levels without overflowing the stack', () => {
    const parsed = parseHookRequest({ hook: 'patient-view', hookInstance: 'x', context: { userId: 'Practitioner/u1', patientId: 'p1', deep: nested(50_000) } }, 'patient-view');
    expect(parsed).toMatchObject({ ok: false, issues: [{ field: 'context' }], hookInstance: 'x', patientId: 'p1' });
  });
});
