import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CardDecision, PatientEvaluation } from '../domain/decisions.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import { evaluatePatient } from '../evaluate/evaluate.ts';
import { sendProblem } from '../http/problem.ts';
import { fhirServerAllowed, type ClientAuthenticator } from './auth/index.ts';
import { inThreadEvaluator, type CallEvaluator } from './evaluation-pool.ts';
import { notEvaluatedCards } from './not-evaluated.ts';
import { echoId, echoIds, FeedbackRequestSchema, firstIssues, futureOutcomes, toRecords } from './feedback.ts';
import { assemblePatientData, shortfallOf, type LocalSource } from './prefetch/assemble.ts';
import { parseHookRequest, type CallIdentifiers, type RequestIssue } from './request.ts';
import { describeServices, discoveryEntry, type CdsService } from './services.ts';
import type { CdsStore, IssuedCard } from './store.ts';

export interface CdsHooksDeps {
  /** The knowledge serving now; read once per request so a response comes wholly from one version. */
  readonly knowledge: () => PreparedKnowledge;
  readonly authenticator: ClientAuthenticator;
  readonly store: CdsStore;
  /** Wall clock: the instant a request is evaluated at. */
  readonly now: () => Date;
  /** Public base URL the EHR calls (behind proxies), used as the JWT audience prefix. */
  readonly publicBaseUrl: string;
  readonly fhirBudgetMs?: number;
  readonly localSource?: LocalSource;
  readonly fetch?: typeof fetch;
  /** Service calls evaluated at once; beyond it callers get 503 with Retry-After instead of everyone timing out. */
  readonly maxInFlight?: number;
  /** Where calls whose data is all in the body are evaluated (a worker-thread pool); default: this thread. */
  readonly evaluator?: CallEvaluator;
}

interface ServiceParams {
  readonly id: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    cdsClient?: string;
    /** The FHIR servers the verified client's calls may name (undefined: any). */
    cdsFhirServers?: readonly string[];
  }
}

/**
 * cdsHooksRoutes registers discovery, service calls and feedback (CDS Hooks 2.0.1). Every route
 * authenticates the calling CDS client first; bodies are validated with zod and answered with
 * `application/problem+json` naming the field on error.
 */
