import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../authoring/support.ts';
import { tempDir } from '../warehouse/helpers.ts';

beforeEach(() => {
  // Isolated from the developer's environment.
  for (const name of ['PORT', 'HOST', 'CAIRN_AUTH', 'CAIRN_SCHEDULE', 'CAIRN_CONFIG', 'CAIRN_PUBLIC_URL']) vi.stubEnv(name, undefined);
});

afterEach(() => {
  vi.unstubAllEnvs();
});

/** A start with a bad configuration stops before anything runs, listing every problem at once. */
describe('cairn serve with a bad configuration', () => {
  it('lists the problems of the file, the clients and the schedule together, and starts nothing', async () => {
    const dir = await tempDir();
    const dataDir = path.join(dir, 'data');
    const config = path.join(dir, 'cairn.config.json');
    await writeFile(config, JSON.stringify({
      server: { port: 70_000 },
      schedule: 'every night',
      clientsDir: 'no-such-folder',
      auth: { leewaySeconds: -5, clients: [{ iss: 'https://ehr.example.org', services: '*' }] },
    }));
    const { code, err } = await runCli(dataDir, 'serve', '--config', config, '--no-watch');
    expect(code).not.toBe(0);
    expect(err).toContain('$.server.port');
    expect(err).toContain('$.schedule');
    expect(err).toContain('$.clientsDir');
    expect(err).toContain('$.auth.leewaySeconds');
    expect(err).toContain('$.auth.clients[0]');
    // Nothing ran: no knowledge activated, no database opened.
    await expect(readdir(dataDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('reports auth.clients that is not a list as a problem, not a crash', async () => {
    const dir = await tempDir();
    const config = path.join(dir, 'cairn.config.json');
    await writeFile(config, JSON.stringify({ auth: { clients: { iss: 'https://ehr.example.org' } } }));
    const { code, err } = await runCli(path.join(dir, 'data'), 'serve', '--config', config, '--no-watch');
    expect(code).not.toBe(0);
    expect(err).toContain('$.auth.clients');
    expect(err).not.toContain('TypeError');
  });

  it('with no trusted client anywhere (config/clients ships empty), says how to add one, naming no config file that does not exist', async () => {
    const dir = await tempDir();
    const { code, err } = await runCli(path.join(dir, 'data'), 'serve', '--no-watch');
    expect(code).not.toBe(0);
    expect(err).toContain('$.auth.clients [CONFIG_INVALID] no trusted CDS client');
    expect(err).toContain('CAIRN_AUTH=off');
    expect(err).not.toContain('cairn.config.json');
  });

  it('names the --schedule flag when it is the bad one', async () => {
    const dir = await tempDir();
    const config = path.join(dir, 'cairn.config.json');
    await writeFile(config, JSON.stringify({ auth: { mode: 'off' } }));
    vi.stubEnv('CAIRN_AUTH', 'off');
    const { code, err } = await runCli(path.join(dir, 'data'), 'serve', '--config', config, '--no-watch', '--schedule', '61 * * * *');
    expect(code).not.toBe(0);
    expect(err).toContain('--schedule');
  });
});
