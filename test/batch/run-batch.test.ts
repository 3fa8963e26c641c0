import { beforeAll, describe, expect, it } from 'vitest';
import { runBatch } from '../../src/batch/run-batch.ts';
import { evaluatePatient } from '../../src/evaluate/evaluate.ts';
import { loadPreparedKnowledge } from '../../src/evaluate/knowledge-service.ts';
import type { PreparedKnowledge } from '../../src/evaluate/prepare.ts';
import { generatePopulation } from '../../src/synthetic/generate.ts';
import { queryRows } from '../../src/warehouse/database.ts';
import { ingestPaths } from '../../src/warehouse/ingest.ts';
import { streamPatients } from '../../src/warehouse/read.ts';
import { ruleCounts } from '../../src/warehouse/results.ts';
import { PROJECT_ROOT, testDeps } from '../support/knowledge.ts';
import { tempDir, tempWarehouse } from '../warehouse/helpers.ts';

const AT = '2026-03-01T02:00:00Z';
let prepared: PreparedKnowledge;

beforeAll(async () => {
  prepared = await loadPreparedKnowledge(PROJECT_ROOT, testDeps());
});

describe('runBatch over a generated population in DuckDB', () => {
  it('publishes exactly what evaluatePatient decides for each patient, and keeps earlier runs', async () => {
    const out = await tempDir();
    await generatePopulation({ patients: 120, seed: 7, outDir: out });
    const warehouse = await tempWarehouse();
    await ingestPaths(warehouse, [out], { now: new Date('2026-02-01T00:00:00Z'), sources: ['test'] });

    let clock = Date.parse('2026-03-01T02:00:00Z');
    const now = (): Date => new Date((clock += 1000));
    const first = await runBatch(warehouse, prepared, { evaluatedAt: AT, now });
    expect(first.patients).toBe(120);
    expect(first.errors).toBe(0);
    expect(first.careGaps).toBeGreaterThan(0);

    // The same decisions, computed patient by patient.
    let alerts = 0;
    let gaps = 0;
    for await (const chunk of streamPatients(warehouse)) {
      for (const patient of chunk) {
        const evaluation = await evaluatePatient(prepared, patient.resources as never, { evaluatedAt: AT });
        alerts += evaluation.decisions.filter((d) => d.kind === 'alert').length;
        gaps += evaluation.decisions.filter((d) => d.kind === 'care-gap').length;
      }
    }
    const perRule = await ruleCounts(warehouse, first.runId);
    const ruleGaps = perRule.filter((r) => !r.ruleId.startsWith('measure:')).reduce((n, r) => n + r.careGaps, 0);
    const measureGaps = perRule.filter((r) => r.ruleId.startsWith('measure:')).reduce((n, r) => n + r.careGaps, 0);
    expect({ alerts: first.alerts, ruleGaps }).toEqual({ alerts, ruleGaps: gaps });
    expect(first.careGaps).toBe(gaps + measureGaps);
    expect(perRule.map((r) => r.ruleId)).toEqual(expect.arrayContaining(['colorectal-cancer-screening-overdue']));

    const second = await runBatch(warehouse, prepared, { evaluatedAt: '2026-03-02T02:00:00Z', now });
    expect(second.runId).not.toBe(first.runId);
    const runs = await queryRows(warehouse.connection, `SELECT run_id, status, care_gaps FROM batch_run ORDER BY evaluated_at`);
    expect(runs.map((r) => [r.run_id, r.status])).toEqual([[first.runId, 'published'], [second.runId, 'published']]);
    const firstGaps = await queryRows(warehouse.connection, `SELECT count(*)::INTEGER AS n FROM batch_care_gap WHERE run_id = $1`, [first.runId]);
    expect(firstGaps[0]?.n).toBe(first.careGaps);
  });

  it('is deterministic: the same data and instant give identical outputs, on worker threads as on one thread', async () => {
    const out = await tempDir();
    await generatePopulation({ patients: 60, seed: 5, outDir: out });
    const warehouse = await tempWarehouse();
    await ingestPaths(warehouse, [out], { now: new Date('2026-02-01T00:00:00Z'), sources: ['test'] });
    const now = (): Date => new Date(AT);
    const single = await runBatch(warehouse, prepared, { evaluatedAt: AT, now });
    const parallel = await runBatch(warehouse, prepared, { evaluatedAt: AT, now, workers: 2 });
    expect({ ...parallel, runId: '', startedAt: '', finishedAt: '' }).toEqual({ ...single, runId: '', startedAt: '', finishedAt: '' });
    const rows = async (runId: string) => queryRows(warehouse.connection, `SELECT id, patient_id, rule_id, missing, due_date::VARCHAR AS due FROM batch_care_gap WHERE run_id = $1 ORDER BY id`, [runId]);
    expect(await rows(parallel.runId)).toEqual(await rows(single.runId));
    const reports = async (runId: string) => queryRows(warehouse.connection, `SELECT measure, type, patient_id, report::VARCHAR AS report FROM batch_measure_report WHERE run_id = $1 ORDER BY measure, type, patient_id`, [runId]);
    const singleReports = await reports(single.runId);
    expect(singleReports.filter((r) => r.type === 'summary')).toHaveLength(prepared.measures.length);
    expect(await reports(parallel.runId)).toEqual(singleReports);
    const alerts = async (runId: string) => queryRows(warehouse.connection, `SELECT id, patient_id, rule_id, message FROM batch_alert WHERE run_id = $1 ORDER BY id`, [runId]);
    expect(await alerts(parallel.runId)).toEqual(await alerts(single.runId));
  });
});
