import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { createClientAuthenticator, type ClientAuthenticator } from '../../../src/cds-hooks/auth/index.ts';
import { AUD, ISS, NOW_MS, config, jwks, testKey } from './support.ts';

let auth: ClientAuthenticator;
let fetches = 0;

beforeAll(async () => {
  const key = await testKey('ES384', 'k1');
  auth = createClientAuthenticator(config({ clients: [{ iss: ISS, jwks: jwks(key), jku: ['https://ehr.example.org/jwks.json'] }] }), {
    now: () => NOW_MS,
    fetchJwks: async () => {
      fetches += 1;
      return jwks(key);
    },
  });
});

const segment = fc.oneof(fc.base64String(), fc.string(), fc.json().map((json) => Buffer.from(json).toString('base64url')));
const headerJson = fc.record({
  alg: fc.oneof(fc.constantFrom('none', 'HS256', 'ES384', 'RS384', 'ES256'), fc.string(), fc.integer()),
  typ: fc.option(fc.oneof(fc.constant('JWT'), fc.string())),
  kid: fc.option(fc.oneof(fc.constant('k1'), fc.string(), fc.integer())),
  jku: fc.option(fc.oneof(fc.constant('https://ehr.example.org/jwks.json'), fc.string())),
});
const payloadJson = fc.record({ iss: fc.oneof(fc.constant(ISS), fc.string()), aud: fc.oneof(fc.constant(AUD), fc.anything()), exp: fc.anything(), iat: fc.anything(), jti: fc.anything() });
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

const authorization = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.string().map((s) => `Bearer ${s}`),
  fc.tuple(segment, segment, segment).map(([a, b, c]) => `Bearer ${a}.${b}.${c}`),
  fc.tuple(headerJson, payloadJson, segment).map(([header, payload, signature]) => `Bearer ${b64(header)}.${b64(payload)}.${signature}`),
);

describe('authenticate over arbitrary Authorization headers', () => {
  it('never throws and always answers 401', async () => {
    await fc.assert(
      fc.asyncProperty(authorization, async (value) => {
        const result = await auth.authenticate({ authorization: value, audience: AUD, serviceId: 'statin-use' });
        expect(result.ok).toBe(false);
        if (!result.ok) expect(result.status).toBe(401);
      }),
      { numRuns: 500 },
    );
    // Unknown kids may trigger a refresh, but the rate limit allows one per interval under a frozen clock.
    expect(fetches).toBeLessThanOrEqual(1);
  });
});
