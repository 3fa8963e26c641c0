import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openWarehouse } from '../../src/warehouse/database.ts';
import { ensureDemoPopulation } from '../../src/warehouse/demo.ts';
import { ingestPaths } from '../../src/warehouse/ingest.ts';
import { countPatients, streamPatients } from '../../src/warehouse/read.ts';
import { generatePopulation } from '../../src/synthetic/generate.ts';
import { FIXTURES, NOW, tempDir, tempWarehouse } from './helpers.ts';

describe('read side', () => {
  it('streams every patient once, in chunks, with the Patient first and all their resources', async () => {
    const dir = await tempDir();
    const stats = await generatePopulation({ patients: 120, seed: 5, outDir: dir });
    const warehouse = await tempWarehouse();
    await ingestPaths(warehouse, [dir], { now: NOW });
    expect(await countPatients(warehouse)).toBe(120);
    const seen = new Set<string>();
    let resources = 0;
    const sizes: number[] = [];
    for await (const chunk of streamPatients(warehouse, { chunkSize: 50 })) {
      sizes.push(chunk.length);
      for (const record of chunk) {
        expect(seen.has(record.patientId)).toBe(false);
        seen.add(record.patientId);
        expect(record.resources[0]).toMatchObject({ resourceType: 'Patient', id: record.patientId });
        for (const r of record.resources.slice(1)) expect(JSON.stringify(r)).toContain(`Patient/${record.patientId}`);
        resources += record.resources.length;
      }
    }
    expect(sizes).toEqual([50, 50, 20]);
    expect(seen.size).toBe(120);
    const perPatient = stats.resources - (stats.byType.Practitioner ?? 0) - (stats.byType.Organization ?? 0);
    expect(resources).toBe(perPatient);
  });

  it('opens read-only next to no writer and refuses to ingest through it', async () => {
    const dir = await tempDir();
    const path = join(dir, 'ro.duckdb');
    const writer = await openWarehouse({ path });
    await ingestPaths(writer, [join(FIXTURES, 'versions.ndjson')], { now: NOW });
    writer.close();
    const reader = await openWarehouse({ path, readOnly: true });
    try {
      await expect(ingestPaths(reader, [join(FIXTURES, 'versions.ndjson')], { now: NOW })).rejects.toMatchObject({ code: 'WAREHOUSE_FAILED' });
    } finally {
      reader.close();
    }
    await expect(openWarehouse({ path: join(dir, 'missing.duckdb'), readOnly: true })).rejects.toMatchObject({ code: 'WAREHOUSE_FAILED' });
  });

  it('ensureDemoPopulation fills an empty database once', async () => {
    const path = join(await tempDir(), 'demo.duckdb');
    const first = await ensureDemoPopulation({ path, now: NOW, patients: 40 });
    expect(first?.loaded).toBeGreaterThan(40);
    expect(await ensureDemoPopulation({ path, now: NOW, patients: 40 })).toBeNull();
  });
});
