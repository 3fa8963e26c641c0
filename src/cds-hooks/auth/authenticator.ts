import { CairnError } from '../../domain/errors.ts';
import type { AuthConfig, ClientConfig } from './config.ts';
import { createJwksFetcher, importKeySet, RemoteKeySet, type JwksFetcher, type RemoteKeySetLimits, type VerificationKey } from './jwks.ts';
import { ReplayCache } from './replay.ts';
import { verifyCompactJws } from './signature.ts';
import { bearerToken, checkClaims, checkHeader, unverifiedIssuer, type AuthFailureReason, type Check, type TokenHeader } from './token.ts';

/**
 * Authentication of CDS clients by the bearer JWT every CDS Hooks call carries.
 * {@link https://cds-hooks.hl7.org/2.0.1/#trusting-cds-clients CDS Hooks 2.0.1 §Trusting CDS Clients}
 */

/** The public text of a 401: deliberately the same whatever went wrong. */
export const UNAUTHORIZED_MESSAGE = 'A valid bearer token from a trusted CDS client is required.';
/** The public text of a 403. */
export const FORBIDDEN_MESSAGE = 'This CDS client is not allowed to call this service.';
/** What the service logs at start and on every request while authentication is off. */
export const AUTH_OFF_WARNING = 'CDS client authentication is OFF: any caller can invoke every CDS service. Use only for local trials.';

/** The verified identity of the calling CDS client. */
export interface AuthenticatedClient {
  readonly iss: string;
  /** The configured client name, for logs. */
  readonly name?: string;
  /** The client_id of the CDS client, when the token carries one. */
  readonly sub?: string;
  /** The healthcare organization invoking the call, when the token carries one. */
  readonly tenant?: string;
  readonly jti: string;
  readonly kid: string;
  /** Until when (epoch seconds) the jti is refused again: the token's exp plus the leeway. */
  readonly replayUntil: number;
  /** The only FHIR server base URLs its calls may name (configured `fhirServers`); undefined: any. */
  readonly fhirServers?: readonly string[];
}

/** A jti an authenticator has accepted, as kept across restarts (see restoreClaims). */
export interface TokenClaim {
  readonly iss: string;
  readonly jti: string;
  /** Epoch seconds until which the jti must be refused again. */
  readonly until: number;
}

export type AuthResult =
  | { readonly ok: true; readonly authentication: 'verified'; readonly client: AuthenticatedClient }
  | { readonly ok: true; readonly authentication: 'off'; readonly client: undefined; readonly warning: string }
  | {
      readonly ok: false;
      readonly status: 401 | 403;
      /** Internal and precise, for the log only. */
      readonly reason: AuthFailureReason;
      /** Internal detail for the log (may quote caller input, truncated); never send it back. */
      readonly detail?: string;
      /** Public, deliberately vague: safe for the response body. */
      readonly message: string;
      /** The client a 403 refused: verified, but not allowed this service. */
      readonly client?: string;
      /** The `WWW-Authenticate` header value of a 401 (RFC 6750 §3). */
      readonly wwwAuthenticate?: string;
    };

export interface AuthenticateInput {
  /** The raw `Authorization` header. */
  readonly authorization: string | undefined;
  /** The exact endpoint URL invoked (public base URL + request path); `aud` must equal it. */
  readonly audience: string;
  /** The CDS service id, or undefined for discovery (open to every configured client). */
  readonly serviceId: string | undefined;
}

export interface ClientAuthenticator {
  readonly mode: AuthConfig['mode'];
  /** AUTH_OFF_WARNING when mode is 'off', else undefined. */
  readonly warning: string | undefined;
  /** authenticate never throws: every failure is a 401 or 403 result. */
  authenticate(input: AuthenticateInput): Promise<AuthResult>;
  /** ready imports the inline keys now and throws CONFIG_INVALID for any that cannot be used; call it at start. */
  ready(): Promise<void>;
  /**
   * restoreClaims remembers jtis accepted before a restart, so a token is still accepted at most
   * once; claims of clients no longer configured, or already expired, are ignored.
   */
  restoreClaims(claims: Iterable<TokenClaim>): void;
}

export interface AuthenticatorDeps {
  /** The clock, in epoch milliseconds. */
  readonly now: () => number;
  /** Fetches a JWKS from an allow-listed URL; defaults to fetch with the configured timeout and size cap. */
  readonly fetchJwks?: JwksFetcher;
}

