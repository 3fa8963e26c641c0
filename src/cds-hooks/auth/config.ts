import { z } from 'zod';
import { CairnError, type Problem } from '../../domain/errors.ts';
import { jsonPath } from '../../knowledge/zod-problems.ts';

/**
 * Configuration of CDS client authentication.
 * {@link https://cds-hooks.hl7.org/2.0.1/#trusting-cds-clients CDS Hooks 2.0.1 §Trusting CDS Clients}
 */

/** The only signature algorithms we accept; the spec names ES384 and RS384. */
export const ALLOWED_ALGS = ['ES384', 'RS384'] as const;
export type AllowedAlg = (typeof ALLOWED_ALGS)[number];

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** A JWKS URL: https, or http only on a loopback host (local trials and tests). */
const JwksUrlSchema = z.url().refine(
  (value) => {
    const url = new URL(value);
    return url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname));
  },
  { message: 'a jku URL must use https (http only on 127.0.0.1, localhost or [::1])' },
);

/** Members that only private or symmetric keys carry; a client configuration must never hold them. */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/** A public signing key of a CDS client: EC P-384 (ES384) or RSA (RS384), with a `kid`. */
const PublicJwkSchema = z
  .looseObject({
    kty: z.enum(['EC', 'RSA']),
    kid: z.string().min(1),
    use: z.literal('sig').optional(),
    alg: z.enum(ALLOWED_ALGS).optional(),
    crv: z.string().optional(),
    x: z.string().optional(),
    y: z.string().optional(),
    n: z.string().optional(),
    e: z.string().optional(),
  })
  .superRefine((jwk, ctx) => {
    for (const member of PRIVATE_JWK_MEMBERS) {
      if (member in jwk) ctx.addIssue({ code: 'custom', path: [member], message: `a client key must be public: remove "${member}"` });
    }
    if (jwk.kty === 'EC') {
      if (jwk.crv !== 'P-384') ctx.addIssue({ code: 'custom', path: ['crv'], message: 'an EC key must use crv "P-384" (ES384)' });
      if (!jwk.x || !jwk.y) ctx.addIssue({ code: 'custom', path: ['x'], message: 'an EC key needs "x" and "y"' });
      if (jwk.alg !== undefined && jwk.alg !== 'ES384') ctx.addIssue({ code: 'custom', path: ['alg'], message: 'an EC key must have alg "ES384"' });
    } else {
      if (!jwk.n || !jwk.e) ctx.addIssue({ code: 'custom', path: ['n'], message: 'an RSA key needs "n" and "e"' });
      if (jwk.alg !== undefined && jwk.alg !== 'RS384') ctx.addIssue({ code: 'custom', path: ['alg'], message: 'an RSA key must have alg "RS384"' });
    }
  });

const JwksSchema = z.strictObject({ keys: z.array(PublicJwkSchema).min(1) }).superRefine((jwks, ctx) => {
  const seen = new Set<string>();
  jwks.keys.forEach((key, index) => {
    if (seen.has(key.kid)) ctx.addIssue({ code: 'custom', path: ['keys', index, 'kid'], message: `duplicate kid "${key.kid}"` });
    seen.add(key.kid);
  });
});

/** One trusted CDS client (an EHR), identified by its `iss`. */
export const ClientConfigSchema = z
  .strictObject({
    /** Free text for humans, e.g. where the public key came from. Ignored. */
    $comment: z.string().optional(),
    /** A label for logs. */
    name: z.string().min(1).optional(),
    /** The exact `iss` claim the client puts in its tokens. */
    iss: z.string().min(1),
    /** The client's public keys, inline. */
    jwks: JwksSchema.optional(),
    /** Allow-listed JWKS URLs: the only `jku` header values accepted, and where unknown kids are looked up. */
    jku: z.array(JwksUrlSchema).min(1).optional(),
    /** If set, the `sub` claim (the client's client_id) must be one of these. */
    sub: z.array(z.string().min(1)).min(1).optional(),
    /** Service ids this client may call, or '*' for all (default). Discovery is open to every configured client. */
    services: z.union([z.literal('*'), z.array(z.string().min(1))]).default('*'),
    /**
     * If set, the only FHIR servers (base URLs) this client's calls may name as `fhirServer`: a call
     * naming another is refused, so a client cannot make Cairn read any URL it likes on its behalf.
     */
    fhirServers: z.array(z.url({ protocol: /^https?$/ })).min(1).transform((urls) => urls.map(fhirServerBase)).optional(),
  })
  .refine((client) => client.jwks !== undefined || client.jku !== undefined, {
    message: 'a client needs "jwks" (inline public keys) or "jku" (allow-listed JWKS URLs), or both',
  });

