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
});
