/**
 * Helpers for CDS Hooks tests and benches that go over real sockets on 127.0.0.1: the real app
 * listening with its JWT audience set to the listening URL, a stand-in EHR FHIR server, and a zod
 * schema of a CDS Hooks 2.0 card. Nothing here ever sends traffic off the machine.
 */
import { mkdtemp } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { z } from 'zod';
import { createClientAuthenticator, parseAuthConfig } from '../../src/cds-hooks/auth/index.ts';
import { createEvaluationPool, type CallEvaluator } from '../../src/cds-hooks/evaluation-pool.ts';
import type { CdsHooksDeps } from '../../src/cds-hooks/routes.ts';
import { ActiveKnowledge } from '../../src/evaluate/knowledge-service.ts';
import { buildApp } from '../../src/http/app.ts';
import type { CdsStore } from '../../src/cds-hooks/store.ts';
import { createCdsStore } from '../../src/warehouse/cds-store.ts';
import { openWarehouse, type Warehouse } from '../../src/warehouse/database.ts';
import { readPatientResources } from '../../src/warehouse/patient-data.ts';
import { PROJECT_ROOT, SHARED_FIXTURES, testDeps } from '../support/knowledge.ts';
import { loopbackOnlyFetch } from './support.ts';

export const SHARED_CDS_HOOKS = path.join(SHARED_FIXTURES, 'cds-hooks');
export const LIVE_ISSUER = 'https://ehr.live.test';

// ---------------------------------------------------------------------------------------------
// CDS Hooks 2.0 card shape ({@link https://cds-hooks.hl7.org/2.0/#card-attributes})

const nonEmpty = z.string().min(1);
const absoluteUrl = z.url({ protocol: /^https?$/ });

/** A Coding ({@link https://cds-hooks.hl7.org/2.0/#coding}): code and system required. */
export const CodingSchema = z.looseObject({ code: nonEmpty, system: nonEmpty, display: nonEmpty.optional() });

