import { generateKeyPairSync } from 'node:crypto';
import { exportSPKI, importJWK, type CryptoKey } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AUTH_OFF_WARNING,
  FORBIDDEN_MESSAGE,
  UNAUTHORIZED_MESSAGE,
  createClientAuthenticator,
  parseAuthConfig,
  type AuthConfig,
  type AuthFailureReason,
  type ClientAuthenticator,
} from '../../../src/cds-hooks/auth/index.ts';
import { AUD, ISS, NOW_MS, NOW_S, claims, config, hmacSigned, jwks, sign, signedByHand, testKey, unsigned, type TestKey } from './support.ts';

let es: TestKey;
let rs: TestKey;
let rogue: TestKey;
let impostor: TestKey;
let base: AuthConfig;

const OTHER_ISS = 'https://partner.example.org';

beforeAll(async () => {
  [es, rs, rogue, impostor] = await Promise.all([testKey('ES384', 'es-1'), testKey('RS384', 'rs-1'), testKey('ES384', 'rogue'), testKey('ES384', 'es-1')]);
  base = config({
    clients: [
      { iss: ISS, name: 'Test EHR', jwks: jwks(es, rs), services: ['statin-use'] },
      { iss: OTHER_ISS, jwks: jwks(rs), sub: ['cairn-client'] },
    ],
  });
});

const authenticator = (cfg: AuthConfig = base): ClientAuthenticator =>
  createClientAuthenticator(cfg, { now: () => NOW_MS, fetchJwks: () => Promise.reject(new Error('no JWKS URL is configured in this test')) });

type Want = 'ok' | { status: 401 | 403; reason: AuthFailureReason };

interface Case {
  name: string;
  authorization: () => Promise<string | undefined>;
  audience?: string;
  serviceId?: string | undefined;
  want: Want;
}

const bearer = async (token: Promise<string> | string) => `Bearer ${await token}`;
const unauthorized = (reason: AuthFailureReason): Want => ({ status: 401, reason });

