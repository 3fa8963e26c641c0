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

/** cutInput is what a caller sent, as a problem echoes it: at most `max` characters, then an ellipsis (never half a surrogate pair). An error must not echo a megabyte back. */
export function cutInput(value: string, max: number): string {
  if (value.length <= max) return value;
  const cut = value.slice(0, max);
  return `${/[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut}…`;
}

/** quoteInput quotes what a caller sent for a problem's detail, cut by {@link cutInput}. */
export function quoteInput(value: string, max = 100): string {
  return JSON.stringify(cutInput(value, max));
}
