import { KeyObject } from 'node:crypto';
import { importJWK, type JWK } from 'jose';
import type { AllowedAlg } from './config.ts';
import { readCapped } from '../../http/read-capped.ts';

/** A public key ready for signature verification, with the one algorithm it may verify. */
export interface VerificationKey {
  readonly kid: string;
  readonly alg: AllowedAlg;
  readonly key: KeyObject;
}

/** RFC 7518 §3.3: RSA keys of 2048 bits or larger MUST be used with RS384. */
const MIN_RSA_MODULUS_BITS = 2048;

/** Fetches a JWKS document (parsed JSON) from an allow-listed URL. */
export type JwksFetcher = (url: string) => Promise<unknown>;

/**
 * toVerificationKey imports one JWK as a verification key, or returns undefined when it is not an
 * ES384 (EC P-384) or RS384 (RSA) signing key with a kid. Only public members are imported, so a
 * JWKS that wrongly publishes private parts never yields a private or symmetric key.
 */
export async function toVerificationKey(jwk: unknown): Promise<VerificationKey | undefined> {
  if (jwk === null || typeof jwk !== 'object') return undefined;
  const j = jwk as Record<string, unknown>;
  if (typeof j.kid !== 'string' || j.kid === '') return undefined;
  if (j.use !== undefined && j.use !== 'sig') return undefined;
  if (j.key_ops !== undefined && !(Array.isArray(j.key_ops) && j.key_ops.includes('verify'))) return undefined;
  let alg: AllowedAlg;
  let publicJwk: JWK;
  if (j.kty === 'EC' && j.crv === 'P-384' && typeof j.x === 'string' && typeof j.y === 'string') {
    alg = 'ES384';
    publicJwk = { kty: 'EC', crv: 'P-384', x: j.x, y: j.y };
  } else if (j.kty === 'RSA' && typeof j.n === 'string' && typeof j.e === 'string') {
    alg = 'RS384';
    publicJwk = { kty: 'RSA', n: j.n, e: j.e };
  } else {
    return undefined;
  }
  if (j.alg !== undefined && j.alg !== alg) return undefined;
  try {
    const imported = await importJWK(publicJwk, alg);
    // importJWK returns bytes only for symmetric keys, which we never build; narrow for the type checker.
    if (imported instanceof Uint8Array) return undefined;
    // Verified with node:crypto (signature.ts), which, unlike jose's verify, does not check RSA key sizes.
    const key = KeyObject.from(imported);
    if (alg === 'RS384' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_MODULUS_BITS) return undefined;
    return { kid: j.kid, alg, key };
  } catch {
    return undefined;
  }
}

/** importKeySet imports every usable key of a JWKS document by kid (first wins); throws when the document is not a JWKS. */
export async function importKeySet(document: unknown): Promise<Map<string, VerificationKey>> {
  if (document === null || typeof document !== 'object' || !Array.isArray((document as { keys?: unknown }).keys)) {
    throw new Error('not a JWKS document (no "keys" array)');
  }
  const imported = await Promise.all(((document as { keys: unknown[] }).keys).map((jwk) => toVerificationKey(jwk)));
  const keys = new Map<string, VerificationKey>();
  for (const key of imported) if (key && !keys.has(key.kid)) keys.set(key.kid, key);
  return keys;
}

export interface RemoteKeySetLimits {
  readonly minRefreshIntervalMs: number;
  readonly maxAgeMs: number;
}

/**
 * RemoteKeySet caches the keys of one allow-listed JWKS URL by kid. An unknown kid (or a cache
 * older than maxAge) triggers a refetch, but never more than one per minRefreshInterval, so a
 * stream of made-up kids cannot make us fetch in a loop. Concurrent lookups share one fetch.
 */
export class RemoteKeySet {
  readonly url: string;
  private keys = new Map<string, VerificationKey>();
  private fetchedAt: number | undefined;
  private attemptedAt: number | undefined;
  private lastError: string | undefined;
  private inflight: Promise<void> | undefined;

  constructor(
    url: string,
    private readonly fetchJwks: JwksFetcher,
    private readonly now: () => number,
    private readonly limits: RemoteKeySetLimits,
  ) {
    this.url = url;
  }

  /** lookup returns the key for kid, refreshing first when allowed and needed; fetchError is set when the last fetch failed. */
  async lookup(kid: string): Promise<{ key: VerificationKey | undefined; fetchError: string | undefined }> {
    const cached = this.keys.get(kid);
    const stale = this.fetchedAt === undefined || this.now() - this.fetchedAt >= this.limits.maxAgeMs;
    if (cached && !stale) return { key: cached, fetchError: undefined };
    if (this.inflight) await this.inflight;
    else if (this.mayRefresh()) await this.refresh();
    // A failed refresh of a stale set keeps the old keys: availability over a JWKS endpoint hiccup.
    return { key: this.keys.get(kid), fetchError: this.lastError };
  }

  private mayRefresh(): boolean {
    return this.attemptedAt === undefined || this.now() - this.attemptedAt >= this.limits.minRefreshIntervalMs;
  }

  private refresh(): Promise<void> {
    this.attemptedAt = this.now();
    this.inflight = (async () => {
      try {
        this.keys = await importKeySet(await this.fetchJwks(this.url));
        this.fetchedAt = this.now();
        this.lastError = undefined;
      } catch (error) {
        this.lastError = error instanceof Error ? error.message : String(error);
      } finally {
        this.inflight = undefined;
      }
    })();
    return this.inflight;
  }
}

/**
 * createJwksFetcher returns the default JWKS fetcher: GET with a timeout, no redirects (a redirect
 * could leave the allow-list), JSON only, body size capped.
 */
export function createJwksFetcher(options: { timeoutMs: number; maxBytes: number }): JwksFetcher {
  return async (url) => {
    const response = await fetch(url, {
      signal: AbortSignal.timeout(options.timeoutMs),
      redirect: 'error',
      headers: { accept: 'application/json, application/jwk-set+json' },
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`JWKS request to ${url} answered HTTP ${response.status}`);
    }
    const text = await readCapped(response, options.maxBytes);
    if (text === undefined) throw new Error(`JWKS at ${url} is larger than ${options.maxBytes} bytes`);
    return JSON.parse(text) as unknown;
  };
}

