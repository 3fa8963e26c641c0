import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runBatch } from '../../src/batch/run-batch.ts';
import { loadPreparedKnowledge } from '../../src/evaluate/knowledge-service.ts';
import type { PreparedKnowledge } from '../../src/evaluate/prepare.ts';
import { generatePopulation } from '../../src/synthetic/generate.ts';
import { openWarehouse, queryRows } from '../../src/warehouse/database.ts';
import { ingestPaths } from '../../src/warehouse/ingest.ts';
import { PROJECT_ROOT, testDeps } from '../support/knowledge.ts';
import { tempDir } from '../warehouse/helpers.ts';

const TSX = resolve(import.meta.dirname, '../../node_modules/tsx/dist/loader.mjs');
const CHILD = resolve(import.meta.dirname, 'batch-child.ts');
const AT = '2026-03-01T02:00:00Z';
let prepared: PreparedKnowledge;

beforeAll(async () => {
  prepared = await loadPreparedKnowledge(PROJECT_ROOT, testDeps());
});

/** Starts the batch in a child process and SIGKILLs it once it has written its first patients. */
function killMidRun(db: string): Promise<string> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', TSX, CHILD, db, PROJECT_ROOT, AT], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('progress')) child.kill('SIGKILL');
    });
    child.on('exit', () => (out.includes('progress') && !out.includes('done') ? done(out) : fail(new Error(`child was not killed mid-run: ${out} ${err}`))));
  });
}

async function publishedRuns(db: string): Promise<Record<string, unknown>[]> {
  const warehouse = await openWarehouse({ path: db, readOnly: true });
  try {
    return await queryRows(warehouse.connection, `SELECT run_id, patients, care_gaps, (SELECT count(*)::INTEGER FROM batch_care_gap) AS gap_rows FROM batch_run ORDER BY run_id`);
  } finally {
    warehouse.close();
  }
}

describe('a batch killed mid-run', () => {
  it('leaves the published run unchanged, and the rerun completes with correct counts', async () => {
    const dir = await tempDir();
    const db = join(dir, 'crash.duckdb');
    const pop = join(dir, 'pop');
    await generatePopulation({ patients: 400, seed: 9, outDir: pop });
    const warehouse = await openWarehouse({ path: db });
    await ingestPaths(warehouse, [pop], { now: new Date('2026-02-01T00:00:00Z'), sources: ['test'] });
    const first = await runBatch(warehouse, prepared, { evaluatedAt: AT, now: () => new Date('2026-03-01T02:00:00Z') });
    warehouse.close();
    const before = await publishedRuns(db);
    expect(before).toEqual([{ run_id: first.runId, patients: 400, care_gaps: first.careGaps, gap_rows: first.careGaps }]);

    await killMidRun(db);
    expect(await publishedRuns(db)).toEqual(before);

    const again = await openWarehouse({ path: db });
    try {
      const rerun = await runBatch(again, prepared, { evaluatedAt: AT, now: () => new Date('2026-03-02T02:00:00Z') });
      expect({ patients: rerun.patients, careGaps: rerun.careGaps, alerts: rerun.alerts }).toEqual({ patients: 400, careGaps: first.careGaps, alerts: first.alerts });
      const counted = await queryRows(again.connection, `SELECT count(*)::INTEGER AS n, count(DISTINCT id)::INTEGER AS ids FROM batch_care_gap WHERE run_id = $1`, [rerun.runId]);
      expect(counted[0]).toEqual({ n: first.careGaps, ids: first.careGaps });
    } finally {
      again.close();
    }
  });
});
