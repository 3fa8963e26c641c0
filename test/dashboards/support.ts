/**
 * A report warehouse prepared the real way: a generated population, the real ingest, two real
 * batch runs over the project's knowledge (rules and the demo measures in measures/), and CDS Hooks cards and feedback through the real store.
 * Then the real app with the dashboards plugin, users of every role and a trusted OIDC issuer.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { FastifyInstance } from 'fastify';
import { runBatch } from '../../src/batch/run-batch.ts';
import { createClientAuthenticator, parseAuthConfig } from '../../src/cds-hooks/auth/index.ts';
import { hashApiKey, parseDashboardAccess, type DashboardAccessConfig } from '../../src/dashboards/access.ts';
import { loadPreparedKnowledge } from '../../src/evaluate/knowledge-service.ts';
import type { PreparedKnowledge } from '../../src/evaluate/prepare.ts';
import { buildApp } from '../../src/http/app.ts';
import { generatePopulation } from '../../src/synthetic/generate.ts';
import { createCdsStore } from '../../src/warehouse/cds-store.ts';
import { openWarehouse, queryRows, type Warehouse } from '../../src/warehouse/database.ts';
import { ingestPaths } from '../../src/warehouse/ingest.ts';
import type { RunSummary } from '../../src/warehouse/results.ts';
import { PROJECT_ROOT, testDeps } from '../support/knowledge.ts';

export const KEYS = { quality: 'quality-key-0123456789', informaticist: 'informaticist-key-0123456789', admin: 'admin-key-0123456789' } as const;
export const OIDC_ISSUER = 'https://idp.test/realms/cairn';
export const OIDC_AUDIENCE = 'cairn-dashboards';
export const NOW = new Date('2026-03-02T09:00:00Z');

export interface ReportFixture {
  readonly dir: string;
  readonly warehouse: Warehouse;
  readonly prepared: PreparedKnowledge;
  readonly runs: readonly RunSummary[];
  readonly cards: number;
  close(): Promise<void>;
}

/** prepareReportWarehouse builds the database: `patients` generated patients, two batch runs, CDS cards with feedback. */
export async function prepareReportWarehouse(patients: number): Promise<ReportFixture> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-dash-'));
  const ndjson = path.join(dir, 'ndjson');
  await generatePopulation({ patients, seed: 11, outDir: ndjson });
  const warehouse = await openWarehouse({ path: path.join(dir, 'cairn.duckdb') });
  await ingestPaths(warehouse, [ndjson], { now: new Date('2026-02-01T00:00:00Z'), sources: ['test'] });
  const prepared = await loadPreparedKnowledge(PROJECT_ROOT, testDeps());
  let clock = Date.parse('2026-03-01T02:00:00Z');
  const now = (): Date => new Date((clock += 1500));
  const first = await runBatch(warehouse, prepared, { evaluatedAt: '2026-03-01T02:00:00Z', now });
  // More patients arrive before the second run, so counts and rates change between runs.
  const more = path.join(dir, 'ndjson-2');
  await generatePopulation({ patients: Math.max(10, Math.round(patients / 4)), seed: 12, outDir: more });
  await ingestPaths(warehouse, [more], { now: new Date('2026-03-01T12:00:00Z'), sources: ['test-2'] });
  clock = Date.parse('2026-03-02T02:00:00Z');
  const second = await runBatch(warehouse, prepared, { evaluatedAt: '2026-03-02T02:00:00Z', now });
  const cards = await recordCards(warehouse, prepared.knowledge.version);
  return {
    dir, warehouse, prepared, runs: [first, second], cards,
    async close() {
      warehouse.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** recordCards stores cards shown over three days for the patients of the latest alerts, with feedback on most. */
async function recordCards(warehouse: Warehouse, knowledgeVersion: string): Promise<number> {
  const store = await createCdsStore(warehouse);
  // Cards for patients and rules the batch flagged (alerts and care gaps of the latest run).
  const alerts = await queryRows(warehouse.connection, `SELECT patient_id, rule_id, rule_version FROM (
    SELECT patient_id, rule_id, rule_version, id FROM batch_alert UNION ALL SELECT patient_id, rule_id, rule_version, id FROM batch_care_gap)
    ORDER BY id LIMIT 30`);
  let n = 0;
  for (const [i, alert] of alerts.entries()) {
    const day = `2026-02-${26 + (i % 3)}`;
    const uuid = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    const at = `${day}T10:${String(i % 60).padStart(2, '0')}:00.000Z`;
    const card = { uuid, serviceId: 'svc', hook: 'patient-view' as const, hookInstance: `hi-${i}`, patientId: String(alert.patient_id), ruleId: String(alert.rule_id), ruleVersion: String(alert.rule_version), knowledgeVersion, indicator: 'warning', issuedAt: at, client: 'test-ehr', suggestions: [] };
    await store.recordInvocation({ serviceId: 'svc', hook: 'patient-view', hookInstance: `hi-${i}`, client: 'test-ehr', patientId: card.patientId, knowledgeVersion, at, durationMs: 12, status: 200, cards: [card], suppressed: 0, ruleErrors: 0 });
    n++;
    if (i % 4 === 3) continue; // no feedback on every fourth card
    const overridden = i % 2 === 1;
    await store.recordFeedback([{
      cardUuid: uuid, serviceId: 'svc', outcome: overridden ? 'overridden' : 'accepted', outcomeTimestamp: at, acceptedSuggestions: [], client: 'test-ehr', receivedAt: at,
      ...(overridden ? { overrideReason: { system: 'https://cairn.example/override', code: i % 3 === 0 ? 'snooze-30d' : 'not-relevant', display: i % 3 === 0 ? 'Remind me in 30 days' : 'Not relevant' } } : {}),
    }], []);
  }
  await store.flush();
  return n;
}

export interface DashboardService {
  readonly app: FastifyInstance;
  /** oidcToken signs a JWT from the trusted issuer. */
  oidcToken(claims: Record<string, unknown>, options?: { issuer?: string; audience?: string }): Promise<string>;
}

let oidcKeys: { privateKey: CryptoKey; publicKey: CryptoKey } | undefined;

/** startDashboards builds the real app over `warehouse` with three API-key users and an OIDC issuer. */
export async function startDashboards(fixture: Pick<ReportFixture, 'warehouse' | 'prepared'>, options: { logger?: boolean } = {}): Promise<DashboardService> {
  oidcKeys ??= await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(oidcKeys.publicKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' };
  const config: DashboardAccessConfig = {
    users: [
      { name: 'qm.alice', role: 'quality', tokenSha256: hashApiKey(KEYS.quality) },
      { name: 'inf.bob', role: 'informaticist', tokenSha256: hashApiKey(KEYS.informaticist) },
      { name: 'admin.carol', role: 'admin', tokenSha256: hashApiKey(KEYS.admin) },
    ],
    oidc: { issuer: OIDC_ISSUER, audience: OIDC_AUDIENCE, jwks: { keys: [{ ...jwk, kty: 'EC' }] }, roleClaim: 'realm_access.roles', roleMap: { 'cairn-quality': 'quality', 'cairn-informatics': 'informaticist' }, userClaim: 'preferred_username' },
  };
  const ehrKey = await generateKeyPair('ES384');
  const ehrJwk = { ...(await exportJWK(ehrKey.publicKey)), kid: 'ehr-1', alg: 'ES384', use: 'sig' };
  const authenticator = createClientAuthenticator(parseAuthConfig({ mode: 'required', clients: [{ iss: 'https://ehr.test', jwks: { keys: [ehrJwk] } }] }), { now: () => NOW.getTime() });
  await authenticator.ready();
  const store = await createCdsStore(fixture.warehouse);
  const app = await buildApp({
    corsOrigins: [],
    bodyLimit: 1024 * 1024,
    logger: options.logger ?? false,
    cdsHooks: { knowledge: () => fixture.prepared, authenticator, store, now: () => NOW, publicBaseUrl: 'http://127.0.0.1', fhirBudgetMs: 100 },
    dashboards: {
      warehouse: fixture.warehouse,
      access: parseDashboardAccess(config),
      now: () => NOW,
      rules: () => fixture.prepared.knowledge.rules.map(({ rule }) => ({ id: rule.id, title: rule.title })),
      measureInfo: () => fixture.prepared.measures.map(({ definition }) => ({ id: definition.id, title: definition.title ?? definition.name ?? definition.id })),
    },
  });
  return {
    app,
    async oidcToken(claims, opts = {}) {
      const seconds = Math.floor(Date.now() / 1000);
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: 'idp-1', typ: 'JWT' })
        .setIssuer(opts.issuer ?? OIDC_ISSUER)
        .setAudience(opts.audience ?? OIDC_AUDIENCE)
        .setSubject('user-123')
        .setIssuedAt(seconds)
        .setExpirationTime(seconds + 600)
        .sign(oidcKeys!.privateKey);
    },
  };
}

/** bearer is the Authorization header of a configured user. */
export function bearer(role: keyof typeof KEYS): { authorization: string } {
  return { authorization: `Bearer ${KEYS[role]}` };
}