/** An Action ({@link https://cds-hooks.hl7.org/2.0/#action}): `resource` for create/update, `resourceId` (a relative reference, a string) for delete. */
export const ActionSchema = z
  .strictObject({
    type: z.enum(['create', 'update', 'delete']),
    description: nonEmpty,
    resource: z.looseObject({ resourceType: nonEmpty }).optional(),
    resourceId: z.string().regex(/^[A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/, 'a relative reference such as MedicationRequest/123').optional(),
  })
  .superRefine((action, ctx) => {
    if ((action.type === 'create' || action.type === 'update') && !action.resource) ctx.addIssue({ code: 'custom', path: ['resource'], message: `a ${action.type} action carries the resource` });
    if (action.type === 'delete' && !action.resourceId && !action.resource) ctx.addIssue({ code: 'custom', path: ['resourceId'], message: 'a delete action names the resource to remove' });
  });

export const SuggestionSchema = z.strictObject({
  label: nonEmpty,
  uuid: nonEmpty.optional(),
  isRecommended: z.boolean().optional(),
  actions: z.array(ActionSchema).min(1).optional(),
});

export const LinkSchema = z
  .strictObject({
    label: nonEmpty,
    url: absoluteUrl,
    type: z.enum(['absolute', 'smart']),
    appContext: nonEmpty.optional(),
    autolaunchable: z.boolean().optional(),
  })
  .refine((link) => link.appContext === undefined || link.type === 'smart', { message: 'appContext is only valid on smart links', path: ['appContext'] });

/**
 * CardSchema is a valid CDS Hooks 2.0 card: the spec's required fields, `summary` under 140
 * characters, `selectionBehavior` whenever there are suggestions, override reasons with a display,
 * and no member the spec does not define (besides `extension`).
 */
export const CardSchema = z
  .strictObject({
    uuid: nonEmpty.optional(),
    summary: nonEmpty.max(139, 'summary must be under 140 characters'),
    detail: nonEmpty.optional(),
    indicator: z.enum(['info', 'warning', 'critical']),
    source: z.strictObject({ label: nonEmpty, url: absoluteUrl.optional(), icon: absoluteUrl.optional(), topic: CodingSchema.optional() }),
    suggestions: z.array(SuggestionSchema).min(1).optional(),
    selectionBehavior: z.enum(['at-most-one', 'any']).optional(),
    overrideReasons: z.array(CodingSchema.extend({ display: nonEmpty })).min(1).optional(),
    links: z.array(LinkSchema).min(1).optional(),
    extension: z.record(z.string(), z.unknown()).optional(),
  })
  .refine((card) => !card.suggestions || card.selectionBehavior !== undefined, { message: 'selectionBehavior is required with suggestions', path: ['selectionBehavior'] });

/** CairnCardSchema adds what Cairn promises beyond the spec: a uuid on every card and suggestion (feedback needs them). */
export const CairnCardSchema = CardSchema.refine((card) => card.uuid !== undefined && (card.suggestions ?? []).every((s) => s.uuid !== undefined), {
  message: 'Cairn cards and suggestions always carry a uuid',
});

/** A CDS Hooks 2.0 service response ({@link https://cds-hooks.hl7.org/2.0/#http-response}). */
export const CardsResponseSchema = z.strictObject({ cards: z.array(CardSchema), systemActions: z.array(ActionSchema).min(1).optional() });

/** cardIssues lists, as `path: message`, why `value` is not a valid Cairn card (empty when it is). */
export function cardIssues(value: unknown, schema: z.ZodType = CairnCardSchema): string[] {
  const result = schema.safeParse(value);
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.') || '(card)'}: ${i.message}`);
}

/** nullOrEmptyFields lists the paths of null values, empty strings, arrays and objects (cards never carry them). */
export function nullOrEmptyFields(value: unknown, at = '$'): string[] {
  if (value === null) return [at];
  if (typeof value === 'string') return value.length === 0 ? [at] : [];
  if (Array.isArray(value)) return value.length === 0 ? [at] : value.flatMap((v, i) => nullOrEmptyFields(v, `${at}[${i}]`));
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    return entries.length === 0 ? [at] : entries.flatMap(([k, v]) => nullOrEmptyFields(v, `${at}.${k}`));
  }
  return [];
}

// ---------------------------------------------------------------------------------------------
// The real app on a real socket

export interface LiveService {
  readonly app: FastifyInstance;
  readonly warehouse: Warehouse;
  readonly store: CdsStore;
  /** `http://127.0.0.1:<port>`: the public base URL JWT audiences are checked against. */
  readonly baseUrl: string;
  /** token signs a client JWT for `urlPath` (aud = baseUrl + urlPath) with a fresh jti; claims override. */
  token(urlPath: string, claims?: Record<string, unknown>): Promise<string>;
  setNow(iso: string): void;
  close(): Promise<void>;
}

/** How the stand-in EHR signs its JWTs: ES384 (the spec's example, the sandbox) or RS384 (Epic's default; verifies ~40x cheaper). */
export type SigningAlg = 'ES384' | 'RS384';

export interface LiveOptions {
  /** The clock requests are authenticated and evaluated at (default: a fixed 2026-03-01T12:00:00Z, settable). */
  readonly now?: 'fixed' | 'wall';
  readonly fhirBudgetMs?: number;
  /** Fastify's logger option (default off); the load bench logs as `cairn serve` does, to /dev/null. */
  readonly logger?: FastifyServerOptions['logger'];
  /** Worker threads evaluating calls (server.evaluationThreads); default 0: on the HTTP thread. */
  readonly evaluationThreads?: number;
  /** The algorithm the stand-in EHR signs its JWTs with (both are CDS Hooks' choices); default ES384, as the spec's example and the sandbox. */
  readonly signingAlg?: SigningAlg;
  /** Falls back to the local analytical copy (this service's DuckDB) as `cairn serve` does; default off. */
  readonly localCopy?: boolean;
  /** Where calls whose data is all in the body are evaluated (default: this thread, or the pool of `evaluationThreads`). */
  readonly evaluator?: CallEvaluator;
}