export type ClientConfig = z.infer<typeof ClientConfigSchema>;
export type ClientConfigInput = z.input<typeof ClientConfigSchema>;

/** A FHIR server base URL compared as URLs are: scheme and host case-insensitive, default port dropped, no trailing slash. */
export function fhirServerBase(url: string): string {
  return new URL(url).href.replace(/\/+$/, '');
}

/** fhirServerAllowed says whether a call may name `fhirServer` (undefined: it names none), given its client's `fhirServers` (undefined: any). */
export function fhirServerAllowed(fhirServer: string | undefined, allowed: readonly string[] | undefined): boolean {
  if (fhirServer === undefined || allowed === undefined) return true;
  try {
    return allowed.includes(fhirServerBase(fhirServer));
  } catch {
    return false;
  }
}

/** Limits of the remote JWKS cache. */
const JwksFetchSchema = z.strictObject({
  /** Abort a JWKS request after this long. */
  timeoutMs: z.number().int().min(100).max(30_000).default(3_000),
  /** At most one fetch per URL within this interval, however many unknown kids arrive (rate limit). */
  minRefreshIntervalSeconds: z.number().int().min(1).max(86_400).default(30),
  /** Refetch a cached key set older than this on its next use (keys get rotated and revoked). */
  maxAgeSeconds: z.number().int().min(60).max(7 * 86_400).default(3_600),
  /** Reject a JWKS response body larger than this. */
  maxBytes: z.number().int().min(1_024).max(1_048_576).default(65_536),
});

/** The whole authentication configuration. `mode: 'off'` disables authentication (local trials only). */
export const AuthConfigSchema = z
  .strictObject({
    mode: z.enum(['required', 'off']),
    clients: z.array(ClientConfigSchema).default([]),
    /** Clock skew tolerated for `exp`, `iat` and `nbf`. */
    leewaySeconds: z.number().int().min(0).max(300).default(60),
    /**
     * Reject tokens whose `exp` is further than this (plus the leeway) from now, whatever their `iat`:
     * a jti is remembered until exp, so this bounds how long a token holds replay-cache room. CDS Hooks
     * 2.0.1 sets no limit; its first draft and SMART Backend Services say five minutes.
     */
    maxTokenLifetimeSeconds: z.number().int().min(1).max(3_600).default(300),
    /** Bound of each client's jti replay cache; a client whose cache is full of unexpired entries has its new tokens refused (fail closed), and no other client's. */
    replayCacheMaxEntriesPerClient: z.number().int().min(1).max(1_000_000).default(100_000),
    jwksFetch: JwksFetchSchema.prefault({}),
  })
  .superRefine((config, ctx) => {
    if (config.mode === 'required' && config.clients.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['clients'], message: 'no trusted CDS client: add one to auth.clients or a file to clientsDir (default config/clients/; examples in config/example-clients/), or set CAIRN_AUTH=off for a local trial' });
    }
    const seen = new Map<string, number>();
    config.clients.forEach((client, index) => {
      const first = seen.get(client.iss);
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['clients', index, 'iss'], message: `duplicate iss "${client.iss}" (also clients[${first}])` });
      else seen.set(client.iss, index);
    });
  });

export type AuthConfig = z.infer<typeof AuthConfigSchema>;
export type AuthConfigInput = z.input<typeof AuthConfigSchema>;

/** parseAuthConfig validates raw configuration into a frozen AuthConfig; every problem is reported at once as CONFIG_INVALID. */
export function parseAuthConfig(raw: unknown, where: { file?: string; pathPrefix?: string } = {}): AuthConfig {
  return parseOrThrow(AuthConfigSchema, raw, where, 'authentication configuration is invalid');
}

/** parseClientConfig validates one client entry (e.g. a file of `config/clients/`). */
export function parseClientConfig(raw: unknown, where: { file?: string; pathPrefix?: string } = {}): ClientConfig {
  return parseOrThrow(ClientConfigSchema, raw, where, 'client configuration is invalid');
}

function parseOrThrow<T>(schema: z.ZodType<T>, raw: unknown, where: { file?: string; pathPrefix?: string }, summary: string): T {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return deepFreeze(parsed.data);
  const problems: Problem[] = parsed.error.issues.map((issue) => ({
    code: 'CONFIG_INVALID',
    ...(where.file === undefined ? {} : { file: where.file }),
    path: jsonPath(issue.path, where.pathPrefix ?? '$'),
    message: issue.message,
  }));
  const first = problems[0];
  const detail = first ? ` (${first.path} ${first.message}${problems.length > 1 ? `, and ${problems.length - 1} more` : ''})` : '';
  throw new CairnError('CONFIG_INVALID', `${where.file ? `${where.file}: ` : ''}${summary}${detail}`, { problems });
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
