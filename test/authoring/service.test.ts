/**
 * The serving side of activation: the admin API (who may reload, what a refusal looks like) and a
 * reload under load over real sockets, where every response must come wholly from the old or the
 * new knowledge.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KnowledgeActivation } from '../../src/authoring/activation.ts';
import { ActivationHistory } from '../../src/authoring/history.ts';
import { createClientAuthenticator, parseAuthConfig } from '../../src/cds-hooks/auth/index.ts';
import { hashApiKey, parseDashboardAccess } from '../../src/dashboards/access.ts';
import { PROVENANCE_EXTENSION } from '../../src/domain/decisions.ts';
import { buildApp } from '../../src/http/app.ts';
import { createCdsStore } from '../../src/warehouse/cds-store.ts';
import { openWarehouse, queryRows, type Warehouse } from '../../src/warehouse/database.ts';
import { hookRequestFromCase, loopbackOnlyFetch } from '../cds-hooks/support.ts';
import { testDeps } from '../support/knowledge.ts';
import { bumpRule, copySample, editFile, minimalWithCase, nextVersion, SAMPLE_HBA1C_VERSION, tempDataDir } from './support.ts';

type CdsStore = Awaited<ReturnType<typeof createCdsStore>>;

const ANA = 'ana-informaticist-key';
const QM = 'qm-quality-key';

interface Served {
  readonly app: FastifyInstance;
  readonly activation: KnowledgeActivation;
  readonly warehouse: Warehouse;
  readonly store: CdsStore;
  readonly base: string;
  close(): Promise<void>;
}

/** serve builds the real app (CDS Hooks with client auth off, admin API with two users) over `root`, listening on 127.0.0.1. */
async function serve(root: string): Promise<Served> {
  const dataDir = await tempDataDir();
  const history = new ActivationHistory(dataDir);
  const { activation } = await KnowledgeActivation.start(root, testDeps(), history, { now: () => new Date(), actor: 'test' });
  const warehouse = await openWarehouse({ path: path.join(dataDir, 'cairn.duckdb') });
  const access = parseDashboardAccess({ users: [{ name: 'ana', role: 'informaticist', tokenSha256: hashApiKey(ANA) }, { name: 'qm', role: 'quality', tokenSha256: hashApiKey(QM) }] });
  const store = await createCdsStore(warehouse);
  const address = { base: '' };
  const app = await buildApp({
    corsOrigins: [],
    bodyLimit: 4 * 1024 * 1024,
    cdsHooks: {
      knowledge: () => activation.active.current,
      authenticator: createClientAuthenticator(parseAuthConfig({ mode: 'off' }), { now: Date.now }),
      store,
      now: () => new Date('2026-03-01T12:00:00Z'),
      get publicBaseUrl() {
        return address.base;
      },
      fhirBudgetMs: 1000,
      fetch: loopbackOnlyFetch,
    },
    admin: { activation, access },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  address.base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return {
    app,
    activation,
    warehouse,
    store,
    base: address.base,
    async close() {
      await app.close();
      warehouse.close();
    },
  };
}

describe('POST /api/admin/knowledge/reload', () => {
  let served: Served;
  let root: string;
  beforeAll(async () => {
    root = await minimalWithCase({ fires: true, card: { indicator: 'warning' } });
    served = await serve(root);
  }, 120_000);
  afterAll(() => served?.close());

  const reload = (token?: string): Promise<{ statusCode: number; headers: Record<string, unknown>; json: () => Record<string, unknown> }> =>
    served.app.inject({ method: 'POST', url: '/api/admin/knowledge/reload', headers: token ? { authorization: `Bearer ${token}` } : {} });

  it('needs a signed-in informaticist or admin', async () => {
    expect((await reload()).statusCode).toBe(401);
    const forbidden = await reload(QM);
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.headers['content-type']).toContain('application/problem+json');
  });

  it('swaps in a set that passes its tests and answers the activation record', async () => {
    const before = served.activation.active.current.knowledge.version;
    await bumpRule(root, 'test-draft-order', '1.2.0');
    const response = await reload(ANA);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ activated: true, actor: 'ana', trigger: 'api', previousVersion: before, diff: { changed: [{ id: 'test-draft-order', from: '1.0.0', to: '1.2.0' }] } });
    expect(served.activation.active.current.knowledge.version).not.toBe(before);
    const history = await served.app.inject({ method: 'GET', url: '/api/admin/knowledge/activations', headers: { authorization: `Bearer ${ANA}` } });
    expect((history.json() as { activations: unknown[] }).activations).toHaveLength(2);
  }, 120_000);

  it('refuses a failing set with problem+json listing the failed test case; the old set keeps serving', async () => {
    const before = served.activation.active.current;
    await editFile(root, 'rules/test-draft-order.json', (t) => t.replace('"indicator": "warning"', '"indicator": "info"'));
    const response = await reload(ANA);
    expect(response.statusCode).toBe(422);
    expect(response.headers['content-type']).toContain('application/problem+json');
    const body = response.json() as { code: string; problems: { text: string }[] };
    expect(body.code).toBe('KNOWLEDGE_INVALID');
    expect(body.problems.map((p) => p.text)).toContainEqual(expect.stringContaining('test case "fires" of rule test-draft-order failed: $.card.indicator: expected "warning", got "info"'));
    expect(served.activation.active.current).toBe(before);

    const restore = await served.app.inject({ method: 'POST', url: '/api/admin/knowledge/restore', headers: { authorization: `Bearer ${ANA}` }, payload: { version: 'nope' } });
    expect(restore.statusCode).toBe(404);
  }, 120_000);
});

