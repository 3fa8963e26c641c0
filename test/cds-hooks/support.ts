import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { createClientAuthenticator, parseAuthConfig } from '../../src/cds-hooks/auth/index.ts';
import { ActiveKnowledge } from '../../src/evaluate/knowledge-service.ts';
import { buildApp } from '../../src/http/app.ts';
import { createCdsStore } from '../../src/warehouse/cds-store.ts';
import type { CdsStore } from '../../src/cds-hooks/store.ts';
import { openWarehouse, type Warehouse } from '../../src/warehouse/database.ts';
import { PROJECT_ROOT, testDeps } from '../support/knowledge.ts';

export const BASE_URL = 'https://cairn.test';
export const ISSUER = 'https://ehr.test';
/** A second trusted EHR (same key, its own iss): feedback on another client's cards is refused. */
export const OTHER_ISSUER = 'https://other-ehr.test';

/** Only loopback may be fetched in tests: published fixtures name real FHIR servers we must never call. */
export const loopbackOnlyFetch: typeof fetch = async (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) throw new TypeError(`test refused to fetch non-loopback ${url.origin}`);
  return fetch(input, init);
};

export interface TestService {
  readonly app: FastifyInstance;
  readonly warehouse: Warehouse;
  /** The audit and feedback store; `flush()` writes what the service recorded so far. */
  readonly store: CdsStore;
  readonly knowledge: ActiveKnowledge;
  /** token signs a CDS Hooks client JWT for `path` (audience = base URL + path). */
  token(path: string, claims?: Record<string, unknown>, issuer?: string): Promise<string>;
  setNow(iso: string): void;
  close(): Promise<void>;
}

let keyPair: { privateKey: CryptoKey; publicKey: CryptoKey } | undefined;

export interface ServiceOptions {
  readonly knowledgeRoot?: string;
  readonly bodyLimit?: number;
  readonly corsOrigins?: string[];
  readonly maxInFlight?: number;
  readonly databasePath?: string;
  /** 'off': no caller is authenticated (CAIRN_AUTH=off); default 'required'. */
  readonly authMode?: 'required' | 'off';
  /** The service ids ISSUER's client may call; default '*'. OTHER_ISSUER's client may always call every service. */
  readonly services?: readonly string[];
  /** The FHIR servers ISSUER's client may name as fhirServer; default any. */
  readonly fhirServers?: readonly string[];
  /** Fastify's logger option (e.g. `{ level: 'info', stream }` to read what the app logs); default: no logging. */
  readonly logger?: FastifyServerOptions['logger'];
}

/** startService builds the real app over the sample knowledge and a fresh DuckDB file, with JWT auth on unless `authMode` is 'off'. */
export async function startService(options: ServiceOptions = {}): Promise<TestService> {
  keyPair ??= await generateKeyPair('ES384');
  const jwk = { ...(await exportJWK(keyPair.publicKey)), kid: 'test-key', alg: 'ES384', use: 'sig' };
  let now = Date.parse('2026-03-01T12:00:00Z');
  const clients = [
    { name: 'test-ehr', iss: ISSUER, jwks: { keys: [jwk] }, ...(options.services ? { services: [...options.services] } : {}), ...(options.fhirServers ? { fhirServers: [...options.fhirServers] } : {}) },
    { name: 'other-ehr', iss: OTHER_ISSUER, jwks: { keys: [jwk] } },
  ];
  const authenticator = createClientAuthenticator(options.authMode === 'off' ? parseAuthConfig({ mode: 'off' }) : parseAuthConfig({ mode: 'required', clients }), { now: () => now });
  await authenticator.ready();
  const knowledge = await ActiveKnowledge.load(options.knowledgeRoot ?? PROJECT_ROOT, testDeps());
  const databasePath = options.databasePath ?? path.join(await mkdtemp(path.join(os.tmpdir(), 'cairn-cds-')), 'cairn.duckdb');
  const warehouse = await openWarehouse({ path: databasePath });
  const store = await createCdsStore(warehouse, { now: () => now });
  const app = await buildApp({
    ...(options.logger ? { logger: options.logger } : {}),
    corsOrigins: options.corsOrigins ?? ['https://sandbox.cds-hooks.org'],
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    cdsHooks: {
      knowledge: () => knowledge.current,
      authenticator,
      store,
      now: () => new Date(now),
      publicBaseUrl: BASE_URL,
      fhirBudgetMs: 1000,
      fetch: loopbackOnlyFetch,
      ...(options.maxInFlight ? { maxInFlight: options.maxInFlight } : {}),
    },
  });
  let jti = 0;
  return {
    app,
    warehouse,
    store,
    knowledge,
    async token(urlPath, claims = {}, issuer = ISSUER) {
      const seconds = Math.floor(now / 1000);
      return new SignJWT({ jti: `jti-${++jti}-${Math.random()}`, ...claims })
        .setProtectedHeader({ alg: 'ES384', kid: 'test-key', typ: 'JWT' })
        .setIssuer(issuer)
        .setAudience(`${BASE_URL}${urlPath}`)
        .setIssuedAt(seconds)
        .setExpirationTime(seconds + 300)
        .sign(keyPair!.privateKey);
    },
    setNow(iso) {
      now = Date.parse(iso);
    },
    async close() {
      await app.close();
      warehouse.close();
    },
  };
}

type Resource = { resourceType: string; [k: string]: unknown };

/** hookRequestFromCase turns a rule test case into a CDS Hooks request whose prefetch carries the case's patient data. */
export function hookRequestFromCase(testCase: { hook?: string; context?: Record<string, unknown>; patient: { entry?: { resource: Resource }[] } | Resource[] }, templates: Record<string, string>): Record<string, unknown> {
  const resources = Array.isArray(testCase.patient) ? testCase.patient : (testCase.patient.entry ?? []).map((e) => e.resource);
  const prefetch: Record<string, unknown> = {};
  // Medications the orders reference travel as `_include`d entries, as a FHIR server sends them.
  const included = resources.filter((r) => r.resourceType === 'Medication').map((resource) => ({ resource, search: { mode: 'include' } }));
  for (const [key, template] of Object.entries(templates)) {
    const type = template.split(/[/?]/)[0] ?? '';
    if (type === 'Patient') prefetch[key] = resources.find((r) => r.resourceType === 'Patient') ?? null;
    else prefetch[key] = { resourceType: 'Bundle', type: 'searchset', entry: [...resources.filter((r) => r.resourceType === type).map((resource) => ({ resource })), ...(type === 'MedicationRequest' ? included : [])] };
  }
  return { hook: testCase.hook, hookInstance: 'd1577c69-dfbe-44ad-ba6d-3e05e953b2ea', context: testCase.context, prefetch };
}
