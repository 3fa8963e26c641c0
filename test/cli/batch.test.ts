import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runBatch, type BatchOptions } from '../../src/batch/run-batch.ts';
import type * as RunBatchModule from '../../src/batch/run-batch.ts';
import { populationCodeOf, type ReportGroup } from '../../src/measures/measure-report.ts';
import { queryRows, withWarehouse } from '../../src/warehouse/database.ts';
import { measureSummaries } from '../../src/warehouse/results.ts';
import { runCli } from '../authoring/support.ts';
import { MINIMAL_KNOWLEDGE, PROJECT_ROOT, SHARED_FIXTURES, SHARED_MISSING } from '../support/knowledge.ts';
import { tempDir } from '../warehouse/helpers.ts';

// The real runBatch runs (over a real DuckDB file); the wrapper only records the options it is given.
vi.mock('../../src/batch/run-batch.ts', async (importOriginal) => {
  const actual: typeof RunBatchModule = await importOriginal();
  return { ...actual, runBatch: vi.fn(actual.runBatch) };
});

/** The ELM cache is shared with the other CLI tests; each test has its own database and config file. */
const DATA_DIR = path.join(PROJECT_ROOT, '.cache/cli-test-data');
const AT = '2026-03-01T02:00:00Z';

beforeEach(() => {
  vi.mocked(runBatch).mockClear();
  // Isolated from the developer's environment; a case sets it on purpose.
  vi.stubEnv('CAIRN_TRUST_META_PROFILE', '');
});

afterEach(() => {
  vi.unstubAllEnvs();
});

/** configFile writes a cairn.config.json naming a fresh database beside it, plus `extra` settings. */
async function configFile(extra: Record<string, unknown> = {}): Promise<string> {
  const file = path.join(await tempDir(), 'cairn.config.json');
  await writeFile(file, JSON.stringify({ database: 'cairn.duckdb', ...extra }));
  return file;
}

/** batch runs `cairn batch` in-process and captures what it prints. */
function batch(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return runCli(DATA_DIR, 'batch', '--at', AT, '--workers', '0', ...args);
}

function batchOptions(): BatchOptions {
  const calls = vi.mocked(runBatch).mock.calls;
  expect(calls).toHaveLength(1);
  return calls[0]![2];
}

describe('cairn batch --trust-meta-profile', () => {
  const cases: { name: string; config?: Record<string, unknown>; env?: string; flags?: string[]; want: boolean }[] = [
    { name: 'off by default', want: false },
    { name: 'the flag', flags: ['--trust-meta-profile'], want: true },
    { name: 'the config file', config: { batch: { trustMetaProfile: true } }, want: true },
    { name: 'the environment', env: 'on', want: true },
    { name: 'the environment off over the config file', config: { batch: { trustMetaProfile: true } }, env: 'off', want: false },
    { name: 'the flag over the environment', env: 'off', flags: ['--trust-meta-profile'], want: true },
    { name: '--no-trust-meta-profile over the config file', config: { batch: { trustMetaProfile: true } }, flags: ['--no-trust-meta-profile'], want: false },
  ];
  for (const c of cases) {
    it(`${c.name}: runBatch gets trustMetaProfile ${c.want}`, async () => {
      if (c.env !== undefined) vi.stubEnv('CAIRN_TRUST_META_PROFILE', c.env);
      const config = await configFile(c.config);
      const result = await batch('--knowledge', MINIMAL_KNOWLEDGE, '--config', config, ...(c.flags ?? []));
      expect(result.err).toBe('');
      expect(result.code).toBe(0);
      expect(result.out).toMatch(/run run-20260301020000-[0-9a-f]{8} published: 0 patients/);
      expect(batchOptions()).toMatchObject({ evaluatedAt: AT, trustMetaProfile: c.want });
      expect(existsSync(path.join(path.dirname(config), 'cairn.duckdb'))).toBe(true);
    });
  }

  it('refuses a bad setting before it runs, naming it', async () => {
    vi.stubEnv('CAIRN_TRUST_META_PROFILE', 'sometimes');
    const result = await batch('--knowledge', MINIMAL_KNOWLEDGE, '--config', await configFile({ batch: { trustMetaProfile: 'yes' } }));
    expect(result.code).toBe(1);
    expect(result.err).toContain('$.batch.trustMetaProfile');
    expect(result.err).toContain('CAIRN_TRUST_META_PROFILE="sometimes"');
    expect(vi.mocked(runBatch)).not.toHaveBeenCalled();
  });
});

