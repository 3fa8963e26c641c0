import path from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CairnError } from '../../../src/domain/errors.ts';
import { createClientAuthenticator, fhirServerAllowed, parseAuthConfig, readClientConfigFiles, type ClientConfig } from '../../../src/cds-hooks/auth/index.ts';
import { HAS_SHARED, PROJECT_ROOT, SHARED_CDS_HOOKS, SHARED_MISSING } from './support.ts';

const EC_KEY = { kty: 'EC', crv: 'P-384', kid: 'k', x: 'dw_JGR8nB2I6XveNxUOl2qk699ZPLM2nYI5STSdiEl9avAkrm3CkfYMbrrjr8laB', y: 'Sm3mLE-n1zYNla_aiE3cb3nZsL51RbC7ysw3q8aJLxGm-hx79RPMYpITDjp7kgzy' };
const client = (extra: Record<string, unknown> = {}) => ({ iss: 'https://ehr.example.org', jwks: { keys: [EC_KEY] }, ...extra });

function problemsOf(raw: unknown): string[] {
  try {
    parseAuthConfig(raw, { file: 'auth.json' });
  } catch (error) {
    if (error instanceof CairnError && error.code === 'CONFIG_INVALID') return error.problems.map((problem) => `${problem.path} ${problem.message}`);
    throw error;
  }
  return [];
}