/**
 * startLiveService builds the real app over the sample knowledge and a fresh DuckDB file, with JWT
 * auth on, and listens on 127.0.0.1 at a free port. The JWT audience prefix is the listening URL,
 * known only after listen, hence the getter.
 */
export async function startLiveService(options: LiveOptions = {}): Promise<LiveService> {
  const alg = options.signingAlg ?? 'ES384';
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const jwk = { ...(await exportJWK(publicKey)), kid: 'live-key', alg, use: 'sig' };
  let fixed = Date.parse('2026-03-01T12:00:00Z');
  const clock = options.now === 'wall' ? () => Date.now() : () => fixed;
  const authenticator = createClientAuthenticator(parseAuthConfig({ mode: 'required', clients: [{ name: 'live-ehr', iss: LIVE_ISSUER, jwks: { keys: [jwk] } }] }), { now: clock });
  await authenticator.ready();
  const knowledge = await ActiveKnowledge.load(PROJECT_ROOT, testDeps());
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-cds-live-'));
  const warehouse = await openWarehouse({ path: path.join(dir, 'cairn.duckdb') });
  const store = await createCdsStore(warehouse, { now: clock });
  const address = { base: '' };
  const evaluator = options.evaluator ?? (options.evaluationThreads ? createEvaluationPool(options.evaluationThreads) : undefined);
  // Its own connection, as `cairn serve` reads the local copy.
  const reader = options.localCopy ? { ...warehouse, connection: await warehouse.connect() } : undefined;
  const cdsHooks: CdsHooksDeps = {
    knowledge: () => knowledge.current,
    authenticator,
    store,
    now: () => new Date(clock()),
    get publicBaseUrl() {
      return address.base;
    },
    fhirBudgetMs: options.fhirBudgetMs ?? 1000,
    fetch: loopbackOnlyFetch,
    ...(evaluator ? { evaluator } : {}),
    ...(reader ? { localSource: (patientId: string, types: readonly string[]) => readPatientResources(reader, patientId, types) } : {}),
  };
  const app = await buildApp({ corsOrigins: [], bodyLimit: 4 * 1024 * 1024, cdsHooks, logger: options.logger ?? false });
  await app.listen({ host: '127.0.0.1', port: 0 });
  address.base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  let jti = 0;
  return {
    app,
    warehouse,
    store,
    baseUrl: address.base,
    async token(urlPath, claims = {}) {
      const seconds = Math.floor(clock() / 1000);
      const payload = { iss: LIVE_ISSUER, aud: `${address.base}${urlPath}`, iat: seconds, exp: seconds + 300, jti: `live-${process.pid}-${++jti}-${seconds}`, ...claims };
      return new SignJWT(payload).setProtectedHeader({ alg, kid: 'live-key', typ: 'JWT' }).sign(privateKey as CryptoKey);
    },
    setNow(iso) {
      fixed = Date.parse(iso);
    },
    async close() {
      await app.close();
      await evaluator?.close();
      reader?.connection.closeSync();
      warehouse.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A stand-in EHR FHIR server

export const EHR_TOKEN = 'ehr-access-token-for-tests';

type Resource = { readonly resourceType: string; readonly id?: string; readonly [key: string]: unknown };

export interface EhrServer {
  /** The FHIR base URL, `http://127.0.0.1:<port>/fhir`. */
  readonly base: string;
  /** Every request's `path?query`, with whether it carried the expected bearer token. */
  readonly requests: { readonly path: string; readonly authorized: boolean }[];
  close(): Promise<void>;
}

export interface EhrOptions {
  /** Every patient's resources by patient id (the Patient itself included). */
  readonly patients: Readonly<Record<string, readonly Resource[]>>;
  /** Entries per searchset page: more than this and the server paginates with `next` links. */
  readonly pageSize?: number;
  /** The bearer token the server requires (default {@link EHR_TOKEN}). */
  readonly token?: string;
  /** Medications, shared by every patient: read by id or searched with `Medication?_id=`. */
  readonly medications?: readonly Resource[];
  /** Patients whose searches of these resource types answer only after `ms`. */
  readonly slow?: { readonly patientIds: readonly string[]; readonly types: readonly string[]; readonly ms: number };
}

/**
 * startEhrServer serves `Patient/{id}` reads and `{Type}?patient={id}` searchsets from `patients`,
 * and `Medication/{id}` reads and `Medication?_id=` searches from `medications`,
 * on 127.0.0.1, paginated by `pageSize` with absolute `next` links, answering 401 without the
 * bearer token and 404 OperationOutcomes for unknown reads; searches for an unknown patient are empty.
 */
export async function startEhrServer(options: EhrOptions): Promise<EhrServer> {
  const requests: { path: string; authorized: boolean }[] = [];
  const pageSize = options.pageSize ?? 50;
  const holder = { base: '' };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const authorized = req.headers.authorization === `Bearer ${options.token ?? EHR_TOKEN}`;
    requests.push({ path: `${url.pathname}${url.search}`, authorized });
    const send = (status: number, body: unknown): void => {
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/fhir+json' });
      res.end(JSON.stringify(body));
    };
    const outcome = (status: number, code: string, diagnostics: string): void => send(status, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] });
    if (!authorized) return outcome(401, 'login', 'bearer token required');
    const route = url.pathname.replace(/^\/fhir\//, '');
    const read = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(route);
    if (read) {
      const patient = options.patients[read[1]!]?.find((r) => r.resourceType === 'Patient');
      return patient ? send(200, patient) : outcome(404, 'not-found', `${route} is not known`);
    }
    const medication = /^Medication\/([A-Za-z0-9\-.]{1,64})$/.exec(route)?.[1];
    if (medication) {
      const found = options.medications?.find((m) => m.id === medication);
      return found ? send(200, found) : outcome(404, 'not-found', `${route} is not known`);
    }
    if (route === 'Medication') {
      const wanted = (url.searchParams.get('_id') ?? '').split(',');
      const found = (options.medications ?? []).filter((m) => m.id !== undefined && wanted.includes(m.id));
      return send(200, { resourceType: 'Bundle', type: 'searchset', total: found.length, entry: found.map((resource) => ({ resource, search: { mode: 'match' } })) });
    }
    const patientId = (url.searchParams.get('patient') ?? '').replace(/^Patient\//, '');
    if (!/^[A-Z][A-Za-z]+$/.test(route) || !patientId) return outcome(404, 'not-found', `no route ${route}`);
    const resources = options.patients[patientId] ?? [];
    const matches = resources.filter((r) => r.resourceType === route);
    const page = Math.max(1, Number(url.searchParams.get('page') ?? '1') || 1);
    const slice = matches.slice((page - 1) * pageSize, page * pageSize);
    const more = matches.length > page * pageSize;
    const body = {
      resourceType: 'Bundle',
      type: 'searchset',
      total: matches.length,
      link: [
        { relation: 'self', url: `${holder.base}/${route}?patient=${patientId}&page=${page}` },
        ...(more ? [{ relation: 'next', url: `${holder.base}/${route}?patient=${patientId}&page=${page + 1}` }] : []),
      ],
      entry: slice.map((resource) => ({ fullUrl: `${holder.base}/${resource.resourceType}/${resource.id}`, resource, search: { mode: 'match' } })),
    };
    const slow = options.slow;
    if (slow && slow.patientIds.includes(patientId) && slow.types.includes(route)) {
      const timer = setTimeout(() => send(200, body), slow.ms);
      res.on('close', () => clearTimeout(timer));
      return undefined;
    }
    return send(200, body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  holder.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
  return {
    base: holder.base,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
