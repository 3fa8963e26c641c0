import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startService, type TestService } from './support.ts';

let dir: string | undefined;

afterEach(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('the service across a restart', () => {
  it('refuses a token it accepted before the restart, and accepts new ones', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-restart-'));
    const databasePath = path.join(dir, 'cairn.duckdb');
    const discover = (service: TestService, token: string) => service.app.inject({ method: 'GET', url: '/cds-services', headers: { authorization: `Bearer ${token}` } });
    const first = await startService({ databasePath });
    const token = await first.token('/cds-services');
    expect((await discover(first, token)).statusCode).toBe(200);
    await first.close();

    const second = await startService({ databasePath });
    try {
      expect((await discover(second, token)).statusCode).toBe(401);
      expect((await discover(second, await second.token('/cds-services'))).statusCode).toBe(200);
    } finally {
      await second.close();
    }
  });
});
