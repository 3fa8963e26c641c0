import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReplayCache, type ReplayClaim } from '../../../src/cds-hooks/auth/replay.ts';

describe('ReplayCache', () => {
  it.each<{ name: string; max: number; steps: [key: string, expiresAt: number, now: number, want: ReplayClaim][]; size: number }>([
    { name: 'first use is accepted, a live repeat is a replay', max: 10, steps: [['a', 100, 0, 'ok'], ['a', 100, 50, 'replayed']], size: 1 },
    { name: 'a key may be reused after its entry expired', max: 10, steps: [['a', 100, 0, 'ok'], ['a', 300, 100, 'ok']], size: 1 },
    { name: 'full of live entries refuses new keys', max: 2, steps: [['a', 100, 0, 'ok'], ['b', 100, 0, 'ok'], ['c', 100, 0, 'full']], size: 2 },
    { name: 'a full cache frees expired entries', max: 2, steps: [['a', 10, 0, 'ok'], ['b', 100, 0, 'ok'], ['c', 100, 10, 'ok'], ['b', 100, 10, 'replayed']], size: 2 },
    { name: 'expired entries are swept as time passes', max: 10, steps: [['a', 5, 0, 'ok'], ['b', 5, 0, 'ok'], ['c', 50, 6, 'ok']], size: 1 },
  ])('$name', ({ max, steps, size }) => {
    const cache = new ReplayCache(max);
    for (const [key, expiresAt, now, want] of steps) expect(cache.claim(key, expiresAt, now), `${key} at ${now}`).toBe(want);
    expect(cache.size).toBe(size);
  });

  it('answers every claim as a plain map of live entries would, and holds nothing expired for longer than a second', () => {
    // Few keys and quarter-second steps, so keys expire, are claimed again within a second, and meet their old second's sweep.
    const quarters = (max: number) => fc.integer({ min: 0, max }).map((n) => n / 4);
    const step = fc.record({ key: fc.constantFrom('a', 'b', 'c'), lifetime: quarters(16).map((t) => t + 0.25), advance: quarters(8) });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const cache = new ReplayCache(1000);
        const model = new Map<string, number>();
        let now = 1000;
        for (const { key, lifetime, advance } of steps) {
          now += advance;
          const live = (model.get(key) ?? Number.NEGATIVE_INFINITY) > now;
          expect(cache.claim(key, now + lifetime, now)).toBe(live ? 'replayed' : 'ok');
          if (!live) model.set(key, now + lifetime);
          const liveCount = [...model.values()].filter((expiresAt) => expiresAt > now).length;
          const recent = [...model.values()].filter((expiresAt) => expiresAt <= now && expiresAt > Math.floor(now) - 1).length;
          expect(cache.size).toBeGreaterThanOrEqual(liveCount);
          expect(cache.size).toBeLessThanOrEqual(liveCount + recent);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
