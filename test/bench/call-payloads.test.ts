import { describe, expect, it } from 'vitest';
import { callPayloads, orderSignRequest } from '../../bench/cds-hooks-load.ts';

/** The load benches send each call with its own hookInstance, as an EHR does, and otherwise the same body. */
describe('load bench call payloads', () => {
  const { body } = orderSignRequest({ patient: 'Patient/{{context.patientId}}', medicationRequests: 'MedicationRequest?patient={{context.patientId}}' }, '2026-03-01T12:00:00.000Z');
  const payloadOf = callPayloads(body);

  it('numbers the hookInstance per call and changes nothing else', () => {
    const original = JSON.parse(body) as { hookInstance: string };
    const instances = [0, 1, 255, 4000, 2 ** 40].map((n) => {
      const sent = JSON.parse(Buffer.concat(payloadOf(n)).toString('utf8')) as { hookInstance: string };
      expect(sent.hookInstance).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect({ ...sent, hookInstance: original.hookInstance }).toEqual(original);
      return sent.hookInstance;
    });
    expect(new Set(instances).size).toBe(instances.length);
  });

  it('leaves an earlier call\'s payload as it was (the client may still be writing it)', () => {
    const first = payloadOf(1);
    const copy = Buffer.concat(first);
    payloadOf(2);
    expect(Buffer.concat(first).equals(copy)).toBe(true);
  });
});
