import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadLibraries, loadValueSets } from '../../src/cli/measure.ts';
import { loadFhirR4Model, type FhirModel } from '../../src/cql-engine/fhir-model.ts';
import type { PatientData } from '../../src/cql-engine/patient-source.ts';
import { evaluateMeasurePatient, measurementPeriod } from '../../src/measures/evaluate.ts';
import { populationCodeOf, type ReportGroup } from '../../src/measures/measure-report.ts';
import { prepareMeasure, type MeasureLibrary } from '../../src/measures/prepare.ts';
import { HAS_SHARED, SHARED_FIXTURES, SHARED_MISSING } from '../support/knowledge.ts';
import { CONTENT_DEFECTS } from './content-defects.ts';

/**
 * The 301 test cases of the five published QI-Core 2024 eCQMs: every population count (and
 * stratifier count, where the expected report has strata) must equal the expected MeasureReport
 * carried in each test bundle. Run with meta.profile trusted (see docs/measures.md: CMS104's
 * negation profiles need it). The measurement period is the Measure's effectivePeriod, which
 * equals every expected report's period (CMS104: 2026, the others 2025) — asserted below.
 */

const ECQM = path.join(SHARED_FIXTURES, 'population/ecqm-content-qicore-2024');

interface Case {
  readonly measure: string;
  readonly test: string;
  readonly file: string;
}

type Counts = Record<string, number>;

function countsOf(groups: readonly ReportGroup[]): Counts[] {
  return groups.map((g) => {
    const counts: Counts = {};
    for (const p of g.population) counts[populationCodeOf(p) ?? '?'] = p.count;
    for (const s of g.stratifier ?? []) {
      for (const stratum of s.stratum) for (const p of stratum.population) counts[`${s.id}/${stratum.value.text ?? ''}/${populationCodeOf(p) ?? '?'}`] = p.count;
    }
    return counts;
  });
}

/** The expected counts, restricted to what the expected report states (strata only if it has them). */
function expectedCounts(expected: { group: readonly ReportGroup[] }): Counts[] {
  return countsOf(expected.group);
}

function restrictTo(actual: Counts[], expected: Counts[]): Counts[] {
  return actual.map((counts, i) => Object.fromEntries(Object.entries(counts).filter(([key]) => !key.includes('/') || key in (expected[i] ?? {}))));
}

const MEASURES = HAS_SHARED && existsSync(ECQM) ? readdirSync(path.join(ECQM, 'measures')).sort() : [];

describe.skipIf(MEASURES.length === 0)(`eCQM conformance: 5 QI-Core 2024 measures x 301 test cases${MEASURES.length === 0 ? ` — skipped: ${SHARED_MISSING}` : ''}`, () => {
  let model: FhirModel;
  let libraries: MeasureLibrary[];
  const outcomes: { measure: string; test: string; pass: boolean }[] = [];
  let evaluated = 0;
  let elapsedMs = 0;

  beforeAll(async () => {
    model = loadFhirR4Model();
    libraries = await loadLibraries(path.join(ECQM, 'elm'));
    // cql-exec-fhir logs paths it cannot resolve; the published content hits some on purpose.
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
  });

  afterAll(() => {
    vi.restoreAllMocks();
  });

  for (const folder of MEASURES) {
    const cms = folder.split('-')[0] ?? folder;
    it(`${folder}: every population count matches the expected report`, async () => {
      const dir = path.join(ECQM, 'measures', folder);
      const files = readdirSync(dir);
      const measureFile = files.find((f) => f.startsWith('Measure-')) ?? '';
      const valueSets = await loadValueSets(path.join(dir, files.find((f) => f.startsWith('valuesets-')) ?? ''));
      const prepared = prepareMeasure(JSON.parse(readFileSync(path.join(dir, measureFile), 'utf8')) as unknown, libraries, valueSets, model, { file: measureFile });
      const period = measurementPeriod(prepared);
      const cases: Case[] = readdirSync(path.join(dir, 'tests')).sort().map((file) => ({ measure: cms, file, test: file.replace(/^tests-/, '').replace(/-bundle\.json$/, '') }));
      expect(cases.length).toBeGreaterThan(40);
      const mismatches: string[] = [];
      for (const c of cases) {
        const bundle = JSON.parse(readFileSync(path.join(dir, 'tests', c.file), 'utf8')) as { entry: { resource: { resourceType: string; period?: { start: string; end: string }; group?: ReportGroup[] } }[] };
        const expected = bundle.entry.map((e) => e.resource).find((r) => r.resourceType === 'MeasureReport');
        if (expected?.group === undefined || expected.period === undefined) throw new Error(`${c.file} has no expected MeasureReport`);
        expect(period.start.slice(0, 10), `${c.file} period start`).toBe(expected.period.start.slice(0, 10));
        expect(period.end.slice(0, 10), `${c.file} period end`).toBe(expected.period.end.slice(0, 10));
        const started = performance.now();
        const report = await evaluateMeasurePatient(prepared, bundle as unknown as PatientData, { period, patientSource: { requireProfileTagging: true } });
        elapsedMs += performance.now() - started;
        evaluated++;
        const want = expectedCounts({ group: expected.group });
        const got = restrictTo(countsOf(report.group), want);
        const pass = JSON.stringify(got.map((o) => Object.entries(o).sort())) === JSON.stringify(want.map((o) => Object.entries(o).sort()));
        outcomes.push({ measure: cms, test: c.test, pass });
        const known = CONTENT_DEFECTS.some((d) => d.measure === cms && d.test === c.test);
        if (pass && known) mismatches.push(`${c.file}: listed as a content defect but now matches — remove it from CONTENT_DEFECTS`);
        if (!pass && !known) mismatches.push(`${c.file}: want ${JSON.stringify(want)} got ${JSON.stringify(got)}`);
      }
      expect(mismatches).toEqual([]);
    }, 120_000);
  }

  it('lists only content defects that exist, and reports the pass count and speed', () => {
    for (const defect of CONTENT_DEFECTS) {
      expect(outcomes.some((o) => o.measure === defect.measure && o.test === defect.test), `${defect.measure} ${defect.name} is not a test case`).toBe(true);
    }
    const passed = outcomes.filter((o) => o.pass).length;
    console.info(`eCQM conformance: ${passed}/${outcomes.length} test cases match; ${CONTENT_DEFECTS.length} documented content defects; ` +
      `${Math.round((evaluated / elapsedMs) * 1000)} patients/s (evaluation only, one measure per patient)`);
    expect(outcomes).toHaveLength(301);
    expect(passed).toBe(301 - CONTENT_DEFECTS.length);
  });
});
