import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { beforeAll, describe, expect, it } from 'vitest';
import { orderSignRequest } from '../../bench/cds-hooks-load.ts';
import { evaluateFromPrefetch } from '../../src/cds-hooks/prefetch-evaluation.ts';
import { describeServices, type CdsService } from '../../src/cds-hooks/services.ts';
import { loadPreparedKnowledge } from '../../src/evaluate/knowledge-service.ts';
import type { PreparedKnowledge } from '../../src/evaluate/prepare.ts';
import { PROJECT_ROOT, testDeps } from '../support/knowledge.ts';

/**
 * A service call's data must die young: an evaluation worker answers one call after another, and
 * anything a finished call leaves reachable is copied by the next young-generation collection and
 * then promoted, so every call's ~170 KB of parsed prefetch became old-generation garbage (zod's
 * superRefine kept each parsed body reachable: scavenges of 6-20 ms, frequent mark-compacts).
 * Measured as old-space growth across calls with young-generation collections between them.
 */

const AT = '2026-03-01T12:00:00.000Z';
let prepared: PreparedKnowledge;
let service: CdsService;
let body: Uint8Array;

beforeAll(async () => {
  prepared = await loadPreparedKnowledge(PROJECT_ROOT, testDeps());
  service = describeServices(prepared).find((s) => s.id === 'medication-safety-order-sign') as CdsService;
  body = new TextEncoder().encode(orderSignRequest(service.prefetch, AT).body);
}, 120_000);

/** V8's collector, reached without starting node with --expose-gc. */
function collector(): (options?: { type: 'minor' | 'major' }) => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as (options?: { type: 'minor' | 'major' }) => void;
}

const oldSpaceUsed = (): number => getHeapSpaceStatistics().find((space) => space.space_name === 'old_space')?.space_used_size ?? 0;

describe('a service call leaves nothing behind', () => {
  it('keeps old-space growth per call far below the size of its parsed body when young collections run between calls', async () => {
    const gc = collector();
    const call = async (): Promise<void> => {
      expect((await evaluateFromPrefetch(prepared, service, body, AT)).kind).toBe('evaluated');
    };
    for (let i = 0; i < 30; i++) await call();
    gc({ type: 'major' });
    const before = oldSpaceUsed();
    const calls = 30;
    for (let i = 0; i < calls; i++) {
      await call();
      gc({ type: 'minor' });
      gc({ type: 'minor' });
    }
    const perCallKb = (oldSpaceUsed() - before) / 1024 / calls;
    // The parsed body alone is ~170 KB; what a call may leave (caches keyed by its records) is ~10.
    expect(perCallKb).toBeLessThan(60);
  }, 120_000);
});
