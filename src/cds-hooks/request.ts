import { z } from 'zod';
import { ContextPatientId, parseHookContext, type RequestIssue } from '../domain/hook-context.ts';
import { HOOK_IDS, type HookId } from '../domain/hooks.ts';
import { isRecord } from '../domain/json.ts';

/**
 * CDS Hooks 2.0 service request ({@link https://cds-hooks.hl7.org/2.0/#http-request-1}), parsed with
 * zod at the edge so every problem names its field. The context each hook requires is in
 * src/domain/hook-context.ts, shared with the rule test cases.
 */

export { HOOK_CONTEXTS, type RequestIssue } from '../domain/hook-context.ts';

const FhirAuthorization = z.strictObject({
  access_token: z.string().min(1),
  token_type: z.literal('Bearer'),
  expires_in: z.number().int().nonnegative(),
  scope: z.string().min(1),
  subject: z.string().min(1),
  patient: z.string().optional(),
});

export const HookRequestSchema = z.looseObject({
  hook: z.string().min(1),
  // A UUID by the spec; some clients send other ids (the opioid CDS requests), so any short string.
  hookInstance: z.string().min(1).max(256),
  fhirServer: z.url().optional(),
  fhirAuthorization: FhirAuthorization.optional(),
  context: z.record(z.string(), z.unknown()),
  prefetch: z.record(z.string(), z.unknown()).optional(),
  extension: z.unknown().optional(),
});

export type HookRequest = z.infer<typeof HookRequestSchema>;

export type ParsedHookRequest =
  | { readonly ok: true; readonly request: HookRequest; readonly hook: HookId; readonly context: Record<string, unknown> }
  | ({ readonly ok: false; readonly issues: readonly RequestIssue[] } & CallIdentifiers);

/** The ids an audit record names; '' where the body has none, or one that is malformed. */
export interface CallIdentifiers {
  readonly hookInstance: string;
  readonly patientId: string;
}

/** callIdentifiers reads the ids of a call from its body, valid or not, so a refused call is audited under them. */
export function callIdentifiers(body: unknown): CallIdentifiers {
  const fields = isRecord(body) ? body : {};
  const context = isRecord(fields.context) ? fields.context : {};
  const hookInstance = HookRequestSchema.shape.hookInstance.safeParse(fields.hookInstance);
  const patientId = ContextPatientId.safeParse(context.patientId);
  return { hookInstance: hookInstance.success ? hookInstance.data : '', patientId: patientId.success ? patientId.data : '' };
}

function issuesOf(error: z.ZodError, prefix: string[] = []): RequestIssue[] {
  return error.issues.map((issue) => ({ field: [...prefix, ...issue.path.map(String)].join('.') || '(body)', message: issue.message }));
}

/**
 * Deeper than any hook context needs. The context is hashed recursively into card ids, so a deeper
 * one would overflow the stack (a 500); it is refused first. (Prefetch is never walked so: a
 * resource is read only as deep as the CQL asks.)
 */
const MAX_DEPTH = 100;

/** depthExceeds walks `value` without recursion, stopping as soon as it finds nesting past `limit`. */
function depthExceeds(value: unknown, limit: number): boolean {
  const values: unknown[] = [value];
  const depths: number[] = [0];
  for (let next = values.pop(), depth = depths.pop() ?? 0; next !== undefined; next = values.pop(), depth = depths.pop() ?? 0) {
    if (next === null || typeof next !== 'object') continue;
    if (depth >= limit) return true;
    for (const child of Array.isArray(next) ? next : Object.values(next)) {
      if (child !== null && typeof child === 'object') {
        values.push(child);
        depths.push(depth + 1);
      }
    }
  }
  return false;
}

function refused(body: unknown, issues: readonly RequestIssue[]): ParsedHookRequest {
  return { ok: false, issues, ...callIdentifiers(body) };
}

/** parseHookRequest validates a request body for a service that answers `serviceHook`. */
export function parseHookRequest(body: unknown, serviceHook: HookId): ParsedHookRequest {
  const parsed = HookRequestSchema.safeParse(body);
  if (!parsed.success) return refused(body, issuesOf(parsed.error));
  const request = parsed.data;
  if (depthExceeds(request.context, MAX_DEPTH)) return refused(body, [{ field: 'context', message: `nested more than ${MAX_DEPTH} levels deep; no hook context is` }]);
  // Checked here, not with zod's superRefine: zod 4.6's superRefine keeps each parsed body reachable
  // until a full GC, so every call's whole prefetch was promoted to the old generation (measured:
  // ~170 KB a call; scavenges of 6-20 ms in the evaluation workers, frequent mark-compacts).
  if (request.fhirAuthorization && !request.fhirServer) return refused(body, [{ field: 'fhirServer', message: 'required when fhirAuthorization is given' }]);
  if (request.hook !== serviceHook) {
    const known = (HOOK_IDS as readonly string[]).includes(request.hook);
    return refused(body, [{ field: 'hook', message: `this service answers ${serviceHook}, not ${known ? '' : 'unknown hook '}${request.hook}` }]);
  }
  const context = parseHookContext(serviceHook, request.context);
  if (!context.ok) return refused(body, context.issues);
  return { ok: true, request, hook: serviceHook, context: context.context };
}
