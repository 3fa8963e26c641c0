import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { capMemory, openWarehouse, queryRows, type Warehouse } from '../../src/warehouse/database.ts';
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
