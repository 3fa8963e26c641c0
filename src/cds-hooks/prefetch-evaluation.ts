import type { PatientEvaluation } from '../domain/decisions.ts';
import { evaluatePatient } from '../evaluate/evaluate.ts';
import type { PreparedKnowledge } from '../evaluate/prepare.ts';
import { assemblePatientData, shortfallOf } from './prefetch/assemble.ts';
import { parseHookRequest, type CallIdentifiers, type RequestIssue } from './request.ts';
import type { CdsService } from './services.ts';

/**
 * What a service call comes to when all it needs is in its body: the common case (the EHR sent
 * every prefetch key), which needs no network, no database and no Fastify, so it can run on a
 * worker thread from the raw body text.
 */
export type PrefetchOutcome =
  /** The call needs what only the full path has: the FHIR server, the local copy, or Fastify's JSON parser and its error answers. */
  | { readonly kind: 'fallback' }
  | ({ readonly kind: 'invalid'; readonly issues: readonly RequestIssue[] } & CallIdentifiers)
  /** `fhirServer`: the one the call names, unused here but checked against the client's by the caller. */
  | { readonly kind: 'evaluated'; readonly hookInstance: string; readonly patientId: string; readonly fhirServer?: string; readonly evaluation: PatientEvaluation };

/**
 * A call's body as received: its bytes (UTF-8, decoded as Fastify's JSON parser decodes them), or
 * its text. Bytes travel to a worker thread as one copy; text is decoded and copied on the way.
 */
export type CallBody = string | Uint8Array;

/**
 * Bodies naming `__proto__` or `constructor` go the full path, whose parser refuses prototype
 * poisoning; `JSON.parse` here would accept them. (Two substring searches: a tenth of the regular
 * expression's time over a 100 KB body.)
 */
function mayPoison(body: string): boolean {
  return body.includes('"__proto__"') || body.includes('"constructor"');
}

/**
 * evaluateFromPrefetch answers one service call from its body alone, exactly as the full path in
 * routes.ts would when no data is missing: same request validation, same data assembly, same
 * evaluation. Anything else (unparseable JSON, missing or partial prefetch, an evaluation that
 * throws, a Medication referenced by id and not in the body) is `fallback`, for the full path to answer.
 */
export async function evaluateFromPrefetch(prepared: PreparedKnowledge, service: CdsService, body: CallBody, evaluatedAt: string): Promise<PrefetchOutcome> {
  const text = typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  if (mayPoison(text)) return { kind: 'fallback' };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { kind: 'fallback' };
  }
  const parsed = parseHookRequest(json, service.hook);
  if (!parsed.ok) return { kind: 'invalid', issues: parsed.issues, hookInstance: parsed.hookInstance, patientId: parsed.patientId };
  const { request, context } = parsed;
  try {
    // With no network here, a `Medication/<id>` the body does not hold is unresolved: the full path reads it.
    const data = await assemblePatientData({ templates: service.prefetch, context, prefetch: request.prefetch, followReferences: ['Medication'] });
    if (shortfallOf(data, service.prefetch)) return { kind: 'fallback' };
    const evaluation = await evaluatePatient(prepared, data.resources, { evaluatedAt, hook: service.hook, context, hookInstance: request.hookInstance, ruleIds: service.ruleIds });
    return { kind: 'evaluated', hookInstance: request.hookInstance, patientId: String(context.patientId), ...(request.fhirServer ? { fhirServer: request.fhirServer } : {}), evaluation };
  } catch {
    return { kind: 'fallback' };
  }
}
