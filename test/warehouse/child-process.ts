/**
 * Run by the tests in a child process: `hold DB` keeps the database open for writing until killed;
 * `ingest DB PATH` ingests and prints `progress` on the first progress callback, so the parent can
 * kill it mid-ingest.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { openWarehouse } from '../../src/warehouse/database.ts';
import { ingestPaths } from '../../src/warehouse/ingest.ts';

const [mode, db, path] = process.argv.slice(2);
const warehouse = await openWarehouse({ path: db! });
if (mode === 'hold') {
  process.stdout.write('ready\n');
  await sleep(60_000);
} else {
  let told = false;
  await ingestPaths(warehouse, [path!], {
    now: new Date('2025-01-01T00:00:00Z'),
    onProgress: (done) => {
      if (!told && done > 0) {
        told = true;
        process.stdout.write('progress\n');
      }
    },
  });
  process.stdout.write('done\n');
}
warehouse.close();
