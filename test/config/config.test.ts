import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, resolveConfig } from '../../src/config/config.ts';
import { CairnError } from '../../src/domain/errors.ts';

async function dirWithConfig(json: unknown): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-config-'));
  await writeFile(path.join(dir, 'cairn.config.json'), typeof json === 'string' ? json : JSON.stringify(json));
  return dir;
}

describe('loadConfig', () => {
  it('uses defaults when there is no config file', async () => {
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'cairn-config-'));
    const config = loadConfig({ cwd });
    expect(config).toMatchObject({ knowledgeDir: cwd, dataDir: path.join(cwd, 'data'), databasePath: path.join(cwd, 'data/cairn.duckdb') });
    expect(config.server).toMatchObject({ host: '127.0.0.1', port: 8080, publicBaseUrl: 'http://127.0.0.1:8080' });
    expect(config.auth.off).toBe(false);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('layers file, then environment, then flags', async () => {
    const cwd = await dirWithConfig({ dataDir: 'state', server: { host: '0.0.0.0', port: 9000, corsOrigins: ['https://a.example'] } });
    const fromFile = loadConfig({ cwd });
    expect(fromFile.dataDir).toBe(path.join(cwd, 'state'));
    expect(fromFile.server).toMatchObject({ host: '0.0.0.0', port: 9000, publicBaseUrl: 'http://0.0.0.0:9000' });
    const fromEnv = loadConfig({ cwd, env: { HOST: '::1', PORT: '9100', CAIRN_DATA_DIR: '/tmp/x', CAIRN_AUTH: 'off', CAIRN_CORS_ORIGINS: 'https://b.example, https://c.example' } });
    // The default public URL follows the listen address from the environment (an IPv6 host in brackets).
    expect(fromEnv.server).toMatchObject({ host: '::1', port: 9100, publicBaseUrl: 'http://[::1]:9100' });
    expect(fromEnv.dataDir).toBe('/tmp/x');
    expect(fromEnv.auth.off).toBe(true);
    expect(fromEnv.server.corsOrigins).toEqual(['https://b.example', 'https://c.example']);
    expect(loadConfig({ cwd, env: { CAIRN_DATA_DIR: '/tmp/x' }, flags: { dataDir: '/tmp/y' } }).dataDir).toBe('/tmp/y');
  });

  it('reads HOST like PORT: over the file when set, and an empty variable leaves the file to decide', async () => {
    const cwd = await dirWithConfig({ server: { host: '0.0.0.0', port: 9000 } });
    const cases: { name: string; env: Record<string, string>; want: { host: string; port: number; publicBaseUrl: string } }[] = [
      { name: 'neither set', env: {}, want: { host: '0.0.0.0', port: 9000, publicBaseUrl: 'http://0.0.0.0:9000' } },
      { name: 'both set', env: { HOST: 'cairn.internal', PORT: '9100' }, want: { host: 'cairn.internal', port: 9100, publicBaseUrl: 'http://cairn.internal:9100' } },
      { name: 'HOST alone', env: { HOST: '127.0.0.2' }, want: { host: '127.0.0.2', port: 9000, publicBaseUrl: 'http://127.0.0.2:9000' } },
      { name: 'both empty', env: { HOST: '', PORT: '' }, want: { host: '0.0.0.0', port: 9000, publicBaseUrl: 'http://0.0.0.0:9000' } },
      { name: 'CAIRN_PUBLIC_URL over HOST and PORT', env: { HOST: '0.0.0.0', PORT: '80', CAIRN_PUBLIC_URL: 'https://cds.example.org' }, want: { host: '0.0.0.0', port: 80, publicBaseUrl: 'https://cds.example.org' } },
    ];
    for (const c of cases) {
      const { config, problems } = resolveConfig({ cwd, env: c.env });
      expect(problems, c.name).toEqual([]);
      expect(config.server, c.name).toMatchObject(c.want);
    }
  });

  it('lists every problem at once', async () => {
    const cwd = await dirWithConfig({ server: { port: 'eighty' }, colour: 'red' });
    try {
      loadConfig({ cwd, env: { PORT: 'x', CAIRN_AUTH: 'maybe' } });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(CairnError);
      const paths = (error as CairnError).problems.map((p) => p.path);
      expect(paths).toEqual(expect.arrayContaining(['$.server.port', '$', 'PORT', 'CAIRN_AUTH']));
    }
  });

  it('resolves batch.trustMetaProfile: off by default, then file, then CAIRN_TRUST_META_PROFILE, then the flag', async () => {
    const plain = await mkdtemp(path.join(os.tmpdir(), 'cairn-config-'));
    const on = await dirWithConfig({ batch: { trustMetaProfile: true } });
    const cases: { name: string; cwd: string; env?: Record<string, string>; flag?: boolean; want: boolean }[] = [
      { name: 'default', cwd: plain, want: false },
      { name: 'config file', cwd: on, want: true },
      { name: 'environment on', cwd: plain, env: { CAIRN_TRUST_META_PROFILE: 'on' }, want: true },
      { name: 'environment true', cwd: plain, env: { CAIRN_TRUST_META_PROFILE: 'TRUE' }, want: true },
      { name: 'environment off over the file', cwd: on, env: { CAIRN_TRUST_META_PROFILE: 'off' }, want: false },
      { name: 'empty environment variable: the file decides', cwd: on, env: { CAIRN_TRUST_META_PROFILE: '' }, want: true },
      { name: 'flag over environment', cwd: plain, env: { CAIRN_TRUST_META_PROFILE: 'false' }, flag: true, want: true },
      { name: 'negated flag over the file', cwd: on, flag: false, want: false },
    ];
    for (const c of cases) {
      const config = loadConfig({ cwd: c.cwd, env: c.env ?? {}, flags: { trustMetaProfile: c.flag } });
      expect(config.batch.trustMetaProfile, c.name).toBe(c.want);
      expect(Object.isFrozen(config.batch), c.name).toBe(true);
    }
  });

  it('lists a bad batch.trustMetaProfile and a bad CAIRN_TRUST_META_PROFILE, even when a flag decides', async () => {
    const cwd = await dirWithConfig({ batch: { trustMetaProfile: 'yes', workers: 2 } });
    try {
      loadConfig({ cwd, env: { CAIRN_TRUST_META_PROFILE: 'maybe' }, flags: { trustMetaProfile: true } });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(CairnError);
      const problems = (error as CairnError).problems;
      expect(problems.map((p) => p.path)).toEqual(expect.arrayContaining(['$.batch.trustMetaProfile', '$.batch', 'CAIRN_TRUST_META_PROFILE']));
      expect(problems.find((p) => p.path === 'CAIRN_TRUST_META_PROFILE')?.message).toContain('"maybe" must be "on" or "off"');
    }
  });

  it('reports a config file that is not JSON, and a missing explicit one', async () => {
    const cwd = await dirWithConfig('{ nope');
    expect(() => loadConfig({ cwd })).toThrow(CairnError);
    expect(() => loadConfig({ cwd: os.tmpdir(), flags: { config: '/nonexistent/cairn.json' } })).toThrow(/configuration is invalid/);
  });
});
