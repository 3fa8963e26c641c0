/** Shared test helpers: temp databases and fixture paths, with a visible reason when one is absent. */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach } from 'vitest';
import { openWarehouse, type Warehouse } from '../../src/warehouse/database.ts';
import { RESOURCE_TABLES } from '../../src/warehouse/schema.ts';

export const FIXTURES = resolve(import.meta.dirname, '../fixtures/warehouse');
export const SHARED = resolve(import.meta.dirname, '../../../shared/fixtures/population');
export const NOW = new Date('2025-06-01T00:00:00Z');

/** sharedFixture returns the path and, when it is missing, the reason the test is skipped. */
export function sharedFixture(relative: string): { path: string; skip: string | false } {
  const path = join(SHARED, relative);
  return { path, skip: existsSync(path) ? false : `fixture ${path} is absent (shared/ not checked out beside the repo)` };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** tempDir makes a folder removed after the test. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-wh-test-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** tempWarehouse opens a fresh database in a temp folder, closed after the test. */
export async function tempWarehouse(): Promise<Warehouse> {
  const dir = await tempDir();
  const warehouse = await openWarehouse({ path: join(dir, 'test.duckdb') });
  let open = true;
  const close = warehouse.close;
  const wrapped: Warehouse = { ...warehouse, close: () => { if (open) { open = false; close(); } } };
  cleanups.push(async () => wrapped.close());
  return wrapped;
}

/** rows runs a query and returns plain objects. */
export async function rows(warehouse: Warehouse, sql: string): Promise<Record<string, unknown>[]> {
  return (await warehouse.connection.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
}

/** snapshot returns every stored resource as sorted `type/id json` lines: the comparable state. */
export async function snapshot(warehouse: Warehouse): Promise<string[]> {
  const union = RESOURCE_TABLES.map((t) => `SELECT resource_type, id, resource FROM ${t}`).join(' UNION ALL ');
  const result = await rows(warehouse, `SELECT resource_type || '/' || id || ' ' || resource AS line FROM (${union}) ORDER BY 1`);
  return result.map((r) => String(r.line));
}
