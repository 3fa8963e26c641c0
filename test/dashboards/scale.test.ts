/**
 * Scale: a worklist page over 100,000 care gaps must stay usable, and a 1,000,000-row export must
 * stream without holding the list in memory. Times and memory are printed; assertions are loose
 * (shared CI machines), catching only order-of-magnitude regressions.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/http/app.ts';
import { parseDashboardAccess, hashApiKey } from '../../src/dashboards/access.ts';
import { createClientAuthenticator, parseAuthConfig } from '../../src/cds-hooks/auth/index.ts';
import { createCdsStore } from '../../src/warehouse/cds-store.ts';
import { beginRun } from '../../src/warehouse/results.ts';
import type { Warehouse } from '../../src/warehouse/database.ts';
import type { FastifyInstance } from 'fastify';
import { exportJWK, generateKeyPair } from 'jose';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { openWarehouse } from '../../src/warehouse/database.ts';

const KEY = 'scale-admin-key-0123456789';
const GAPS = 100_000;
const ALERTS = 1_000_000;
let warehouse: Warehouse;
let app: FastifyInstance;
let base: string;
let dir: string;

async function fill(w: Warehouse): Promise<void> {
  const c = w.connection;
  const writer = await beginRun(w, 'schema-only'); // creates the batch tables
  await writer.abandon();
  await c.run(`INSERT INTO practitioner (resource_type, id, status, resource)
    SELECT 'Practitioner', 'pr-' || i, 'active', json_object('resourceType', 'Practitioner', 'id', 'pr-' || i, 'name', json_array(json_object('family', 'Doc' || i, 'prefix', json_array('Dr.'))))::VARCHAR
    FROM range(200) t(i)`);
  await c.run(`INSERT INTO patient (resource_type, id, patient_id, status, resource, gender, birth_date)
    SELECT 'Patient', 'p-' || i, 'p-' || i, 'active',
      json_object('resourceType', 'Patient', 'id', 'p-' || i, 'name', json_array(json_object('family', 'Fam' || i, 'given', json_array('Given' || (i % 97)))))::VARCHAR,
      CASE WHEN i % 2 = 0 THEN 'female' ELSE 'male' END, DATE '1940-01-01' + (i * 7 % 25000)::INTEGER
    FROM range(50000) t(i)`);
  await c.run(`INSERT INTO encounter (resource_type, id, patient_id, status, effective_start, resource)
    SELECT 'Encounter', 'e-' || i, 'p-' || (i % 50000), 'finished', TIMESTAMP '2025-01-01' + to_days((i % 300)::INTEGER),
      json_object('resourceType', 'Encounter', 'id', 'e-' || i, 'participant', json_array(json_object('individual', json_object('reference', 'Practitioner/pr-' || (i % 200)))))::VARCHAR
    FROM range(100000) t(i)`);
  await c.run(`INSERT INTO batch_run (run_id, started_at, finished_at, evaluated_at, knowledge_version, data_snapshot, patients, alerts, care_gaps, errors, status) VALUES ('run-big', TIMESTAMPTZ '2026-03-01 02:00:00+00', TIMESTAMPTZ '2026-03-01 03:00:00+00', TIMESTAMPTZ '2026-03-01 02:00:00+00', 'k1', 'synthetic', 50000, ${ALERTS}, ${GAPS}, 0, 'published')`);
  await c.run(`INSERT INTO batch_care_gap (run_id, id, patient_id, rule_id, rule_version, measure, guideline, missing, due_date) SELECT 'run-big', 'gap-' || lpad(i::VARCHAR, 7, '0'), 'p-' || (i % 50000), 'rule-' || (i % 12), '1.0.0', NULL,
      'Guideline ' || (i % 12), 'Missing thing ' || (i % 12), DATE '2025-01-01' + (i % 700)::INTEGER FROM range(${GAPS}) t(i)`);
  await c.run(`INSERT INTO batch_alert (run_id, id, patient_id, rule_id, rule_version, severity, message, category) SELECT 'run-big', 'alert-' || lpad(i::VARCHAR, 8, '0'), 'p-' || (i % 50000), 'rule-' || (i % 7), '1.0.0',
      CASE i % 3 WHEN 0 THEN 'critical' WHEN 1 THEN 'warning' ELSE 'info' END, 'Message, with "quotes" ' || i, NULL FROM range(${ALERTS}) t(i)`);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-scale-'));
  warehouse = await openWarehouse({ path: path.join(dir, 'scale.duckdb') });
  const t0 = performance.now();
  await fill(warehouse);
  console.log(`scale: filled ${GAPS} care gaps and ${ALERTS} alerts in ${Math.round(performance.now() - t0)} ms`);
  const ehr = await generateKeyPair('ES384');
  const jwk = { ...(await exportJWK(ehr.publicKey)), kid: 'k', alg: 'ES384' };
  const authenticator = createClientAuthenticator(parseAuthConfig({ mode: 'required', clients: [{ iss: 'https://ehr.test', jwks: { keys: [jwk] } }] }), { now: Date.now });
  app = await buildApp({
    corsOrigins: [], bodyLimit: 1 << 20, logger: { level: 'error' }, // failures print
    cdsHooks: { knowledge: () => { throw new Error('unused'); }, authenticator, store: await createCdsStore(warehouse), now: () => new Date(), publicBaseUrl: 'http://127.0.0.1' },
    dashboards: { warehouse, access: parseDashboardAccess({ users: [{ name: 'admin', role: 'admin', tokenSha256: hashApiKey(KEY) }] }), now: () => new Date('2026-03-02T00:00:00Z') },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await app?.close();
  warehouse?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function timed(url: string): Promise<{ ms: number; body: { total: number; items: Record<string, unknown>[] } }> {
  const t0 = performance.now();
  const response = await fetch(`${base}${url}`, { headers: { authorization: `Bearer ${KEY}` } });
  const body = (await response.json()) as { total: number; items: Record<string, unknown>[] };
  expect(response.status, JSON.stringify(body).slice(0, 300)).toBe(200);
  return { ms: performance.now() - t0, body };
}

describe('worklist at 100,000 care gaps', () => {
  it('serves first, deep, filtered and re-sorted pages fast enough to use', async () => {
    await timed('/api/care-gaps?limit=1'); // first call derives report_patient (attribution)
    const cases = [
      '/api/care-gaps?limit=50',
      '/api/care-gaps?limit=50&offset=99950',
      '/api/care-gaps?limit=50&sort=practitioner&order=desc&offset=5000',
      '/api/care-gaps?limit=50&practitioner=pr-17&ageMin=40&ageMax=75&dueFrom=2025-06-01&rule=rule-3,rule-5',
      '/api/care-gaps?limit=50&sort=age',
    ];
    for (const url of cases) {
      const { ms, body } = await timed(url);
      console.log(`scale: ${url} -> ${body.items.length} of ${body.total} in ${ms.toFixed(0)} ms`);
      expect(body.items.length).toBeGreaterThan(0);
      expect(ms).toBeLessThan(5_000);
    }
    const deep = await timed('/api/care-gaps?limit=50&offset=99950');
    expect(deep.body.total).toBe(GAPS);
    expect(deep.body.items.at(-1)!.due_date).toBe('2026-12-01');
  });
});

describe('a 1,000,000-row export', () => {
  for (const format of ['csv', 'arrow'] as const) {
    it(`streams ${format} without holding the rows in memory`, async () => {
      globalThis.gc?.();
      const heapBefore = process.memoryUsage().heapUsed;
      let peak = heapBefore;
      const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().heapUsed); }, 50);
      const t0 = performance.now();
      const response = await fetch(`${base}/api/alerts/export?format=${format}&sort=rule`, { headers: { authorization: `Bearer ${KEY}` } });
      expect(response.status, response.status === 200 ? '' : await response.text()).toBe(200);
      let bytes = 0;
      let lines = 0;
      for await (const chunk of response.body!) {
        bytes += chunk.byteLength;
        if (format === 'csv') for (const b of chunk) if (b === 10) lines++;
      }
      clearInterval(sampler);
      const ms = performance.now() - t0;
      const growth = (peak - heapBefore) / 2 ** 20;
      console.log(`scale: ${format} export of ${ALERTS} alerts: ${(bytes / 2 ** 20).toFixed(0)} MiB in ${(ms / 1000).toFixed(1)} s, peak heap growth ${growth.toFixed(0)} MiB`);
      if (format === 'csv') expect(lines).toBe(ALERTS + 1);
      // The export is far larger than this bound: holding it would blow through it.
      expect(growth).toBeLessThan(Math.min(300, (bytes / 2 ** 20) * 0.75));
    }, 180_000);
  }
});