const CMS104 = path.join(SHARED_FIXTURES, 'population/ecqm-content-qicore-2024');
const CMS104_MEASURE = path.join(CMS104, 'measures/CMS104-CMS104FHIRSTKDCAntithrombotic');
/** DENEXCEPPass MedRsnDuringEncIp: the antithrombotic was not ordered for a medical reason, which only its QI-Core profile (meta.profile) says. */
const NOT_ORDERED_CASE = path.join(CMS104_MEASURE, 'tests/tests-593382e8-4ad5-4300-b0ad-26c8954281c6-bundle.json');
const CMS104_LIBRARIES = ['CMS104FHIRSTKDCAntithrombotic-0.9.002', 'FHIRHelpers-4.4.000', 'CQMCommon-2.2.000', 'QICoreCommon-2.1.000', 'SupplementalDataElements-3.5.000', 'TJCOverall-8.15.000'];

/** cms104Knowledge lays out a knowledge folder holding only the published CMS104 (ELM, value sets, Measure). */
async function cms104Knowledge(): Promise<string> {
  const root = await tempDir();
  for (const folder of ['cql', 'value-sets', 'rules', 'measures']) await mkdir(path.join(root, folder));
  for (const library of CMS104_LIBRARIES) await copyFile(path.join(CMS104, 'elm', `${library}.json`), path.join(root, 'cql', `${library}.json`));
  for (const file of await readdir(CMS104_MEASURE)) {
    if (file.startsWith('valuesets-')) await copyFile(path.join(CMS104_MEASURE, file), path.join(root, 'value-sets', file));
    if (file.startsWith('Measure-')) await copyFile(path.join(CMS104_MEASURE, file), path.join(root, 'measures', file));
  }
  return root;
}

/** summaryCounts reads the population counts of the summary MeasureReport of the one run in `database`. */
async function summaryCounts(database: string): Promise<Record<string, number>> {
  return withWarehouse({ path: database, readOnly: true }, async (warehouse) => {
    const runs = await queryRows(warehouse.connection, `SELECT run_id FROM batch_run WHERE status = 'published'`);
    expect(runs).toHaveLength(1);
    const [summary] = await measureSummaries(warehouse, String(runs[0]?.run_id));
    const group = (summary?.report as { group: readonly ReportGroup[] }).group[0];
    return Object.fromEntries((group?.population ?? []).map((p) => [populationCodeOf(p) ?? '?', p.count]));
  });
}

describe.skipIf(!existsSync(NOT_ORDERED_CASE))(`cairn batch over the published CMS104 with batch.trustMetaProfile${existsSync(NOT_ORDERED_CASE) ? '' : ` — skipped: ${SHARED_MISSING}`}`, () => {
  it('counts a medication not ordered (QI-Core negation profile) as an exception only when meta.profile is trusted', async () => {
    const knowledge = await cms104Knowledge();
    const settings = { ingest: { paths: [NOT_ORDERED_CASE] }, batch: { trustMetaProfile: true } };
    const trustedConfig = await configFile(settings);
    const trusted = await batch('--knowledge', knowledge, '--config', trustedConfig);
    expect(trusted.code).toBe(0);
    expect(trusted.out).toContain('published: 1 patients');
    expect(trusted.out).toMatch(/CMS104FHIRSTKDCAntithrombotic\|0\.9\.002: no score \(numerator 0 of 0;/);
    expect(await summaryCounts(path.join(path.dirname(trustedConfig), 'cairn.duckdb'))).toMatchObject({ 'initial-population': 1, denominator: 1, 'denominator-exception': 1, numerator: 0 });

    const untrustedConfig = await configFile(settings);
    const untrusted = await batch('--knowledge', knowledge, '--config', untrustedConfig, '--no-trust-meta-profile');
    expect(untrusted.code).toBe(0);
    expect(untrusted.out).toMatch(/CMS104FHIRSTKDCAntithrombotic\|0\.9\.002: 100\.0% \(numerator 1 of 1;/);
    expect(await summaryCounts(path.join(path.dirname(untrustedConfig), 'cairn.duckdb'))).toMatchObject({ 'initial-population': 1, denominator: 1, 'denominator-exception': 0, numerator: 1 });
  });
});
