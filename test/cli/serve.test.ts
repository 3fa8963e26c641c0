import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AUTH_OFF_WARNING } from '../../src/cds-hooks/auth/index.ts';
import { ACCESS_OFF_WARNING } from '../../src/dashboards/access.ts';
import { runCli, tempDataDir } from '../authoring/support.ts';
import { MINIMAL_KNOWLEDGE, PROJECT_ROOT } from '../support/knowledge.ts';
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

/** One JSON line of the service's log (pino). */
interface LogLine {
  readonly level: number;
  readonly msg?: string;
  readonly reqId?: string;
}

const WARN = 40;

/**
 * A real `cairn serve` in a child process (its logger writes to stdout, and it runs until signalled),
 * over the minimal knowledge, from an empty working folder (no config file, no clients).
 */
class ServeProcess {
  readonly lines: LogLine[] = [];
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly exited: Promise<void>;
  private stderr = '';

  constructor(cwd: string, dataDir: string, env: Record<string, string>) {
    const bin = path.join(PROJECT_ROOT, 'bin/cairn.js');
    // A clean environment: nothing of the developer's (or vitest's) CAIRN_* or NODE_OPTIONS leaks in.
    this.child = spawn(process.execPath, [bin, 'serve', '--no-watch', '--knowledge', MINIMAL_KNOWLEDGE, '--data-dir', dataDir], { cwd, env: { PATH: process.env.PATH ?? '', ...env } });
    let pending = '';
    this.child.stdout.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      const complete = pending.split('\n');
      pending = complete.pop() ?? '';
      for (const line of complete) if (line.trim()) this.lines.push(JSON.parse(line) as LogLine);
    });
    this.child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString('utf8')));
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  /** until resolves with the first log line matching `found`, polling until the deadline. */
  async until<T>(found: () => T | undefined, what: string, timeoutMs = 90_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = found();
      if (value !== undefined) return value;
      if (this.child.exitCode !== null || Date.now() > deadline) throw new Error(`cairn serve: no ${what} (exit ${this.child.exitCode}); stderr: ${this.stderr}; log: ${JSON.stringify(this.lines)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** stop sends SIGTERM (serve shuts down on it) and waits; SIGKILL if it does not exit in time. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const killed = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(killed);
  }
}

describe('cairn serve with CAIRN_AUTH=off', () => {
  it('logs the warnings once at start (CDS services and dashboards open) and the CDS one on every CDS request', async () => {
    const serve = new ServeProcess(await tempDir(), await tempDataDir(), { CAIRN_AUTH: 'off', HOST: '127.0.0.1', PORT: '0' });
    try {
      const listening = await serve.until(() => serve.lines.map((l) => /^Server listening at (http:\/\/127\.0\.0\.1:\d+)$/.exec(l.msg ?? '')?.[1]).find((url) => url !== undefined), 'listening line');
      const atStart = serve.lines.filter((l) => l.level === WARN);
      expect(atStart).toEqual([expect.objectContaining({ msg: AUTH_OFF_WARNING }), expect.objectContaining({ msg: ACCESS_OFF_WARNING })]);
      expect(atStart.every((l) => l.reqId === undefined)).toBe(true);

      const requests = 3;
      for (let i = 0; i < requests; i++) expect((await fetch(`${listening}/cds-services`)).status).toBe(200);
      await serve.until(() => (serve.lines.filter((l) => l.msg === 'request completed').length >= requests ? true : undefined), `${requests} request lines`);

      const warnings = serve.lines.filter((l) => l.level === WARN);
      expect(warnings.map((l) => l.msg)).toEqual([AUTH_OFF_WARNING, ACCESS_OFF_WARNING, ...Array<string>(requests).fill(AUTH_OFF_WARNING)]);
      const perRequest = warnings.filter((l) => l.reqId !== undefined);
      expect(new Set(perRequest.map((l) => l.reqId)).size).toBe(requests);
    } finally {
      await serve.stop();
    }
  });
});
