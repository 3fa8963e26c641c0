import { KeyObject, sign as cryptoSign } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CompactSign, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { parseAuthConfig, type AuthConfig } from '../../../src/cds-hooks/auth/index.ts';

export const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const SHARED_CDS_HOOKS = path.resolve(PROJECT_ROOT, '../shared/fixtures/cds-hooks');
export const HAS_SHARED = existsSync(SHARED_CDS_HOOKS);
export const SHARED_MISSING = `skipped: ${SHARED_CDS_HOOKS} is absent (the shared fixtures are not checked out next to this repo)`;

/** A fixed clock: 2026-03-01T12:00:00Z. */
export const NOW_MS = Date.UTC(2026, 2, 1, 12, 0, 0);
export const NOW_S = NOW_MS / 1000;

export const ISS = 'https://ehr.example.org';
export const AUD = 'https://cairn.example.org/cds-services/statin-use';

export interface TestKey {
  readonly kid: string;
  readonly alg: 'ES384' | 'RS384';
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

/** testKey generates a fresh key pair whose public JWK carries kid, alg and use. */
export async function testKey(alg: 'ES384' | 'RS384', kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

export const jwks = (...keys: TestKey[]): { keys: JWK[] } => ({ keys: keys.map((key) => key.publicJwk) });

let jtiCounter = 0;

/** claims are valid for AUD at NOW, with a fresh jti each call; pass overrides (undefined deletes a claim). */
export function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  jtiCounter += 1;
  const base: Record<string, unknown> = { iss: ISS, aud: AUD, iat: NOW_S - 10, exp: NOW_S + 290, jti: `jti-${jtiCounter}` };
  return withoutUndefined({ ...base, ...overrides });
}

/** sign builds a compact JWS over any header and payload (undefined deletes a header member). */
export async function sign(key: TestKey, payload: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const protectedHeader = withoutUndefined({ alg: key.alg, typ: 'JWT', kid: key.kid, ...header });
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(protectedHeader as { alg: string })
    .sign(key.privateKey);
}

/**
 * signedByHand builds a compact JWS with node:crypto, for what jose refuses to sign (an unknown
 * `crit` extension, a key it deems too small).
 */
export function signedByHand(privateKey: CryptoKey | KeyObject, alg: 'ES384' | 'RS384', header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${b64({ alg, typ: 'JWT', ...header })}.${b64(payload)}`;
  const key = privateKey instanceof KeyObject ? privateKey : KeyObject.from(privateKey);
  const signature = cryptoSign('sha384', Buffer.from(input), alg === 'ES384' ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${input}.${signature.toString('base64url')}`;
}

/** unsigned builds an `alg: none` token by hand (jose refuses to). */
export function unsigned(payload: Record<string, unknown>, header: Record<string, unknown> = { alg: 'none', typ: 'JWT', kid: 'k1' }): string {
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${b64(header)}.${b64(payload)}.`;
}

/** hmacSigned signs with HS256 using `secret` as the key (for the public-key-as-HMAC-secret attack). */
export async function hmacSigned(secret: Uint8Array, payload: Record<string, unknown>, kid: string): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid }).sign(secret);
}

/** config parses a required-mode configuration from loosely typed test input (JWKs from jose are wider than our schema's input type). */
export function config(input: { clients: readonly Record<string, unknown>[] } & Record<string, unknown>): AuthConfig {
  return parseAuthConfig({ mode: 'required', ...input });
}

function withoutUndefined(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined));
}

/** A JWKS server on 127.0.0.1 whose documents can change, counting requests per path. */
export interface JwksServer {
  readonly base: string;
  readonly hits: Map<string, number>;
  set(pathname: string, body: unknown, status?: number): void;
  close(): Promise<void>;
}

export async function startJwksServer(): Promise<JwksServer> {
  const documents = new Map<string, { body: unknown; status: number }>();
  const hits = new Map<string, number>();
  const server: Server = createServer((request, response) => {
    const pathname = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    hits.set(pathname, (hits.get(pathname) ?? 0) + 1);
    const document = documents.get(pathname);
    if (!document) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(document.status, { 'content-type': 'application/json' }).end(JSON.stringify(document.body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    hits,
    set: (pathname, body, status = 200) => documents.set(pathname, { body, status }),
    close: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}