const cases: Case[] = [
  { name: 'valid ES384 token', authorization: () => bearer(sign(es, claims())), want: 'ok' },
  { name: 'valid RS384 token', authorization: () => bearer(sign(rs, claims())), want: 'ok' },
  { name: 'aud as an array containing the endpoint', authorization: () => bearer(sign(es, claims({ aud: ['https://other.example', AUD] }))), want: 'ok' },
  { name: 'lower-case bearer scheme and typ', authorization: async () => `bearer ${await sign(es, claims(), { typ: 'jwt' })}`, want: 'ok' },
  { name: 'discovery (no service id) by a restricted client', authorization: () => bearer(sign(es, claims())), serviceId: undefined, want: 'ok' },
  { name: 'expired beyond the 60 s leeway', authorization: () => bearer(sign(es, claims({ exp: NOW_S - 61 }))), want: unauthorized('expired') },
  { name: 'expired exactly at the leeway edge', authorization: () => bearer(sign(es, claims({ exp: NOW_S - 60 }))), want: unauthorized('expired') },
  { name: 'expired but within leeway', authorization: () => bearer(sign(es, claims({ exp: NOW_S - 30 }))), want: 'ok' },
  { name: 'exp at the default 300 s lifetime + leeway from now', authorization: () => bearer(sign(es, claims({ exp: NOW_S + 360 }))), want: 'ok' },
  { name: 'exp beyond the default 300 s lifetime + leeway from now', authorization: () => bearer(sign(es, claims({ exp: NOW_S + 361 }))), want: unauthorized('lifetime too long') },
  { name: 'exp ten years away, whatever iat says', authorization: () => bearer(sign(es, claims({ iat: NOW_S + 30, exp: NOW_S + 10 * 365 * 86_400 }))), want: unauthorized('lifetime too long') },
  { name: 'iat in the future beyond leeway', authorization: () => bearer(sign(es, claims({ iat: NOW_S + 120 }))), want: unauthorized('issued in the future') },
  { name: 'iat in the future within leeway', authorization: () => bearer(sign(es, claims({ iat: NOW_S + 30 }))), want: 'ok' },
  { name: 'nbf in the future', authorization: () => bearer(sign(es, claims({ nbf: NOW_S + 600 }))), want: unauthorized('not yet valid') },
  { name: 'wrong aud', authorization: () => bearer(sign(es, claims({ aud: 'https://cairn.example.org/cds-services/other' }))), want: unauthorized('audience mismatch') },
  { name: 'aud with a trailing slash is not exact', authorization: () => bearer(sign(es, claims({ aud: `${AUD}/` }))), want: unauthorized('audience mismatch') },
  { name: 'unknown kid (inline keys only)', authorization: () => bearer(sign(rogue, claims())), want: unauthorized('unknown kid') },
  { name: 'alg none', authorization: () => bearer(unsigned(claims())), want: unauthorized('alg not allowed') },
  { name: 'ES384 header with an empty signature', authorization: () => bearer(unsigned(claims(), { alg: 'ES384', typ: 'JWT', kid: 'es-1' })), want: unauthorized('bad signature') },
  { name: 'alg none with a dummy signature', authorization: async () => `Bearer ${unsigned(claims())}c2ln`, want: unauthorized('alg not allowed') },
  {
    name: 'HS256 signed with the public JWK as the secret (key confusion)',
    authorization: () => bearer(hmacSigned(new TextEncoder().encode(JSON.stringify(es.publicJwk)), claims(), 'es-1')),
    want: unauthorized('alg not allowed'),
  },
  {
    name: 'HS256 signed with the public key PEM as the secret (key confusion)',
    authorization: async () => bearer(hmacSigned(new TextEncoder().encode(await exportSPKI(await publicKeyOf(rs))), claims(), 'rs-1')),
    want: unauthorized('alg not allowed'),
  },
  { name: 'ES512 is not allowed', authorization: async () => `Bearer ${unsigned(claims(), { alg: 'ES512', typ: 'JWT', kid: 'es-1' })}c2ln`, want: unauthorized('alg not allowed') },
  { name: 'ES384 header naming the RSA key', authorization: () => bearer(sign(es, claims(), { kid: 'rs-1' })), want: unauthorized('key alg mismatch') },
  { name: 'signed by another key under a configured kid', authorization: () => bearer(sign(impostor, claims())), want: unauthorized('bad signature') },
  { name: 'payload tampered after signing', authorization: async () => bearer(tamper(await sign(es, claims()))), want: unauthorized('bad signature') },
  { name: 'RS384 payload tampered after signing', authorization: async () => bearer(tamper(await sign(rs, claims()))), want: unauthorized('bad signature') },
  { name: 'ES384 signature spelled with a trailing base64url character', authorization: async () => bearer(`${await sign(es, claims())}A`), want: unauthorized('bad signature') },
  { name: 'ES384 signature one byte short', authorization: async () => bearer(shortenSignature(await sign(es, claims()))), want: unauthorized('bad signature') },
  { name: 'an RS384 signature under an ES384 header', authorization: async () => bearer(swapSignature(await sign(es, claims()), await sign(rs, claims()))), want: unauthorized('bad signature') },
  { name: 'critical header extension', authorization: async () => bearer(signedByHand(es.privateKey, 'ES384', { kid: 'es-1', crit: ['exp'], exp: NOW_S + 60 }, claims())), want: unauthorized('malformed token') },
  { name: 'a hand-made ES384 token (the helper the crit case uses)', authorization: async () => bearer(signedByHand(es.privateKey, 'ES384', { kid: 'es-1' }, claims())), want: 'ok' },
  { name: 'jku not on the allow-list', authorization: () => bearer(sign(es, claims(), { jku: 'https://attacker.example/jwks.json' })), want: unauthorized('jku not allowed') },
  { name: 'issuer not configured', authorization: () => bearer(sign(es, claims({ iss: 'https://unknown.example' }))), want: unauthorized('issuer not allowed') },
  { name: 'missing typ', authorization: () => bearer(sign(es, claims(), { typ: undefined })), want: unauthorized('missing typ') },
  { name: 'typ other than JWT', authorization: () => bearer(sign(es, claims(), { typ: 'at+jwt' })), want: unauthorized('typ not JWT') },
  { name: 'missing kid', authorization: () => bearer(sign(es, claims(), { kid: undefined })), want: unauthorized('missing kid') },
  { name: 'missing jti', authorization: () => bearer(sign(es, claims({ jti: undefined }))), want: unauthorized('missing jti') },
  { name: 'missing iat', authorization: () => bearer(sign(es, claims({ iat: undefined }))), want: unauthorized('missing iat') },
  { name: 'missing exp', authorization: () => bearer(sign(es, claims({ exp: undefined }))), want: unauthorized('missing exp') },
  { name: 'missing aud', authorization: () => bearer(sign(es, claims({ aud: undefined }))), want: unauthorized('missing aud') },
  { name: 'missing iss', authorization: () => bearer(sign(es, claims({ iss: undefined }))), want: unauthorized('missing iss') },
  { name: 'exp as a string', authorization: () => bearer(sign(es, claims({ exp: String(NOW_S + 60) }))), want: unauthorized('invalid claims') },
  { name: 'no Authorization header', authorization: async () => undefined, want: unauthorized('missing authorization') },
  { name: 'Basic scheme', authorization: async () => 'Basic dXNlcjpwYXNz', want: unauthorized('not a bearer token') },
  { name: 'Bearer without a JWT', authorization: async () => 'Bearer not-a-jwt', want: unauthorized('malformed token') },
  { name: 'header segment not JSON', authorization: async () => 'Bearer bm90IGpzb24.e30.c2ln', want: unauthorized('malformed token') },
  { name: 'client not allowed for the service', authorization: () => bearer(sign(es, claims())), serviceId: 'opioid-mme', want: { status: 403, reason: 'client not allowed for service' } },
  { name: 'client with services "*" calls any service', authorization: () => bearer(sign(rs, claims({ iss: OTHER_ISS, sub: 'cairn-client' }))), serviceId: 'opioid-mme', want: 'ok' },
  { name: 'sub not on the allow-list', authorization: () => bearer(sign(rs, claims({ iss: OTHER_ISS, sub: 'someone-else' }))), want: unauthorized('subject not allowed') },
  { name: 'sub missing where an allow-list is set', authorization: () => bearer(sign(rs, claims({ iss: OTHER_ISS }))), want: unauthorized('subject not allowed') },
];