describe('activation under load', () => {
  it('answers every CDS Hooks call during a reload, each wholly from the old or the new knowledge', async () => {
    const root = await copySample();
    const served = await serve(root);
    try {
      const oldVersion = served.activation.active.current.knowledge.version;
      const testCase = JSON.parse(await readFile(path.join(root, 'rules/hba1c-above-9.tests/hba1c-10-2.json'), 'utf8')) as Parameters<typeof hookRequestFromCase>[0];
      const discovery = (await (await fetch(`${served.base}/cds-services`)).json()) as { services: { id: string; hook: string; prefetch?: Record<string, string> }[] };
      const service = discovery.services.find((s) => s.hook === 'patient-view' && s.id.includes('hba1c')) ?? discovery.services.find((s) => s.hook === 'patient-view')!;
      const body = hookRequestFromCase(testCase, service.prefetch ?? {});

      type Outcome = { status: number; versions: string[]; ruleVersions: string[]; startedAfterSwap: boolean };
      const outcomes: Outcome[] = [];
      const state = { swapped: false };
      const call = async (): Promise<void> => {
        const startedAfterSwap = state.swapped;
        const response = await fetch(`${served.base}/cds-services/${service.id}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ ...body, hookInstance: randomUUID() }),
        });
        const json = (await response.json()) as { cards?: { extension?: Record<string, { knowledgeVersion: string; ruleId: string; ruleVersion: string }> }[] };
        const provenance = (json.cards ?? []).map((c) => c.extension?.[PROVENANCE_EXTENSION]);
        outcomes.push({
          status: response.status,
          versions: provenance.map((p) => p?.knowledgeVersion ?? '(none)'),
          ruleVersions: provenance.filter((p) => p?.ruleId === 'hba1c-above-9').map((p) => p!.ruleVersion),
          startedAfterSwap,
        });
      };
      // A few requests in flight at a time until the reload is done and some requests ran after it; bounded.
      const afterSwap = (): number => outcomes.filter((o) => o.startedAfterSwap).length;
      const worker = async (): Promise<void> => {
        while (outcomes.length < 3000 && !(state.swapped && outcomes.length >= 200 && afterSwap() >= 40)) {
          await call();
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      };
      const load = Promise.all(Array.from({ length: 4 }, worker));

      while (outcomes.length < 40) await new Promise((resolve) => setTimeout(resolve, 20));
      await bumpRule(root, 'hba1c-above-9', nextVersion(SAMPLE_HBA1C_VERSION, 'patch'));
      const reload = await fetch(`${served.base}/api/admin/knowledge/reload`, { method: 'POST', headers: { authorization: `Bearer ${ANA}` } });
      const record = (await reload.json()) as { activated: boolean; version: string };
      state.swapped = true;
      await load;

      expect(reload.status).toBe(200);
      expect(record.activated).toBe(true);
      const newVersion = record.version;
      expect(newVersion).not.toBe(oldVersion);
      expect(outcomes.length).toBeGreaterThanOrEqual(200);
      expect(outcomes.filter((o) => o.status !== 200)).toEqual([]);
      for (const o of outcomes) {
        expect(o.versions.length).toBeGreaterThan(0);
        expect(new Set(o.versions).size).toBe(1);
        expect([oldVersion, newVersion]).toContain(o.versions[0]);
        expect(o.ruleVersions).toEqual([o.versions[0] === oldVersion ? SAMPLE_HBA1C_VERSION : nextVersion(SAMPLE_HBA1C_VERSION, 'patch')]);
        if (o.startedAfterSwap) expect(o.versions[0]).toBe(newVersion);
      }
      expect(outcomes.some((o) => o.versions[0] === oldVersion)).toBe(true);
      expect(outcomes.filter((o) => o.versions[0] === newVersion).length).toBeGreaterThanOrEqual(40);
      // The audit trail agrees: each invocation names one knowledge version, and the counts match the responses.
      await served.store.flush();
      const audited = await queryRows(served.warehouse.connection, `SELECT knowledge_version AS v, count(*)::INTEGER AS n FROM cds_invocation GROUP BY 1 ORDER BY 1`);
      const answered = new Map<string, number>();
      for (const o of outcomes) answered.set(o.versions[0]!, (answered.get(o.versions[0]!) ?? 0) + 1);
      expect(Object.fromEntries(audited.map((r) => [r.v, r.n]))).toEqual(Object.fromEntries(answered));
    } finally {
      await served.close();
    }
  }, 300_000);
});
