import { describe, expect, it } from 'vitest';
import { secondsMeetingP99, type PacedOutcome } from '../../bench/cds-hooks-load.ts';

const call = (scheduledMs: number, latencyMs: number, status: PacedOutcome['status'] = 200): PacedOutcome => ({ status, cards: 1, latencyMs, scheduledMs });

/** The load bench says whether its tail came in spells (a few bad seconds) or throughout. */
describe('secondsMeetingP99', () => {
  it('judges each second by its own p99, placing calls by their scheduled send', () => {
    const quick = Array.from({ length: 200 }, (_, i) => call(i * 5, 8));
    // Second 1: 3 of 200 calls slow, so its p99 (the 198th) is slow too; second 2: 1 of 200, its p99 is fine.
    const spell = Array.from({ length: 200 }, (_, i) => call(1000 + i * 5, i < 3 ? 60 : 9));
    const blip = Array.from({ length: 200 }, (_, i) => call(2000 + i * 5, i === 7 ? 300 : 9));
    expect(secondsMeetingP99([...quick, ...spell, ...blip])).toEqual({ met: 2, of: 3 });
  });

  it('leaves out calls never sent (overload) and counts a second at exactly the target as missed', () => {
    expect(secondsMeetingP99([call(10, 0, 'overload'), call(1500, 25), call(1600, 25)])).toEqual({ met: 0, of: 1 });
    expect(secondsMeetingP99([])).toEqual({ met: 0, of: 0 });
  });
});
