import { decodeJwt, decodeProtectedHeader } from 'jose';
import { z } from 'zod';
import { ALLOWED_ALGS, type AllowedAlg } from './config.ts';

/**
 * Pure checks of a CDS client's bearer JWT: header shape before any key is chosen, claims after
 * the signature is verified. Time comes in as `nowSeconds`; nothing here reads a clock.
 * {@link https://cds-hooks.hl7.org/2.0.1/#trusting-cds-clients CDS Hooks 2.0.1 §Trusting CDS Clients}
 */

/** Precise, stable reasons for a failed authentication: for logs, never for the caller. */
export type AuthFailureReason =
  | 'missing authorization'
  | 'not a bearer token'
  | 'malformed token'
  | 'alg not allowed'
  | 'missing typ'
  | 'typ not JWT'
  | 'missing kid'
  | 'missing iss'
  | 'issuer not allowed'
  | 'jku not allowed'
  | 'unknown kid'
  | 'jwks fetch failed'
  | 'key alg mismatch'
  | 'bad signature'
  | 'missing aud'
  | 'missing exp'
  | 'missing iat'
  | 'missing jti'
  | 'invalid claims'
  | 'audience mismatch'
  | 'expired'
  | 'issued in the future'
  | 'not yet valid'
  | 'lifetime too long'
  | 'subject not allowed'
  | 'replayed jti'
  | 'replay cache full'
  | 'client not allowed for service'
  | 'verification error';

export type Check<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: AuthFailureReason; readonly detail?: string };

const fail = (reason: AuthFailureReason, detail?: string): Check<never> => (detail === undefined ? { ok: false, reason } : { ok: false, reason, detail });

/** Longer than any sane client token; refusing early bounds the work an anonymous caller can cause. */
const MAX_TOKEN_LENGTH = 8_192;
const BEARER = /^Bearer +([^\s]+) *$/i;
// An empty signature passes here so that `alg: none` is reported as such by checkHeader.
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** bearerToken extracts the compact JWS of an `Authorization: Bearer <JWT>` header value. */
export function bearerToken(authorization: string | undefined): Check<string> {
  if (authorization === undefined || authorization.trim() === '') return fail('missing authorization');
  const match = BEARER.exec(authorization);
  if (!match?.[1]) return fail('not a bearer token');
  const token = match[1];
  if (token.length > MAX_TOKEN_LENGTH) return fail('malformed token', `longer than ${MAX_TOKEN_LENGTH} characters`);
  if (!COMPACT_JWS.test(token)) return fail('malformed token', 'not a compact JWS');
  return { ok: true, value: token };
}

/** The header fields we act on, checked before any key is chosen. */
export interface TokenHeader {
  readonly alg: AllowedAlg;
  readonly kid: string;
  readonly jku: string | undefined;
}

/** checkHeader accepts only ES384/RS384, `typ` JWT and a `kid`; `none` and HMAC never pass. */
export function checkHeader(token: string): Check<TokenHeader> {
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(token) as Record<string, unknown>;
  } catch {
    return fail('malformed token', 'header is not base64url JSON');
  }
  const alg = header.alg;
  if (typeof alg !== 'string' || !(ALLOWED_ALGS as readonly string[]).includes(alg)) {
    return fail('alg not allowed', `alg ${JSON.stringify(alg ?? null).slice(0, 40)}`);
  }
  if (header.typ === undefined) return fail('missing typ');
  // RFC 7515 §4.1.9: typ values are compared case-insensitively.
  if (typeof header.typ !== 'string' || header.typ.toUpperCase() !== 'JWT') return fail('typ not JWT');
  if (typeof header.kid !== 'string' || header.kid === '') return fail('missing kid');
  if (header.jku !== undefined && typeof header.jku !== 'string') return fail('malformed token', 'jku is not a string');
  // RFC 7515 §4.1.11: a critical extension not understood must be refused; we understand none.
  if (header.crit !== undefined) return fail('malformed token', 'crit header: no extensions are supported');
  return { ok: true, value: { alg: alg as AllowedAlg, kid: header.kid, jku: header.jku } };
}

/** unverifiedIssuer reads `iss` to choose the client's keys; nothing else of an unverified payload is trusted. */
export function unverifiedIssuer(token: string): Check<string> {
  let payload: Record<string, unknown>;
  try {
    payload = decodeJwt(token);
  } catch {
    return fail('malformed token', 'payload is not base64url JSON');
  }
  if (typeof payload.iss !== 'string' || payload.iss === '') return fail('missing iss');
  return { ok: true, value: payload.iss };
}

const REQUIRED_CLAIMS = ['iss', 'aud', 'exp', 'iat', 'jti'] as const;

const ClaimsSchema = z.looseObject({
  iss: z.string().min(1),
  // The spec allows a string or an array of strings.
  aud: z.union([z.string(), z.array(z.string())]),
  exp: z.number().finite(),
  iat: z.number().finite(),
  nbf: z.number().finite().optional(),
  jti: z.string().min(1),
  sub: z.string().optional(),
  tenant: z.string().optional(),
});

export type Claims = z.infer<typeof ClaimsSchema>;

export interface ClaimRules {
  readonly audience: string;
  readonly nowSeconds: number;
  readonly leewaySeconds: number;
  /**
   * How far after now exp may be (leeway added). Bounded from now, not from iat (only the client's
   * word: the spec's example token claims 3.5 years): a jti holds replay-cache room until exp.
   */
  readonly maxTokenLifetimeSeconds: number;
}

/** checkClaims validates the verified payload: required claims, exact audience, and times with leeway. */
export function checkClaims(payload: unknown, rules: ClaimRules): Check<Claims> {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return fail('invalid claims', 'payload is not an object');
  for (const claim of REQUIRED_CLAIMS) if (!(claim in payload)) return fail(`missing ${claim}`);
  const parsed = ClaimsSchema.safeParse(payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return fail('invalid claims', issue ? `${issue.path.join('.')}: ${issue.message}` : undefined);
  }
  const claims = parsed.data;
  const audiences = typeof claims.aud === 'string' ? [claims.aud] : claims.aud;
  if (!audiences.includes(rules.audience)) return fail('audience mismatch');
  const { nowSeconds, leewaySeconds } = rules;
  if (nowSeconds >= claims.exp + leewaySeconds) return fail('expired', `exp ${claims.exp}, now ${Math.floor(nowSeconds)}`);
  if (claims.iat > nowSeconds + leewaySeconds) return fail('issued in the future', `iat ${claims.iat}, now ${Math.floor(nowSeconds)}`);
  if (claims.nbf !== undefined && claims.nbf > nowSeconds + leewaySeconds) return fail('not yet valid', `nbf ${claims.nbf}`);
  if (claims.exp > nowSeconds + rules.maxTokenLifetimeSeconds + leewaySeconds) return fail('lifetime too long', `exp ${claims.exp}, now ${Math.floor(nowSeconds)}`);
  return { ok: true, value: claims };
}