/** createClientAuthenticator builds the authenticator of one configuration; its caches live as long as it does. */
export function createClientAuthenticator(config: AuthConfig, deps: AuthenticatorDeps): ClientAuthenticator {
  if (config.mode === 'off') {
    const result: AuthResult = Object.freeze({ ok: true, authentication: 'off', client: undefined, warning: AUTH_OFF_WARNING });
    return Object.freeze({ mode: 'off', warning: AUTH_OFF_WARNING, authenticate: async () => result, ready: async () => {}, restoreClaims: () => {} });
  }
  const fetchJwks = deps.fetchJwks ?? createJwksFetcher(config.jwksFetch);
  const limits: RemoteKeySetLimits = {
    minRefreshIntervalMs: config.jwksFetch.minRefreshIntervalSeconds * 1000,
    maxAgeMs: config.jwksFetch.maxAgeSeconds * 1000,
  };
  const clients = new Map(config.clients.map((client) => [client.iss, new TrustedClient(client, fetchJwks, deps.now, limits, config.replayCacheMaxEntriesPerClient)]));

  /** selectKey checks the header and picks the verification key of the configured client named by iss. */
  async function selectKey(token: string): Promise<Check<{ header: TokenHeader; client: TrustedClient; key: VerificationKey }>> {
    const header = checkHeader(token);
    if (!header.ok) return header;
    const iss = unverifiedIssuer(token);
    if (!iss.ok) return iss;
    const client = clients.get(iss.value);
    if (!client) return { ok: false, reason: 'issuer not allowed', detail: quote(iss.value) };
    const { jku, kid, alg } = header.value;
    if (jku !== undefined && !client.allowsJku(jku)) return { ok: false, reason: 'jku not allowed', detail: quote(jku) };
    const key = await client.resolve(kid, jku);
    if (!key.ok) return key;
    if (key.value.alg !== alg) return { ok: false, reason: 'key alg mismatch', detail: `token ${alg}, key ${key.value.alg}` };
    return { ok: true, value: { header: header.value, client, key: key.value } };
  }

  /** verifyPayload checks the signature with the one algorithm of the key and returns the signed payload. */
  function verifyPayload(token: string, key: VerificationKey): Check<unknown> {
    const payload = verifyCompactJws(token, key.alg, key.key);
    if (payload === undefined) return { ok: false, reason: 'bad signature' };
    try {
      return { ok: true, value: JSON.parse(payload.toString('utf8')) };
    } catch {
      return { ok: false, reason: 'malformed token', detail: 'payload is not JSON' };
    }
  }

  async function verify(input: AuthenticateInput): Promise<AuthResult> {
    const token = bearerToken(input.authorization);
    if (!token.ok) return unauthorized(token, false);
    const selected = await selectKey(token.value);
    if (!selected.ok) return unauthorized(selected, true);
    const { header, client, key } = selected.value;
    const payload = verifyPayload(token.value, key);
    if (!payload.ok) return unauthorized(payload, true);
    const nowSeconds = deps.now() / 1000;
    const claims = checkClaims(payload.value, {
      audience: input.audience,
      nowSeconds,
      leewaySeconds: config.leewaySeconds,
      maxTokenLifetimeSeconds: config.maxTokenLifetimeSeconds,
    });
    if (!claims.ok) return unauthorized(claims, true);
    const { iss, jti, sub, tenant, exp } = claims.value;
    const cfg = client.config;
    // The key was chosen by the unverified iss; the signed one must be the same.
    if (iss !== cfg.iss) return unauthorized({ ok: false, reason: 'invalid claims', detail: 'signed iss differs' }, true);
    if (cfg.sub !== undefined && (sub === undefined || !cfg.sub.includes(sub))) {
      return unauthorized({ ok: false, reason: 'subject not allowed', detail: quote(sub ?? '') }, true);
    }
    // The jti stays remembered until the token could no longer pass the exp check.
    const replayUntil = exp + config.leewaySeconds;
    const claim = client.replay.claim(jti, replayUntil, nowSeconds);
    if (claim === 'replayed') return unauthorized({ ok: false, reason: 'replayed jti', detail: quote(jti) }, true);
    if (claim === 'full') return unauthorized({ ok: false, reason: 'replay cache full' }, true);
    if (input.serviceId !== undefined && cfg.services !== '*' && !cfg.services.includes(input.serviceId)) {
      const refused = cfg.name ?? iss;
      return { ok: false, status: 403, reason: 'client not allowed for service', detail: `${refused} -> ${quote(input.serviceId)}`, message: FORBIDDEN_MESSAGE, client: refused };
    }
    const identity: AuthenticatedClient = {
      iss,
      jti,
      kid: header.kid,
      replayUntil,
      ...(cfg.name === undefined ? {} : { name: cfg.name }),
      ...(sub === undefined ? {} : { sub }),
      ...(tenant === undefined ? {} : { tenant }),
      ...(cfg.fhirServers === undefined ? {} : { fhirServers: cfg.fhirServers }),
    };
    return { ok: true, authentication: 'verified', client: Object.freeze(identity) };
  }

  return Object.freeze({
    mode: 'required' as const,
    warning: undefined,
    async authenticate(input: AuthenticateInput): Promise<AuthResult> {
      try {
        return await verify(input);
      } catch (error) {
        // Unexpected, but a failure to verify is never a pass and never a crash of the request.
        return unauthorized({ ok: false, reason: 'verification error', detail: error instanceof Error ? error.message : String(error) }, true);
      }
    },
    async ready(): Promise<void> {
      await Promise.all([...clients.values()].map((client) => client.ready()));
    },
    restoreClaims(claims: Iterable<TokenClaim>): void {
      const nowSeconds = deps.now() / 1000;
      for (const { iss, jti, until } of claims) if (until > nowSeconds) clients.get(iss)?.replay.claim(jti, until, nowSeconds);
    },
  });
}

