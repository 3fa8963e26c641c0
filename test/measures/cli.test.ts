import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerMeasureCommand, runMeasure, type MeasureFlags } from '../../src/cli/measure.ts';
import { loadFhirR4Model, type FhirModel } from '../../src/cql-engine/fhir-model.ts';
import type { IndividualReport, MeasureReport } from '../../src/measures/measure-report.ts';
import { readPatients } from '../../src/measures/patient-files.ts';
import { HAS_SHARED, SHARED_FIXTURES, SHARED_MISSING } from '../support/knowledge.ts';

const ECQM = path.join(SHARED_FIXTURES, 'population/ecqm-content-qicore-2024');
const AVAILABLE = HAS_SHARED && existsSync(ECQM);
const CMS130 = path.join(ECQM, 'measures/CMS130-ColonCancerScreeningFHIR');
const CMS104 = path.join(ECQM, 'measures/CMS104-CMS104FHIRSTKDCAntithrombotic');

function flags(dir: string, patients: string[], extra: Partial<MeasureFlags> = {}): MeasureFlags {
  const files = readdirSync(dir);
  return {
    measure: path.join(dir, files.find((f) => f.startsWith('Measure-')) ?? ''),
    libraryDir: path.join(ECQM, 'elm'),
    valuesets: path.join(dir, files.find((f) => f.startsWith('valuesets-')) ?? ''),
    patients,
    trustMetaProfile: true,
    ...extra,
  };
}

function tests(dir: string, n: number): string[] {
  return readdirSync(path.join(dir, 'tests')).sort().slice(0, n).map((f) => path.join(dir, 'tests', f));
}

function expectedCounts(file: string): number[] {
  const bundle = JSON.parse(readFileSync(file, 'utf8')) as { entry: { resource: { resourceType: string; group?: { population: { count: number }[] }[] } }[] };
  return bundle.entry.find((e) => e.resource.resourceType === 'MeasureReport')?.resource.group?.[0]?.population.map((p) => p.count) ?? [];
}

describe.skipIf(!AVAILABLE)(`cairn measure over eCQM test bundles${AVAILABLE ? '' : ` — skipped: ${SHARED_MISSING}`}`, () => {
  let model: FhirModel;
  beforeAll(() => {
    model = loadFhirR4Model();
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
  });
  afterAll(() => {
    vi.restoreAllMocks();
  });

  it('individual reports from Bundle files match the expected counts and are deterministic', async () => {
    const files = tests(CMS130, 3);
    const result = await runMeasure(flags(CMS130, files), model);
    expect(result.errors).toEqual([]);
    expect(result.bundle).toMatchObject({ resourceType: 'Bundle', type: 'collection' });
    const reports = result.bundle.entry.map((e) => e.resource as IndividualReport);
    expect(reports.map((r) => r.group[0]?.population.map((p) => p.count))).toEqual(files.map(expectedCounts));
    expect(reports[0]).toMatchObject({ type: 'individual', measure: 'https://madie.cms.gov/Measure/ColonCancerScreeningFHIR|0.1.000', period: { start: '2025-01-01T00:00:00.000+00:00' } });
    expect(reports[0]?.group[0]?.stratifier?.map((s) => s.code?.[0]?.text)).toEqual(['Stratification 1', 'Stratification 2']);
    expect(await runMeasure(flags(CMS130, files), model)).toEqual(result);
  });

  it('summary and subject-list over a folder of episode-based (CMS104) bundles, period 2026 from effectivePeriod', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-measure-'));
    const files = tests(CMS104, 6);
    for (const file of files) await writeFile(path.join(dir, path.basename(file)), await readFile(file));
    const summary = (await runMeasure(flags(CMS104, [dir], { report: 'summary' }), model)).bundle.entry[0]?.resource as MeasureReport;
    const want = files.map(expectedCounts).reduce((sum, counts) => sum.map((v, i) => v + (counts[i] ?? 0)));
    expect(summary).toMatchObject({ type: 'summary', period: { start: '2026-01-01T00:00:00.000+00:00', end: '2026-12-31T23:59:59.999+00:00' } });
    expect(summary.group[0]?.population.map((p) => p.count)).toEqual(want);
    const list = (await runMeasure(flags(CMS104, [dir], { report: 'subject-list' }), model)).bundle.entry[0]?.resource as MeasureReport;
    const ip = list.group[0]?.population[0];
    const contained = list.contained?.find((r) => `#${r.id}` === ip?.subjectResults?.reference) as { entry: unknown[] } | undefined;
    expect(contained?.entry.length).toBeGreaterThan(0);
  });

  it('reads an NDJSON folder grouped by patient, like the same data as Bundles', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-ndjson-'));
    const files = tests(CMS130, 4);
    const byType = new Map<string, string[]>();
    for (const file of files) {
      const bundle = JSON.parse(await readFile(file, 'utf8')) as { entry: { resource: { resourceType: string } }[] };
      for (const { resource } of bundle.entry) {
        if (resource.resourceType === 'MeasureReport') continue;
        byType.set(resource.resourceType, [...(byType.get(resource.resourceType) ?? []), JSON.stringify(resource)]);
      }
    }
    for (const [type, lines] of byType) await writeFile(path.join(dir, `${type}.ndjson`), `${lines.join('\n')}\n`);
    const patients = [];
    for await (const p of readPatients([dir])) patients.push(p);
    expect(patients).toHaveLength(4);
    const fromNdjson = await runMeasure(flags(CMS130, [dir]), model);
    const fromBundles = await runMeasure(flags(CMS130, files), model);
    const bySubject = (r: typeof fromNdjson): Record<string, unknown> =>
      Object.fromEntries(r.bundle.entry.map((e) => [(e.resource as IndividualReport).subject.reference, (e.resource as IndividualReport).group]));
    expect(bySubject(fromNdjson)).toEqual(bySubject(fromBundles));
  });

  it('the registered command writes the Bundle with care gaps to --out; bad flags are INPUT_INVALID', async () => {
    const out = path.join(await mkdtemp(path.join(os.tmpdir(), 'cairn-out-')), 'reports.json');
    const program = new Command().exitOverride();
    registerMeasureCommand(program);
    const f = flags(CMS130, tests(CMS130, 5));
    await program.parseAsync(['node', 'cairn', 'measure', '--measure', f.measure, '--library-dir', f.libraryDir, '--valuesets', f.valuesets, '--patients', ...f.patients, '--trust-meta-profile', '--care-gaps', '--out', out]);
    const bundle = JSON.parse(await readFile(out, 'utf8')) as { entry: { resource: { resourceType: string } }[] };
    expect(bundle.entry.filter((e) => e.resource.resourceType === 'MeasureReport')).toHaveLength(5);
    expect(bundle.entry.every((e) => ['MeasureReport', 'DetectedIssue'].includes(e.resource.resourceType))).toBe(true);
    await expect(runMeasure({ ...f, report: 'weekly' }, model)).rejects.toMatchObject({ code: 'INPUT_INVALID' });
    await expect(runMeasure({ ...f, periodStart: '2025-01-01' }, model)).rejects.toMatchObject({ code: 'INPUT_INVALID' });
  });
});
