import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { capMemory, closeAppenders, openWarehouse, queryRows, type Warehouse } from '../../src/warehouse/database.ts';
import { tempDir } from './helpers.ts';

async function memoryLimit(warehouse: Warehouse): Promise<string> {
  return String((await queryRows(warehouse.connection, `SELECT current_setting('memory_limit') AS m`))[0]?.m);
}

describe('capMemory', () => {
  const cases: { name: string; openedWith?: string; cap: string; capped: RegExp | 'unchanged' }[] = [
    { name: "DuckDB's default (80% of RAM) is lowered", cap: '1GiB', capped: /^1(\.0)? GiB$/ },
    { name: 'a higher configured limit is lowered', openedWith: '3GB', cap: '1GiB', capped: /^1(\.0)? GiB$/ },
    { name: 'a limit given in other units is compared by bytes', openedWith: '2GiB', cap: '1500MB', capped: /^1\.3\d* GiB$/ },
    { name: 'a lower configured limit is kept', openedWith: '512MiB', cap: '1GiB', capped: 'unchanged' },
    { name: 'an equal limit is kept', openedWith: '1GiB', cap: '1GiB', capped: 'unchanged' },
  ];
  for (const c of cases) {
    it(`${c.name}, and the undo restores what the warehouse was opened with`, async () => {
      const warehouse = await openWarehouse({ path: join(await tempDir(), 'cap.duckdb'), ...(c.openedWith ? { memoryLimit: c.openedWith } : {}) });
      try {
        const before = await memoryLimit(warehouse);
        const undo = await capMemory(warehouse, c.cap);
        const during = await memoryLimit(warehouse);
        if (c.capped === 'unchanged') expect(during).toBe(before);
        else expect(during).toMatch(c.capped);
        await undo();
        expect(await memoryLimit(warehouse)).toBe(before);
      } finally {
        warehouse.close();
      }
    });
  }
});

describe('closeAppenders', () => {
  it('throws the first failure after trying every appender, and leaves no rows to be written again when the failed one is collected', async () => {
    const warehouse = await openWarehouse({ path: join(await tempDir(), 'appenders.duckdb') });
    try {
      const c = warehouse.connection;
      await c.run('CREATE TABLE keyed (k VARCHAR PRIMARY KEY)');
      await c.run('CREATE TABLE plain (v VARCHAR)');
      await c.run(`INSERT INTO keyed VALUES ('taken')`);
      // Appenders no one holds once this returns: the collector may finalize them.
      const closeBoth = async (): Promise<void> => {
        await c.run('BEGIN TRANSACTION');
        const keyed = await c.createAppender('keyed');
        keyed.appendVarchar('taken');
        keyed.endRow();
        const plain = await c.createAppender('plain');
        plain.appendVarchar('kept');
        plain.endRow();
        try {
          closeAppenders(keyed, plain);
        } finally {
          await c.run('ROLLBACK');
        }
      };
      await expect(closeBoth()).rejects.toThrow(/taken/);
      // Collected while a transaction is open, the failed appender once wrote its rows again and aborted it.
      setFlagsFromString('--expose-gc');
      const gc = runInNewContext('gc') as () => void;
      await c.run('BEGIN TRANSACTION');
      for (let i = 0; i < 5; i++) {
        gc();
        await nextTurn();
        await c.run(`INSERT INTO plain VALUES ('after')`);
      }
      await c.run('COMMIT');
      expect(await queryRows(c, 'SELECT v, count(*)::INTEGER AS n FROM plain GROUP BY v ORDER BY v')).toEqual([{ v: 'after', n: 5 }]);
    } finally {
      warehouse.close();
    }
  });
});
