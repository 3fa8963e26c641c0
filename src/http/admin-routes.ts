import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ActivationResult, KnowledgeActivation } from '../authoring/activation.ts';
import { authenticate, credentialOf, type DashboardAccess, type DashboardUser, type Role } from '../dashboards/access.ts';
import { formatProblem } from '../domain/errors.ts';
import { sendProblem } from './problem.ts';

/** Who may change what knowledge serves. */
export const KNOWLEDGE_ADMIN_ROLES: readonly Role[] = ['informaticist', 'admin'];

export interface AdminDeps {
  readonly activation: KnowledgeActivation;
  /** The dashboards' users and roles (API keys or OIDC tokens). */
  readonly access: DashboardAccess;
}



async function informaticist(deps: AdminDeps, request: FastifyRequest, reply: FastifyReply): Promise<DashboardUser | undefined> {
  const result = await authenticate(deps.access, credentialOf(request.headers));
  if (!result.ok) {
    void sendProblem(reply.header('WWW-Authenticate', 'Bearer realm="cairn-admin"'), { title: 'Sign-in required', status: 401, detail: result.reason });
    return undefined;
  }
  if (!KNOWLEDGE_ADMIN_ROLES.includes(result.user.role)) {
    void sendProblem(reply, { title: 'Forbidden', status: 403, detail: `role "${result.user.role}" may not change the serving knowledge (needs ${KNOWLEDGE_ADMIN_ROLES.join(' or ')})` });
    return undefined;
  }
  return result.user;
}

function answer(reply: FastifyReply, result: ActivationResult): FastifyReply {
  if (result.activated) return reply.send({ activated: true, unchanged: result.unchanged, ...result.record });
  if (!result.record && result.problems.length === 0) return sendProblem(reply, { title: 'No such knowledge version', status: 404, detail: result.message });
  return sendProblem(reply, {
    title: 'Knowledge refused',
    status: 422,
    code: 'KNOWLEDGE_INVALID',
    detail: `${result.message}; the previous knowledge keeps serving`,
    problems: result.problems.map((p) => ({ ...p, text: formatProblem(p) })),
    ...(result.record ? { record: result.record } : {}),
  });
}

/**
 * adminRoutes registers the knowledge administration API under `/api/admin/knowledge`: the serving
 * version, the activation history, and reload / restore, each for an `informaticist` or `admin`.
 * A refused set answers 422 problem+json listing every problem and failed test case.
 */
export async function adminRoutes(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  app.get('/api/admin/knowledge', async (request, reply) => {
    if (!(await informaticist(deps, request, reply))) return reply;
    const { knowledge } = deps.activation.active.current;
    return { version: knowledge.version, rules: knowledge.rules.map(({ rule }) => ({ id: rule.id, version: rule.version, status: rule.status })) };
  });

  app.get('/api/admin/knowledge/activations', async (request, reply) => {
    if (!(await informaticist(deps, request, reply))) return reply;
    return { activations: await deps.activation.history.records() };
  });

  app.post('/api/admin/knowledge/reload', async (request, reply) => {
    const user = await informaticist(deps, request, reply);
    if (!user) return reply;
    return answer(reply, await deps.activation.activate({ actor: user.name, trigger: 'api' }));
  });

  app.post('/api/admin/knowledge/restore', async (request, reply) => {
    const user = await informaticist(deps, request, reply);
    if (!user) return reply;
    const body = z.object({ version: z.string().min(1).max(64).optional() }).safeParse(request.body ?? {});
    if (!body.success) return sendProblem(reply, { title: 'Malformed request', status: 400, code: 'INPUT_INVALID', detail: 'send {} or {"version": "…"}', field: 'version' });
    return answer(reply, await deps.activation.restore(user.name, body.data.version));
  });
}
