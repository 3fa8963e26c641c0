import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
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
    const cwd = await dirWithConfig({ dataDir: 'state', server: { port: 9000, corsOrigins: ['https://a.example'] } });
    const fromFile = loadConfig({ cwd });
    expect(fromFile.dataDir).toBe(path.join(cwd, 'state'));
    expect(fromFile.server.port).toBe(9000);
    const fromEnv = loadConfig({ cwd, env: { PORT: '9100', CAIRN_DATA_DIR: '/tmp/x', CAIRN_AUTH: 'off', CAIRN_CORS_ORIGINS: 'https://b.example, https://c.example' } });
    expect(fromEnv.server.port).toBe(9100);
    expect(fromEnv.dataDir).toBe('/tmp/x');
    expect(fromEnv.auth.off).toBe(true);
    expect(fromEnv.server.corsOrigins).toEqual(['https://b.example', 'https://c.example']);
    expect(loadConfig({ cwd, env: { CAIRN_DATA_DIR: '/tmp/x' }, flags: { dataDir: '/tmp/y' } }).dataDir).toBe('/tmp/y');
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

  it('reports a config file that is not JSON, and a missing explicit one', async () => {
    const cwd = await dirWithConfig('{ nope');
    expect(() => loadConfig({ cwd })).toThrow(CairnError);
    expect(() => loadConfig({ cwd: os.tmpdir(), flags: { config: '/nonexistent/cairn.json' } })).toThrow(/configuration is invalid/);
  });
});