export async function cdsHooksRoutes(app: FastifyInstance, deps: CdsHooksDeps): Promise<void> {
  const servicesByKnowledge = new WeakMap<PreparedKnowledge, ReadonlyMap<string, CdsService>>();
  const servicesOf = (prepared: PreparedKnowledge): ReadonlyMap<string, CdsService> => {
    let services = servicesByKnowledge.get(prepared);
    if (!services) {
      services = new Map(describeServices(prepared).map((s) => [s.id, s]));
      servicesByKnowledge.set(prepared, services);
    }
    return services;
  };

  /** The ids of a call whose body was not read, or gave none. */
  const NO_IDS: CallIdentifiers = { hookInstance: '', patientId: '' };

  // Declared, so every request object has the field from the start (one shape, as Fastify advises).
  app.decorateRequest('cdsClient', undefined);
  app.decorateRequest('cdsFhirServers', undefined);

  // A token accepted before a restart is still accepted at most once.
  deps.authenticator.restoreClaims(await deps.store.liveClaims(deps.now().getTime() / 1000));

  // onRequest, before the body is read: an untrusted caller gets 401 whatever it sends (never a parse
  // error about its body, never a large body parsed on its behalf).
  app.addHook('onRequest', async (request: FastifyRequest<{ Params: Partial<ServiceParams> }>, reply: FastifyReply) => {
    const audience = `${deps.publicBaseUrl.replace(/\/+$/, '')}${request.url.split('?')[0]}`;
    const result = await deps.authenticator.authenticate({ authorization: request.headers.authorization, audience, serviceId: request.params.id });
    if (result.ok) {
      if (result.authentication === 'off') request.log.warn(result.warning);
      else deps.store.recordClaim({ iss: result.client.iss, jti: result.client.jti, until: result.client.replayUntil });
      request.cdsClient = result.client?.name ?? result.client?.iss ?? 'unauthenticated';
      request.cdsFhirServers = result.client?.fhirServers;
      return;
    }
    request.log.info({ reason: result.reason }, 'CDS client authentication failed');
    // A 403 names a verified client: its refused call is audited (a 401 names no one, so only logged).
    if (result.client !== undefined) request.cdsClient = result.client;
    if (result.wwwAuthenticate) reply.header('WWW-Authenticate', result.wwwAuthenticate);
    return sendProblem(reply, { title: result.status === 401 ? 'Unauthorized' : 'Forbidden', status: result.status, detail: result.message });
  });

  // A service call refused before its handler ran (403, 413, an unsupported content type) is an
  // invocation by a known client too; the handler audits every call it answers.
  const audited = new WeakSet<FastifyRequest>();
  app.addHook('onResponse', async (request: FastifyRequest<{ Params: Partial<ServiceParams> }>, reply: FastifyReply) => {
    if (audited.has(request) || request.cdsClient === undefined || request.method !== 'POST' || request.routeOptions.url !== '/cds-services/:id') return;
    const prepared = deps.knowledge();
    const service = servicesOf(prepared).get(request.params.id ?? '');
    if (!service) return;
    await auditUnanswered({ service, prepared, started: performance.now() - reply.elapsedTime, request, ...NO_IDS }, reply.statusCode);
  });

  // Invocations are written behind responses: write what is pending before the service stops.
  app.addHook('onClose', async () => deps.store.flush());

  // Bodies arrive as bytes: a call whose data is all in its body is decoded, parsed and evaluated
  // where the evaluator runs (a worker thread), not here. Everything else is parsed by Fastify's own
  // JSON parser (prototype-poisoning checks, its error answers), as before.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  // A body kept as received: JSON bytes, or text (a text/plain body, read as JSON as it always was).
  const rawBody = (request: FastifyRequest): Buffer | string | undefined => (Buffer.isBuffer(request.body) || typeof request.body === 'string' ? request.body : undefined);
  const jsonOf = (request: FastifyRequest): Promise<unknown> => {
    const raw = rawBody(request);
    if (raw === undefined) return Promise.resolve(request.body);
    return new Promise((resolve, reject) => {
      parseJson(request, typeof raw === 'string' ? raw : raw.toString('utf8'), (error: Error | null, value?: unknown) => (error ? reject(error) : resolve(value)));
    });
  };
  const evaluator = deps.evaluator ?? inThreadEvaluator;

  app.get('/cds-services', async () => ({ services: [...servicesOf(deps.knowledge()).values()].map(discoveryEntry) }));

  let inFlight = 0;
  const maxInFlight = deps.maxInFlight ?? 64;
  app.post<{ Params: ServiceParams }>('/cds-services/:id', async (request, reply) => {
    const started = performance.now();
    const prepared = deps.knowledge();
    const service = servicesOf(prepared).get(request.params.id);
    if (!service) return sendProblem(reply, { title: 'Unknown CDS service', status: 404, detail: `no service "${request.params.id}"; GET /cds-services lists them` });
    // A call answered without cards (busy, invalid, failed) is an invocation too; ids it did not give are ''.
    const unanswered = (status: number, ids: CallIdentifiers = NO_IDS): Promise<void> => auditUnanswered({ service, prepared, started, request, ...ids }, status);
    if (inFlight >= maxInFlight) {
      await unanswered(503);
      reply.header('Retry-After', '1');
      return sendProblem(reply, { title: 'Service busy', status: 503, detail: `${inFlight} calls are being evaluated; retry in a second` });
    }
    inFlight++;
    try {
      return await answerServiceCall(request, reply, { service, prepared, started }, unanswered);
    } catch (error) {
      const status = (error as { statusCode?: unknown }).statusCode;
      await unanswered(typeof status === 'number' && status >= 400 && status < 600 ? status : 500);
      throw error;
    } finally {
      inFlight--;
    }
  });

  /** A 400 problem listing each field at fault. */
  const invalid = (reply: FastifyReply, title: string, issues: readonly RequestIssue[]): FastifyReply =>
    sendProblem(reply, { title, status: 400, detail: issues.map((i) => `${i.field}: ${i.message}`).join('; '), issues });
  const invalidRequest = (reply: FastifyReply, issues: readonly RequestIssue[]): FastifyReply => invalid(reply, 'Invalid CDS Hooks request', issues);
  const notTheClientsServer: RequestIssue = { field: 'fhirServer', message: 'not a FHIR server this CDS client is configured with (its fhirServers)' };

  const answerServiceCall = async (
    request: FastifyRequest<{ Params: ServiceParams }>,
    reply: FastifyReply,
    { service, prepared, started }: Pick<Invocation, 'service' | 'prepared' | 'started'>,
    unanswered: (status: number, ids?: CallIdentifiers) => Promise<void>,
  ): Promise<unknown> => {
    const raw = rawBody(request);
    const quick = raw !== undefined ? await evaluator.evaluate(prepared, service, raw, deps.now().toISOString()) : ({ kind: 'fallback' } as const);
    if (quick.kind === 'invalid') {
      await unanswered(400, quick);
      return invalidRequest(reply, quick.issues);
    }
    if (quick.kind === 'evaluated') {
      const { evaluation } = quick;
      // Refused even when the prefetch left nothing to read from it: the answer must not depend on what was prefetched.
      if (!fhirServerAllowed(quick.fhirServer, request.cdsFhirServers)) {
        await unanswered(400, quick);
        return invalidRequest(reply, [notTheClientsServer]);
      }
      return respond({ service, prepared, started, request, hookInstance: quick.hookInstance, patientId: quick.patientId, evaluation });
    }
    // The full path: the body parsed here, missing data fetched from the FHIR server or the local copy.
    const parsed = parseHookRequest(await jsonOf(request), service.hook);
    if (!parsed.ok) {
      await unanswered(400, parsed);
      return invalidRequest(reply, parsed.issues);
    }
    const { request: hookRequest, context } = parsed;
    if (!fhirServerAllowed(hookRequest.fhirServer, request.cdsFhirServers)) {
      await unanswered(400, { hookInstance: hookRequest.hookInstance, patientId: String(context.patientId) });
      return invalidRequest(reply, [notTheClientsServer]);
    }
    const data = await assemblePatientData({
      templates: service.prefetch,
      context,
      prefetch: hookRequest.prefetch,
      ...(hookRequest.fhirServer ? { fhirServer: hookRequest.fhirServer } : {}),
      ...(hookRequest.fhirAuthorization ? { fhirAuthorization: hookRequest.fhirAuthorization } : {}),
      ...(deps.localSource ? { localSource: deps.localSource } : {}),
      ...(deps.fhirBudgetMs ? { budgetMs: deps.fhirBudgetMs } : {}),
      ...(deps.fetch ? { fetch: deps.fetch } : {}),
      // As the fast path asks: a drug named only by reference must be read, or the call cannot be answered.
      followReferences: ['Medication'],
    });
    const patientId = String(context.patientId);
    // Missing, partial or unresolved data is 412, never evaluated as if complete: a missed order
    // (an opioid with a benzodiazepine) is a warning not shown.
    const shortfall = shortfallOf(data, service.prefetch);
    if (shortfall) {
      // A call answered 412 is an invocation too: the audit trail shows the EHR could not give the data.
      await auditUnanswered({ service, prepared, started, request, hookInstance: hookRequest.hookInstance, patientId }, 412);
      return sendProblem(reply, {
        title: 'Prefetch data missing',
        status: 412,
        detail: shortfall.detail,
        missing: shortfall.missing,
        ...(shortfall.unresolved.length > 0 ? { unresolved: shortfall.unresolved } : {}),
      });
    }
    const evaluatedAt = deps.now().toISOString();
    const evaluation = await evaluatePatient(prepared, data.resources, {
      evaluatedAt,
      hook: service.hook,
      context,
      hookInstance: hookRequest.hookInstance,
      ruleIds: service.ruleIds,
    });
    return respond({ service, prepared, started, request, hookInstance: hookRequest.hookInstance, patientId, evaluation });
  };

  interface Invocation {
    readonly service: CdsService;
    readonly prepared: PreparedKnowledge;
    readonly started: number;
    readonly request: FastifyRequest;
    readonly hookInstance: string;
    readonly patientId: string;
  }

  const audit = (call: Invocation, status: number, cards: readonly IssuedCard[], counts: { suppressed: number; ruleErrors: number }, at: string): Promise<void> => {
    audited.add(call.request);
    return deps.store.recordInvocation({
      serviceId: call.service.id,
      hook: call.service.hook,
      hookInstance: call.hookInstance,
      client: call.request.cdsClient ?? 'unknown',
      patientId: call.patientId,
      knowledgeVersion: call.prepared.knowledge.version,
      at,
      durationMs: Math.round(performance.now() - call.started),
      status,
      cards,
      ...counts,
    });
  };
  /** A call answered without cards (refused, busy, invalid, data missing, failed): no cards, nothing suppressed. */
  const auditUnanswered = (call: Invocation, status: number): Promise<void> => audit(call, status, [], { suppressed: 0, ruleErrors: 0 }, deps.now().toISOString());

  /** respond turns an evaluation into the cards response: snoozed rules silenced, cards recorded for feedback, the call audited. */
  const respond = async (call: Invocation & { readonly evaluation: PatientEvaluation }): Promise<unknown> => {
    const { service, hookInstance, patientId, evaluation } = call;
    const { evaluatedAt } = evaluation;
    const snoozed = await deps.store.snoozedRules(call.request.cdsClient ?? 'unknown', patientId, evaluatedAt);
    // A rule that failed answers a card saying it was not checked: silence would read as "nothing found".
    const notEvaluated = notEvaluatedCards(call.prepared, evaluation.errors, { hook: service.hook, hookInstance, patientId, evaluatedAt });
    const decisions = [...evaluation.decisions.filter((d): d is CardDecision => d.kind === 'card'), ...notEvaluated];
    const shown = decisions.filter((d) => !snoozed.has(d.ruleId));
    for (const error of evaluation.errors) call.request.log.error({ ruleId: error.ruleId, library: error.library, error: error.message }, 'rule failed');
    const cards: IssuedCard[] = shown.map((d) => ({
      uuid: d.card.uuid,
      serviceId: service.id,
      hook: service.hook,
      hookInstance,
      patientId,
      ruleId: d.ruleId,
      ruleVersion: d.ruleVersion,
      knowledgeVersion: d.knowledgeVersion,
      indicator: d.card.indicator,
      issuedAt: evaluatedAt,
      client: call.request.cdsClient ?? 'unknown',
      suggestions: (d.card.suggestions ?? []).flatMap((suggestion) => (suggestion.uuid ? [suggestion.uuid] : [])),
      overrideReasons: (d.card.overrideReasons ?? []).map(({ system, code }) => ({ system, code })),
    }));
    await audit(call, 200, cards, { suppressed: decisions.length - shown.length, ruleErrors: evaluation.errors.length }, evaluatedAt);
    const systemActions = evaluation.decisions.flatMap((d) => (d.kind === 'system-action' && !snoozed.has(d.ruleId) ? d.actions : []));
    return { cards: shown.map((d) => d.card), ...(systemActions.length ? { systemActions } : {}) };
  };

  app.post<{ Params: ServiceParams }>('/cds-services/:id/feedback', async (request, reply) => {
    const service = servicesOf(deps.knowledge()).get(request.params.id);
    if (!service) return sendProblem(reply, { title: 'Unknown CDS service', status: 404, detail: `no service "${request.params.id}"` });
    const parsed = FeedbackRequestSchema.safeParse(await jsonOf(request));
    // At most a few issues, each id in them cut short: a 400 does not echo a megabyte body back.
    const invalidFeedback = (issues: readonly RequestIssue[]): FastifyReply => invalid(reply, 'Invalid feedback', firstIssues(issues));
    if (!parsed.success) return invalidFeedback(parsed.error.issues.map((i) => ({ field: i.path.join('.') || '(body)', message: i.message })));
    const receivedAt = deps.now().toISOString();
    const future = futureOutcomes(parsed.data, receivedAt);
    if (future.length > 0) return invalidFeedback(future);
    const uuids = parsed.data.feedback.map((f) => f.card);
    const issued = await deps.store.findCards(uuids);
    const client = request.cdsClient ?? 'unknown';
    // A card issued to another client is unknown to this one (feedback, and snoozes, are the issuing EHR's to give).
    const unknown = uuids.filter((uuid) => {
      const card = issued.get(uuid);
      return card?.serviceId !== service.id || (card.client !== '' && card.client !== client);
    });
    if (unknown.length > 0) {
      return sendProblem(reply, { title: 'Unknown card', status: 404, detail: `service "${service.id}" never issued card ${echoIds(unknown)}` });
    }
    const notOffered = parsed.data.feedback.flatMap((item, i) =>
      (item.acceptedSuggestions ?? []).flatMap((suggestion, j) => {
        const offered = issued.get(item.card)?.suggestions;
        return offered && !offered.includes(suggestion.id) ? [{ field: `feedback.${i}.acceptedSuggestions.${j}.id`, message: `card ${echoId(item.card)} offered no suggestion "${echoId(suggestion.id)}"` }] : [];
      }),
    );
    if (notOffered.length > 0) return invalidFeedback(notOffered);
    const rules = deps.knowledge().knowledge.rules;
    const { records, snoozes } = toRecords(parsed.data, {
      serviceId: service.id,
      client,
      receivedAt,
      cardOwner: (uuid) => issued.get(uuid),
      // What the card offered when issued; for a card stored before that was kept, what its rule offers now.
      offeredReasons: (uuid) => {
        const card = issued.get(uuid);
        return card?.overrideReasons ?? rules.find(({ rule }) => rule.id === card?.ruleId)?.rule.outcome.card?.overrideReasons;
      },
    });
    const result = await deps.store.recordFeedback(records, snoozes);
    return reply.code(200).send(result);
  });
}
