import type { FastifyReply } from 'fastify';

/** An RFC 9457 problem details body ({@link https://www.rfc-editor.org/rfc/rfc9457}). */
export interface ProblemDetails {
  readonly type?: string;
  readonly title: string;
  readonly status: number;
  readonly detail?: string;
  readonly code?: string;
  readonly [extension: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** sendProblem answers with an `application/problem+json` body. */
export function sendProblem(reply: FastifyReply, problem: ProblemDetails): FastifyReply {
  return reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(problem);
}

/** quoteInput quotes what a caller sent for a problem's detail, cut to `max` characters: an error must not echo a megabyte back. */
export function quoteInput(value: string, max = 100): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}
