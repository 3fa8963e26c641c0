import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { openWarehouse } from '../../src/warehouse/database.ts';
import { ingestPaths } from '../../src/warehouse/ingest.ts';
import { NOW, snapshot, tempDir } from './helpers.ts';

/** version v of resource `type/id`: later versions have later lastUpdated and higher versionId. */
function resource(type: string, id: string, version: number): string {
  const lastUpdated = new Date(Date.UTC(2024, 0, 1 + version)).toISOString();
  const body = type === 'Patient'
    ? { resourceType: type, id, meta: { versionId: String(version), lastUpdated }, gender: version % 2 ? 'male' : 'female' }
    : { resourceType: type, id, meta: { versionId: String(version), lastUpdated }, status: 'final', code: { coding: [{ system: 'http://loinc.org', code: `${version}-1` }] }, subject: { reference: 'Patient/p0' } };
  return JSON.stringify(body);
}

const item = fc.record({ type: fc.constantFrom('Patient', 'Observation', 'Basic'), id: fc.constantFrom('p0', 'p1', 'x2', 'x3'), version: fc.integer({ min: 1, max: 6 }) });
const batches = fc.array(fc.array(item, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 4 });

describe('ingest idempotence (fast-check)', () => {
  it('any sequence of ingests leaves the state of ingesting only the latest version of each resource', async () => {
    await fc.assert(
      fc.asyncProperty(batches, async (sequence) => {
        const dir = await tempDir();
        const a = await openWarehouse({ path: join(dir, 'a.duckdb') });
        const b = await openWarehouse({ path: join(dir, 'b.duckdb') });
        try {
          const latest = new Map<string, { type: string; id: string; version: number }>();
          for (const [i, batch] of sequence.entries()) {
            const folder = join(dir, `batch-${i}`);
            await mkdir(folder);
            await writeFile(join(folder, 'data.ndjson'), batch.map((r) => resource(r.type, r.id, r.version)).join('\n'));
            await ingestPaths(a, [folder], { now: NOW });
            for (const r of batch) {
              const key = `${r.type}/${r.id}`;
              if ((latest.get(key)?.version ?? 0) < r.version) latest.set(key, r);
            }
          }
          // Ingesting everything again changes nothing.
          for (let i = 0; i < sequence.length; i++) {
            const again = await ingestPaths(a, [join(dir, `batch-${i}`)], { now: NOW });
            expect(again.loaded + again.replaced + again.deleted).toBe(0);
          }
          await mkdir(join(dir, 'latest'));
          await writeFile(join(dir, 'latest', 'data.ndjson'), [...latest.values()].map((r) => resource(r.type, r.id, r.version)).join('\n'));
          await ingestPaths(b, [join(dir, 'latest')], { now: NOW });
          expect(await snapshot(a)).toEqual(await snapshot(b));
        } finally {
          a.close();
          b.close();
        }
      }),
      { numRuns: 12 },
    );
  });
});