function unauthorized(failure: Extract<Check<unknown>, { ok: false }>, tokenPresented: boolean): AuthResult {
  return {
    ok: false,
    status: 401,
    reason: failure.reason,
    ...(failure.detail === undefined ? {} : { detail: failure.detail }),
    message: UNAUTHORIZED_MESSAGE,
    wwwAuthenticate: tokenPresented ? 'Bearer error="invalid_token"' : 'Bearer',
  };
}

/** quote renders caller input for a log line: JSON-quoted and truncated. */
function quote(value: string): string {
  return JSON.stringify(value.length > 120 ? `${value.slice(0, 120)}…` : value);
}

/** One configured client: its keys (inline ones first, then its allow-listed JWKS URLs) and the jtis it used. */
class TrustedClient {
  readonly config: ClientConfig;
  /** Its own, so the same jti from two issuers is two tokens and a client that fills its cache refuses only itself. */
  readonly replay: ReplayCache;
  private inline: Promise<Map<string, VerificationKey>> | undefined;
  private readonly remotes: ReadonlyMap<string, RemoteKeySet>;

  constructor(config: ClientConfig, fetchJwks: JwksFetcher, now: () => number, limits: RemoteKeySetLimits, replayMaxEntries: number) {
    this.config = config;
    this.replay = new ReplayCache(replayMaxEntries);
    this.remotes = new Map((config.jku ?? []).map((url) => [url, new RemoteKeySet(url, fetchJwks, now, limits)]));
  }

  allowsJku(jku: string): boolean {
    return this.remotes.has(jku);
  }

  /** resolve finds kid inline, else at the token's jku, else (no jku in the token) at every configured URL. */
  async resolve(kid: string, jku: string | undefined): Promise<Check<VerificationKey>> {
    const inline = (await this.inlineKeys()).get(kid);
    if (inline) return { ok: true, value: inline };
    let fetchError: string | undefined;
    for (const url of jku === undefined ? this.remotes.keys() : [jku]) {
      const found = await this.remotes.get(url)?.lookup(kid);
      if (found?.key) return { ok: true, value: found.key };
      fetchError ??= found?.fetchError;
    }
    return fetchError === undefined ? { ok: false, reason: 'unknown kid', detail: quote(kid) } : { ok: false, reason: 'jwks fetch failed', detail: fetchError };
  }

  async ready(): Promise<void> {
    const imported = await this.inlineKeys();
    const unusable = (this.config.jwks?.keys ?? []).filter((key) => !imported.has(key.kid)).map((key) => key.kid);
    if (unusable.length > 0) {
      throw new CairnError('CONFIG_INVALID', `client ${this.config.name ?? this.config.iss}: keys ${unusable.join(', ')} cannot be imported`, {
        context: { iss: this.config.iss, kids: unusable },
      });
    }
  }

  private inlineKeys(): Promise<Map<string, VerificationKey>> {
    this.inline ??= this.config.jwks ? importKeySet(this.config.jwks) : Promise.resolve(new Map());
    return this.inline;
  }
}
