import { readFileSync } from 'node:fs';
import path from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { describe, expect, it } from 'vitest';
import { createClientAuthenticator, parseAuthConfig } from '../../../src/cds-hooks/auth/index.ts';
import { HAS_SHARED, SHARED_CDS_HOOKS, SHARED_MISSING } from './support.ts';

/** The CDS Hooks 2.0.1 spec's example token: ES384, verifies against the example JWKS, expired in 2015. */
describe.skipIf(!HAS_SHARED)(`CDS Hooks 2.0.1 example JWT${HAS_SHARED ? '' : ` (${SHARED_MISSING})`}`, () => {
  const read = (file: string) => readFileSync(path.join(SHARED_CDS_HOOKS, 'spec-examples', file), 'utf8');
  const token = HAS_SHARED ? read('24-jwt-compact-es384.txt').trim() : '';
  const header = HAS_SHARED ? (JSON.parse(read('21-jwt-header.json')) as Record<string, unknown>) : {};
  const payload = HAS_SHARED ? (JSON.parse(read('22-jwt-payload.json')) as { iss: string; aud: string; exp: number; iat: number; jti: string }) : undefined;
  const config = () =>
    parseAuthConfig({
      mode: 'required',
      clients: [{ iss: payload!.iss, name: 'spec example EHR', jwks: JSON.parse(read('23-jwks-public.json')), jku: [String(header.jku)] }],
    });
  const noFetch = () => Promise.reject(new Error('the example key is inline: no fetch expected'));
  const authenticateAt = (nowSeconds: number, audience = payload!.aud) =>
    createClientAuthenticator(config(), { now: () => nowSeconds * 1000, fetchJwks: noFetch }).authenticate({
      authorization: `Bearer ${token}`,
      audience,
      serviceId: 'some-service',
    });

  it('decodes to the spec example header and payload', () => {
    expect(decodeProtectedHeader(token)).toEqual(header);
    expect(decodeJwt(token)).toEqual(payload);
  });

  it.each([
    { name: 'verifies one minute before exp', at: () => payload!.exp - 60, want: { ok: true } },
    { name: 'verifies within the leeway after exp', at: () => payload!.exp + 59, want: { ok: true } },
    { name: 'is expired after exp + leeway', at: () => payload!.exp + 60, want: { ok: false, status: 401, reason: 'expired' } },
    { name: 'is rejected before iat - leeway', at: () => payload!.iat - 61, want: { ok: false, status: 401, reason: 'issued in the future' } },
  ])('$name', async ({ at, want }) => {
    expect(await authenticateAt(at())).toMatchObject(want);
  });

  it('returns the example client identity', async () => {
    expect(await authenticateAt(payload!.exp - 60)).toEqual({
      ok: true,
      authentication: 'verified',
      client: { iss: 'https://fhir-ehr.example.com/', name: 'spec example EHR', jti: payload!.jti, tenant: '2ddd6c3a-8e9a-44c6-a305-52111ad302a2', kid: 'example-kid', replayUntil: payload!.exp + 60 },
    });
  });

  it('fails on another endpoint', async () => {
    expect(await authenticateAt(payload!.exp - 60, 'https://cds.example.org/cds-services/other')).toMatchObject({ ok: false, reason: 'audience mismatch' });
  });
});