describe('AuthConfigSchema', () => {
  it('fills defaults', () => {
    const config = parseAuthConfig({ mode: 'required', clients: [client()] });
    expect(config.leewaySeconds).toBe(60);
    expect(config.maxTokenLifetimeSeconds).toBe(300);
    expect(config.replayCacheMaxEntriesPerClient).toBe(100_000);
    expect(config.clients[0]?.services).toBe('*');
    expect(config.jwksFetch).toEqual({ timeoutMs: 3_000, minRefreshIntervalSeconds: 30, maxAgeSeconds: 3_600, maxBytes: 65_536 });
    expect(Object.isFrozen(config.clients[0])).toBe(true);
  });

  it.each([
    { name: 'mode missing', input: { clients: [client()] }, want: ['$.mode'] },
    { name: 'required mode with no client', input: { mode: 'required' }, want: ['$.clients no trusted CDS client: add one to auth.clients or a file to clientsDir (default config/clients/; examples in config/example-clients/), or set CAIRN_AUTH=off for a local trial'] },
    { name: 'client without keys or jku', input: { mode: 'required', clients: [{ iss: 'x' }] }, want: ['$.clients[0] a client needs "jwks"'] },
    { name: 'jku over plain http', input: { mode: 'required', clients: [client({ jku: ['http://ehr.example.org/jwks'] })] }, want: ['$.clients[0].jku[0] a jku URL must use https'] },
    { name: 'private key member', input: { mode: 'required', clients: [client({ jwks: { keys: [{ ...EC_KEY, d: 'secret' }] } })] }, want: ['$.clients[0].jwks.keys[0].d a client key must be public'] },
    { name: 'symmetric key', input: { mode: 'required', clients: [client({ jwks: { keys: [{ kty: 'oct', kid: 'h', k: 'c2VjcmV0' }] } })] }, want: ['$.clients[0].jwks.keys[0].kty'] },
    { name: 'EC key on the wrong curve', input: { mode: 'required', clients: [client({ jwks: { keys: [{ ...EC_KEY, crv: 'P-256' }] } })] }, want: ['$.clients[0].jwks.keys[0].crv'] },
    { name: 'key without kid', input: { mode: 'required', clients: [client({ jwks: { keys: [{ ...EC_KEY, kid: undefined }] } })] }, want: ['$.clients[0].jwks.keys[0].kid'] },
    { name: 'HS256 key alg', input: { mode: 'required', clients: [client({ jwks: { keys: [{ ...EC_KEY, alg: 'HS256' }] } })] }, want: ['$.clients[0].jwks.keys[0].alg'] },
    { name: 'duplicate iss', input: { mode: 'required', clients: [client(), client()] }, want: ['$.clients[1].iss duplicate iss'] },
    { name: 'leeway out of range', input: { mode: 'required', clients: [client()], leewaySeconds: -1 }, want: ['$.leewaySeconds'] },
    { name: 'token lifetime over an hour', input: { mode: 'required', clients: [client()], maxTokenLifetimeSeconds: 3_601 }, want: ['$.maxTokenLifetimeSeconds'] },
    { name: 'unknown key', input: { mode: 'required', clients: [client({ audience: 'x' })] }, want: ['$.clients[0]'] },
    { name: 'services not a list', input: { mode: 'required', clients: [client({ services: 'statin-use' })] }, want: ['$.clients[0].services'] },
    { name: 'fhirServers not a web URL', input: { mode: 'required', clients: [client({ fhirServers: ['ftp://ehr.example.org/fhir'] })] }, want: ['$.clients[0].fhirServers[0]'] },
    { name: 'fhirServers empty', input: { mode: 'required', clients: [client({ fhirServers: [] })] }, want: ['$.clients[0].fhirServers'] },
  ])('names the path: $name', ({ input, want }) => {
    const problems = problemsOf(input);
    for (const prefix of want) expect(problems.some((problem) => problem.startsWith(prefix)), `${prefix} in ${JSON.stringify(problems)}`).toBe(true);
  });

  it('reports every problem at once, with the file', () => {
    try {
      parseAuthConfig({ mode: 'maybe', clients: [{ iss: '' }], leewaySeconds: 'x' }, { file: 'auth.json' });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(CairnError);
      expect((error as CairnError).problems.length).toBeGreaterThanOrEqual(3);
      expect((error as CairnError).problems.every((problem) => problem.file === 'auth.json')).toBe(true);
    }
  });

  it('compares fhirServers as URLs: scheme and host in any case, default port, trailing slash', () => {
    const [configured] = parseAuthConfig({ mode: 'required', clients: [client({ fhirServers: ['HTTPS://EHR.example.org:443/fhir/r4/'] })] }).clients;
    expect(configured?.fhirServers).toEqual(['https://ehr.example.org/fhir/r4']);
    const allowed = configured?.fhirServers;
    for (const same of ['https://ehr.example.org/fhir/r4', 'https://ehr.example.org/fhir/r4/', 'https://Ehr.Example.org:443/fhir/r4']) expect(fhirServerAllowed(same, allowed), same).toBe(true);
    for (const other of ['https://ehr.example.org/fhir/R4', 'https://ehr.example.org/fhir', 'https://ehr.example.org/fhir/r4/Patient', 'http://ehr.example.org/fhir/r4', 'https://ehr.example.org:8443/fhir/r4', 'not a url']) {
      expect(fhirServerAllowed(other, allowed), other).toBe(false);
    }
    expect(fhirServerAllowed('https://anywhere.example/fhir', undefined)).toBe(true);
  });

  it('accepts mode off without clients', () => {
    expect(parseAuthConfig({ mode: 'off' }).mode).toBe('off');
  });

  it('ready() rejects an inline key that is not a point on the curve', async () => {
    const bad = { ...EC_KEY, x: EC_KEY.y, y: EC_KEY.x };
    const auth = createClientAuthenticator(parseAuthConfig({ mode: 'required', clients: [client({ jwks: { keys: [bad] } })] }), { now: () => 0 });
    await expect(auth.ready()).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});

describe('config/clients and config/example-clients', () => {
  const dir = path.join(PROJECT_ROOT, 'config/clients');
  const examples = path.join(PROJECT_ROOT, 'config/example-clients');
  const SANDBOX_ISS = 'https://sandbox.cds-hooks.org';

  it('every example client file parses and its keys import', async () => {
    const clients = await readClientConfigFiles(examples);
    expect(clients.map((c) => c.iss)).toContain(SANDBOX_ISS);
    const auth = createClientAuthenticator(parseAuthConfig({ mode: 'required', clients: clients.map((c) => JSON.parse(JSON.stringify(c))) }), { now: () => 0 });
    await expect(auth.ready()).resolves.toBeUndefined();
  });

  it('the default clients folder trusts no example client (their private keys are published)', async () => {
    // A client is an example one if it has an example's iss or any of its keys (x of an EC key, n of an RSA key).
    const identities = (clients: readonly ClientConfig[]) => clients.flatMap((c) => [c.iss, ...(c.jwks?.keys ?? []).map((key) => key.x ?? key.n)]);
    const published = new Set(identities(await readClientConfigFiles(examples)));
    const trusted = identities(await readClientConfigFiles(dir));
    expect(trusted.filter((identity) => published.has(identity))).toEqual([]);
    expect(trusted).not.toContain(SANDBOX_ISS);
  });

  it.skipIf(!HAS_SHARED)(`the sandbox example key equals the published sandbox JWKS${HAS_SHARED ? '' : ` (${SHARED_MISSING})`}`, async () => {
    const published = JSON.parse(readFileSync(path.join(SHARED_CDS_HOOKS, 'sandbox/sandbox-client-jwks.public.json'), 'utf8')) as unknown;
    const sandbox = (await readClientConfigFiles(examples)).find((c) => c.iss === SANDBOX_ISS);
    expect(sandbox?.jwks).toEqual(published);
    expect(sandbox?.jku).toEqual(['https://sandbox.cds-hooks.org/.well-known/jwks.json']);
  });

  it('reports a bad client file with its path', async () => {
    const fixtures = path.join(PROJECT_ROOT, 'test/fixtures/cds-hooks-auth/bad-clients');
    await expect(readClientConfigFiles(fixtures)).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      problems: [
        { file: path.join(fixtures, 'no-keys.json'), path: '$' },
        { file: path.join(fixtures, 'not-json.json') },
        { file: path.join(fixtures, 'private-key.json'), path: '$.jwks.keys[0].d' },
      ],
    });
  });
});
