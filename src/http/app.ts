import cors from '@fastify/cors';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { cdsHooksRoutes, type CdsHooksDeps } from '../cds-hooks/routes.ts';
import { dashboardRoutes, type DashboardDeps } from '../dashboards/routes.ts';
import { adminRoutes, type AdminDeps } from './admin-routes.ts';
import { quoteInput, sendProblem } from './problem.ts';

export interface AppOptions {
  readonly cdsHooks: CdsHooksDeps;
  /** The report API (`/api/`) and web dashboards (`/dashboards/`); absent: not served. */
  readonly dashboards?: DashboardDeps;
  /** Knowledge administration (`/api/admin/knowledge`: reload, restore, history); absent: not served. */
  readonly admin?: AdminDeps;
  /** Origins allowed to call from a browser (e.g. the CDS Hooks sandbox); echoed back, never `*`. */
  readonly corsOrigins: readonly string[];
  /** Largest accepted request body in bytes; larger gets 413. */
  readonly bodyLimit: number;
  readonly logger?: FastifyServerOptions['logger'];
}

/**
 * One access line per request, when it completes (method, path, status, time; never a body).
 * Fastify's default writes two, on arrival (with the caller's address and port) and on completion;
 * the arrival line says nothing the completion line does not, and costs a serialisation per call.
 */
class AccessLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    const line = { method: request.method, url: request.url, statusCode: reply.statusCode, responseTime: reply.elapsedTime };
    if (error) reply.log.error({ ...line, err: error }, 'request errored');
    else reply.log.info(line, 'request completed');
  }
}

/**
 * buildApp assembles the HTTP service (it never listens: main does, tests use `app.inject`).
 * Every error leaves as `application/problem+json`; request bodies are never logged.
 */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit,
    logController: new AccessLog(),
  });

  await app.register(cors, {
    origin: (origin, callback) => callback(null, origin !== undefined && options.corsOrigins.includes(origin)),
    methods: ['GET', 'POST', 'OPTIONS'],
    allowedHeaders: ['Content-Type', 'Authorization'],
    credentials: true,
    maxAge: 600,
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    const title =
      status === 413 ? 'Request body too large'
      : status === 415 ? 'Unsupported media type'
      : status === 400 ? 'Malformed request'
      : status >= 500 ? 'Internal error'
      : 'Request failed';
    const detail =
      status === 413 ? `the body exceeds ${options.bodyLimit} bytes`
      : status >= 500 ? 'the service could not process this request; it has been logged'
      : error.message;
    return sendProblem(reply, { title, status, detail, ...(error.code ? { code: error.code } : {}) });
  });

  app.setNotFoundHandler((request, reply) => sendProblem(reply, { title: 'Not found', status: 404, detail: `no route ${request.method} ${quoteInput(request.url.split('?')[0] ?? '', 200)}` }));

  // Bodies are read as sent: a compressed one would only fail as "not JSON", so say what is wrong.
  // (preParsing: after the CDS routes' authentication, so an untrusted caller still gets 401 first.)
  app.addHook('preParsing', async (request, _reply, payload) => {
    const encoding = request.headers['content-encoding']?.trim().toLowerCase();
    if (encoding && encoding !== 'identity') throw Object.assign(new Error(`Content-Encoding ${quoteInput(encoding, 40)} is not supported: send the body uncompressed`), { statusCode: 415 });
    return payload;
  });

  await app.register(async (scope) => cdsHooksRoutes(scope, options.cdsHooks));
  const dashboards = options.dashboards;
  if (dashboards) await app.register(async (scope) => dashboardRoutes(scope, dashboards));
  const admin = options.admin;
  if (admin) await app.register(async (scope) => adminRoutes(scope, admin));
  return app;
}
