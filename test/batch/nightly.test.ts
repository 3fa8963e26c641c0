import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runNightly } from '../../src/batch/nightly.ts';
import { runBatch } from '../../src/batch/run-batch.ts';
import type * as RunBatchModule from '../../src/batch/run-batch.ts';
import { loadPreparedKnowledge } from '../../src/evaluate/knowledge-service.ts';
import type { PreparedKnowledge } from '../../src/evaluate/prepare.ts';
import { generatePopulation } from '../../src/synthetic/generate.ts';
import { queryRows } from '../../src/warehouse/database.ts';
import { PROJECT_ROOT, testDeps } from '../support/knowledge.ts';
import { tempDir, tempWarehouse } from '../warehouse/helpers.ts';

// The real runBatch runs; the wrapper only records the options the nightly job gives it.
vi.mock('../../src/batch/run-batch.ts', async (importOriginal) => {
  const actual: typeof RunBatchModule = await importOriginal();
  return { ...actual, runBatch: vi.fn(actual.runBatch) };
});

let prepared: PreparedKnowledge;
let server: Server | undefined;

beforeAll(async () => {
  prepared = await loadPreparedKnowledge(PROJECT_ROOT, testDeps());
});
afterEach(async () => {
  if (server) await new Promise((r) => server!.close(r));
  server = undefined;
});

describe('the nightly job', () => {
  it('ingests configured folders first, then evaluates what it ingested', async () => {
    const out = await tempDir();
    await generatePopulation({ patients: 30, seed: 11, outDir: out });
    const warehouse = await tempWarehouse();
    const { ingests, run } = await runNightly(warehouse, prepared, { sources: { paths: [out] }, evaluatedAt: '2026-03-01T02:00:00Z', now: () => new Date('2026-03-01T02:00:00Z') });
    expect(ingests[0]?.loaded).toBeGreaterThan(30);
    expect(run.patients).toBe(30);
  });

  it('evaluates with meta.profile trusted only when told to (configuration batch.trustMetaProfile)', async () => {
    const warehouse = await tempWarehouse();
    const at = '2026-03-01T02:00:00Z';
    for (const trustMetaProfile of [undefined, false, true]) {
      vi.mocked(runBatch).mockClear();
      await runNightly(warehouse, prepared, { sources: {}, evaluatedAt: at, now: () => new Date(at), ...(trustMetaProfile === undefined ? {} : { trustMetaProfile }) });
      expect(vi.mocked(runBatch).mock.calls.map((call) => call[2].trustMetaProfile)).toEqual([trustMetaProfile === true]);
    }
  });

  it('asks a Bulk Data server only for changes since its previous export, with the token from a file', async () => {
    const requests: { url: string; auth: string | undefined }[] = [];
    let exports = 0;
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      requests.push({ url: `${url.pathname}${url.search}`, auth: req.headers.authorization });
      const base = `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
      if (url.pathname === '/fhir/$export') return void res.writeHead(202, { 'Content-Location': `${base}/status/${++exports}` }).end();
      if (url.pathname.startsWith('/status/') && req.method === 'GET') {
        return void res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({
          transactionTime: `2026-03-0${exports}T00:00:00Z`, request: `${base}/fhir/$export`, requiresAccessToken: true,
          output: [{ type: 'Patient', url: `${base}/files/patients` }], error: [],
        }));
      }
      if (url.pathname.startsWith('/status/')) return void res.writeHead(202).end();
      if (url.pathname === '/files/patients') return void res.writeHead(200).end(`{"resourceType":"Patient","id":"n${exports}","gender":"female","birthDate":"1960-01-01"}\n`);
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
    const tokenFile = path.join(await tempDir(), 'token');
    await writeFile(tokenFile, 'secret-token\n');
    const warehouse = await tempWarehouse();
    const sources = { bulk: { url: base, tokenFile } };
    await runNightly(warehouse, prepared, { sources, evaluatedAt: '2026-03-01T02:00:00Z', now: () => new Date('2026-03-01T02:00:00Z') });
    const second = await runNightly(warehouse, prepared, { sources, evaluatedAt: '2026-03-02T02:00:00Z', now: () => new Date('2026-03-02T02:00:00Z') });
    const kickoffs = requests.filter((r) => r.url.startsWith('/fhir/$export')).map((r) => r.url);
    expect(kickoffs).toEqual(['/fhir/$export', '/fhir/$export?_since=2026-03-01T00%3A00%3A00Z']);
    expect(requests.every((r) => r.auth === 'Bearer secret-token')).toBe(true);
    expect(second.run.patients).toBe(2);
    const ids = await queryRows(warehouse.connection, 'SELECT id FROM patient ORDER BY id');
    expect(ids.map((r) => r.id)).toEqual(['n1', 'n2']);
  });
});
