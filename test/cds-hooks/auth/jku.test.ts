import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClientAuthenticator, parseAuthConfig, type AuthConfigInput } from '../../../src/cds-hooks/auth/index.ts';
import { AUD, ISS, NOW_MS, claims, jwks, sign, startJwksServer, testKey, type JwksServer, type TestKey } from './support.ts';

/** JWKS fetched over HTTP from allow-listed jku URLs, against a real server on 127.0.0.1. */
let server: JwksServer;
let k1: TestKey;
let k2: TestKey;
let rsa: TestKey;

beforeAll(async () => {
  server = await startJwksServer();
  [k1, k2, rsa] = await Promise.all([testKey('ES384', 'k1'), testKey('ES384', 'k2'), testKey('RS384', 'rsa-1')]);
});
afterAll(() => server.close());

function setup(pathname: string, extra: Partial<AuthConfigInput> = {}) {
  const url = `${server.base}${pathname}`;
  let now = NOW_MS;
  const auth = createClientAuthenticator(
    parseAuthConfig({ mode: 'required', clients: [{ iss: ISS, jku: [url] }], jwksFetch: { timeoutMs: 2_000, minRefreshIntervalSeconds: 30 }, ...extra }),
    { now: () => now },
  );
  const call = async (key: TestKey, header: Record<string, unknown> = { jku: url }) =>
    auth.authenticate({ authorization: `Bearer ${await sign(key, claims({ iat: now / 1000 - 5, exp: now / 1000 + 120 }), header)}`, audience: AUD, serviceId: 's' });
  return { url, call, hits: () => server.hits.get(pathname) ?? 0, advance: (ms: number) => (now += ms) };
}

describe('jku: JWKS fetched from an allow-listed URL', () => {
  it('fetches once, then serves later tokens from the cache by kid', async () => {
    server.set('/cache.json', jwks(k1, rsa));
    const { call, hits } = setup('/cache.json');
    expect(await call(k1)).toMatchObject({ ok: true });
    expect(await call(k1)).toMatchObject({ ok: true });
    expect(await call(rsa)).toMatchObject({ ok: true });
    expect(hits()).toBe(1);
  });

  it('uses the configured URL when the token has no jku header', async () => {
    server.set('/no-header.json', jwks(k1));
    const { call, hits } = setup('/no-header.json');
    expect(await call(k1, {})).toMatchObject({ ok: true });
    expect(hits()).toBe(1);
  });

  it('refreshes on an unknown kid (key rotation)', async () => {
    server.set('/rotate.json', jwks(k1));
    const { call, hits, advance } = setup('/rotate.json');
    expect(await call(k1)).toMatchObject({ ok: true });
    server.set('/rotate.json', jwks(k2));
    advance(31_000);
    expect(await call(k2)).toMatchObject({ ok: true });
    expect(hits()).toBe(2);
    // The refreshed set replaced the old one: the rotated-out key is gone once the rate limit allows a refetch.
    advance(31_000);
    expect(await call(k1)).toMatchObject({ ok: false, status: 401, reason: 'unknown kid' });
  });

  it('an unknown kid triggers one refresh, then fails; more unknown kids within the interval fetch nothing', async () => {
    server.set('/unknown.json', jwks(k1));
    const { call, hits, advance } = setup('/unknown.json');
    expect(await call(k1)).toMatchObject({ ok: true });
    advance(31_000);
    expect(await call(k2)).toMatchObject({ ok: false, status: 401, reason: 'unknown kid' });
    expect(hits()).toBe(2);
    const spam = await Promise.all(Array.from({ length: 20 }, (_, i) => call(k2, { jku: `${server.base}/unknown.json`, kid: `made-up-${i}` })));
    expect(spam.every((result) => !result.ok && result.reason === 'unknown kid')).toBe(true);
    expect(hits()).toBe(2);
    advance(31_000);
    expect(await call(k2)).toMatchObject({ ok: false, reason: 'unknown kid' });
    expect(hits()).toBe(3);
  });

  it('concurrent first calls share one fetch', async () => {
    server.set('/concurrent.json', jwks(k1));
    const { call, hits } = setup('/concurrent.json');
    const results = await Promise.all(Array.from({ length: 10 }, () => call(k1)));
    expect(results.every((result) => result.ok)).toBe(true);
    expect(hits()).toBe(1);
  });

  it('never fetches a jku that is not allow-listed', async () => {
    server.set('/allowed.json', jwks(k1));
    server.set('/evil.json', jwks(k1));
    const { call } = setup('/allowed.json');
    expect(await call(k1, { jku: `${server.base}/evil.json` })).toMatchObject({ ok: false, status: 401, reason: 'jku not allowed' });
    expect(server.hits.get('/evil.json') ?? 0).toBe(0);
  });

  it.each([
    { name: 'an HTTP error', pathname: '/error.json', serve: () => server.set('/error.json', { error: 'boom' }, 500) },
    { name: 'a document that is not a JWKS', pathname: '/not-jwks.json', serve: () => server.set('/not-jwks.json', { hello: 'world' }) },
    { name: 'a body over maxBytes', pathname: '/big.json', serve: () => server.set('/big.json', { keys: [], padding: 'x'.repeat(5_000) }) },
    { name: 'a missing document', pathname: '/missing.json', serve: () => {} },
  ])('reports "jwks fetch failed" for $name', async ({ pathname, serve }) => {
    serve();
    const { call } = setup(pathname, { jwksFetch: { maxBytes: 2_048 } });
    expect(await call(k1)).toMatchObject({ ok: false, status: 401, reason: 'jwks fetch failed' });
  });

  it('keeps cached keys when a refresh of a stale set fails', async () => {
    server.set('/stale.json', jwks(k1));
    const { call, hits, advance } = setup('/stale.json', { jwksFetch: { maxAgeSeconds: 60 } });
    expect(await call(k1)).toMatchObject({ ok: true });
    server.set('/stale.json', {}, 503);
    advance(61_000);
    expect(await call(k1)).toMatchObject({ ok: true });
    expect(hits()).toBe(2);
  });
});