describe('createClientAuthenticator', () => {
  it.each(cases)('$name', async ({ authorization, audience = AUD, want, ...rest }) => {
    const serviceId = 'serviceId' in rest ? rest.serviceId : 'statin-use';
    const result = await authenticator().authenticate({ authorization: await authorization(), audience, serviceId });
    if (want === 'ok') {
      expect(result).toMatchObject({ ok: true, authentication: 'verified' });
      return;
    }
    expect(result).toMatchObject({ ok: false, status: want.status, reason: want.reason, message: want.status === 401 ? UNAUTHORIZED_MESSAGE : FORBIDDEN_MESSAGE });
  });

  it('returns the verified client identity', async () => {
    const token = await sign(es, claims({ sub: 'ehr-client-7', tenant: 'org-1', jti: 'the-jti' }));
    const result = await authenticator().authenticate({ authorization: `Bearer ${token}`, audience: AUD, serviceId: 'statin-use' });
    expect(result).toEqual({
      ok: true,
      authentication: 'verified',
      client: { iss: ISS, name: 'Test EHR', sub: 'ehr-client-7', tenant: 'org-1', jti: 'the-jti', kid: 'es-1', replayUntil: NOW_S + 290 + 60 },
    });
  });

  it('accepts a jti once only, per issuer', async () => {
    const auth = authenticator();
    const token = await sign(es, claims({ jti: 'once' }));
    const input = { authorization: `Bearer ${token}`, audience: AUD, serviceId: 'statin-use' };
    expect(await auth.authenticate(input)).toMatchObject({ ok: true });
    expect(await auth.authenticate(input)).toMatchObject({ ok: false, status: 401, reason: 'replayed jti' });
    const sameJtiOtherIssuer = await sign(rs, claims({ iss: OTHER_ISS, sub: 'cairn-client', jti: 'once' }));
    expect(await auth.authenticate({ ...input, authorization: `Bearer ${sameJtiOtherIssuer}` })).toMatchObject({ ok: true });
  });

  it('refuses a jti restored from before a restart while it lives, for its own issuer only', async () => {
    const auth = createClientAuthenticator(parseAuthConfig(plain(base)), { now: () => NOW_MS });
    auth.restoreClaims([
      { iss: ISS, jti: 'before-restart', until: NOW_S + 350 },
      { iss: ISS, jti: 'long-expired', until: NOW_S - 1 },
      { iss: 'https://no-longer-trusted.example', jti: 'x', until: NOW_S + 350 },
    ]);
    const call = async (jti: string, iss = ISS) =>
      auth.authenticate({ authorization: `Bearer ${await sign(iss === ISS ? es : rs, claims({ jti, iss, ...(iss === ISS ? {} : { sub: 'cairn-client' }) }))}`, audience: AUD, serviceId: 'statin-use' });
    expect(await call('before-restart')).toMatchObject({ ok: false, status: 401, reason: 'replayed jti' });
    expect(await call('before-restart', OTHER_ISS)).toMatchObject({ ok: true });
    expect(await call('long-expired')).toMatchObject({ ok: true });
  });

  it('refuses new tokens of a client whose replay cache is full of live entries, and accepts again once they expire', async () => {
    let now = NOW_MS;
    const auth = createClientAuthenticator(parseAuthConfig({ ...plain(base), replayCacheMaxEntriesPerClient: 2 }), { now: () => now });
    const call = async (exp: number) =>
      auth.authenticate({ authorization: `Bearer ${await sign(es, claims({ exp }))}`, audience: AUD, serviceId: 'statin-use' });
    expect(await call(NOW_S + 10)).toMatchObject({ ok: true });
    expect(await call(NOW_S + 300)).toMatchObject({ ok: true });
    expect(await call(NOW_S + 300)).toMatchObject({ ok: false, reason: 'replay cache full' });
    now = NOW_MS + 71_000; // past the first token's exp + leeway: its entry is evicted
    expect(await call(NOW_S + 300)).toMatchObject({ ok: true });
  });

  it('a client filling its replay quota never refuses another client (the audit lock-out)', async () => {
    const auth = createClientAuthenticator(parseAuthConfig({ ...plain(base), replayCacheMaxEntriesPerClient: 5 }), { now: () => NOW_MS });
    const call = async (key: TestKey, overrides: Record<string, unknown>) =>
      auth.authenticate({ authorization: `Bearer ${await sign(key, claims(overrides))}`, audience: AUD, serviceId: 'statin-use' });
    const fromA = { iss: OTHER_ISS, sub: 'cairn-client' };
    // Ten-year tokens are refused outright, so they take no room.
    for (let i = 0; i < 5; i++) expect(await call(rs, { ...fromA, exp: NOW_S + 10 * 365 * 86_400 })).toMatchObject({ ok: false, reason: 'lifetime too long' });
    for (let i = 0; i < 5; i++) expect(await call(rs, { ...fromA, exp: NOW_S + 360 })).toMatchObject({ ok: true });
    expect(await call(rs, { ...fromA, exp: NOW_S + 360 })).toMatchObject({ ok: false, reason: 'replay cache full' });
    expect(await call(es, {})).toMatchObject({ ok: true, client: { iss: ISS } });
  });

  it('bounds exp from now by maxTokenLifetimeSeconds', async () => {
    const auth = authenticator(parseAuthConfig({ ...plain(base), maxTokenLifetimeSeconds: 60 }));
    const call = async (exp: number) => auth.authenticate({ authorization: `Bearer ${await sign(es, claims({ iat: NOW_S, exp }))}`, audience: AUD, serviceId: 'statin-use' });
    expect(await call(NOW_S + 120)).toMatchObject({ ok: true });
    expect(await call(NOW_S + 121)).toMatchObject({ ok: false, reason: 'lifetime too long' });
  });

  it('uses only the injected clock', async () => {
    const token = await sign(es, claims({ iat: 1_000, exp: 1_300 }));
    const auth = createClientAuthenticator(base, { now: () => 1_100_000 });
    expect(await auth.authenticate({ authorization: `Bearer ${token}`, audience: AUD, serviceId: 'statin-use' })).toMatchObject({ ok: true });
  });

  it('gives the same public message and WWW-Authenticate for every 401', async () => {
    const auth = authenticator();
    const results = await Promise.all([
      auth.authenticate({ authorization: undefined, audience: AUD, serviceId: 'statin-use' }),
      auth.authenticate({ authorization: `Bearer ${await sign(es, claims({ exp: NOW_S - 600 }))}`, audience: AUD, serviceId: 'statin-use' }),
      auth.authenticate({ authorization: `Bearer ${await sign(rogue, claims())}`, audience: AUD, serviceId: 'statin-use' }),
    ]);
    expect(results.map((result) => (result.ok ? undefined : [result.message, result.wwwAuthenticate]))).toEqual([
      [UNAUTHORIZED_MESSAGE, 'Bearer'],
      [UNAUTHORIZED_MESSAGE, 'Bearer error="invalid_token"'],
      [UNAUTHORIZED_MESSAGE, 'Bearer error="invalid_token"'],
    ]);
  });

  it('mode off accepts every call and exposes the warning', async () => {
    const auth = createClientAuthenticator(parseAuthConfig({ mode: 'off' }), { now: () => NOW_MS });
    expect(auth.mode).toBe('off');
    expect(auth.warning).toBe(AUTH_OFF_WARNING);
    expect(await auth.authenticate({ authorization: undefined, audience: AUD, serviceId: 'x' })).toEqual({ ok: true, authentication: 'off', client: undefined, warning: AUTH_OFF_WARNING });
    expect(authenticator().warning).toBeUndefined();
    expect(authenticator().mode).toBe('required');
  });

  it('ready() accepts importable inline keys', async () => {
    await expect(authenticator().ready()).resolves.toBeUndefined();
  });

  it('refuses RSA keys under 2048 bits (RFC 7518 §3.3), at start and for tokens they signed', async () => {
    // jose will not make such a key; node:crypto will.
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const weakJwk = { ...publicKey.export({ format: 'jwk' }), kid: 'weak', alg: 'RS384', use: 'sig' };
    const auth = authenticator(config({ clients: [{ iss: ISS, jwks: { keys: [es.publicJwk, weakJwk] } }] }));
    await expect(auth.ready()).rejects.toThrow(/weak/);
    const result = await auth.authenticate({ authorization: `Bearer ${signedByHand(privateKey, 'RS384', { kid: 'weak' }, claims())}`, audience: AUD, serviceId: 'statin-use' });
    expect(result).toMatchObject({ ok: false, status: 401, reason: 'unknown kid' });
  });
});

/** plain turns a frozen parsed config back into input shape for a variation. */
function plain(cfg: AuthConfig): Record<string, unknown> {
  return JSON.parse(JSON.stringify(cfg)) as Record<string, unknown>;
}

function tamper(token: string): string {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const claimsObject = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
  claimsObject.exp = Number(claimsObject.exp) + 3600;
  return `${header}.${Buffer.from(JSON.stringify(claimsObject)).toString('base64url')}.${signature}`;
}

/** shortenSignature drops the signature's last byte, re-encoded canonically. */
function shortenSignature(token: string): string {
  const dot = token.lastIndexOf('.');
  return `${token.slice(0, dot)}.${Buffer.from(token.slice(dot + 1), 'base64url').subarray(0, -1).toString('base64url')}`;
}

/** swapSignature puts the signature of `other` on `token`. */
function swapSignature(token: string, other: string): string {
  return `${token.slice(0, token.lastIndexOf('.'))}.${other.slice(other.lastIndexOf('.') + 1)}`;
}

async function publicKeyOf(key: TestKey): Promise<CryptoKey> {
  const imported = await importJWK(key.publicJwk, key.alg, { extractable: true });
  if (imported instanceof Uint8Array) throw new Error('expected an asymmetric key');
  return imported;
}
