import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadLibraries, loadValueSets } from '../../src/cli/measure.ts';
import { loadFhirR4Model } from '../../src/cql-engine/fhir-model.ts';
import type { PatientData } from '../../src/cql-engine/patient-source.ts';
import { evaluateMeasurePatient, measurePatient, measurementPeriod } from '../../src/measures/evaluate.ts';
import type { MeasurementPeriod } from '../../src/measures/period.ts';
import { prepareMeasure, type PreparedMeasure } from '../../src/measures/prepare.ts';
import { HAS_SHARED, SHARED_FIXTURES, SHARED_MISSING } from '../support/knowledge.ts';

/**
 * A batch evaluates every measure of a patient through one MeasurePatient: the measures share
 * their included libraries' results (per period), and SupplementalDataElements & co. across
 * periods. Whatever is shared, each report must be byte-identical to the measure evaluated alone.
 */

const ECQM = path.join(SHARED_FIXTURES, 'population/ecqm-content-qicore-2024');
const FOLDERS = HAS_SHARED && existsSync(ECQM) ? readdirSync(path.join(ECQM, 'measures')).sort() : [];

describe.skipIf(FOLDERS.length === 0)(`measures sharing one patient's sessions${FOLDERS.length === 0 ? ` — skipped: ${SHARED_MISSING}` : ''}`, () => {
  const model = loadFhirR4Model();
  let measures: { prepared: PreparedMeasure; period: MeasurementPeriod }[];
  let bundles: PatientData[];

  beforeAll(async () => {
    const libraries = await loadLibraries(path.join(ECQM, 'elm'));
    measures = [];
    bundles = [];
    for (const folder of FOLDERS) {
      const dir = path.join(ECQM, 'measures', folder);
      const files = readdirSync(dir);
      const measureFile = files.find((f) => f.startsWith('Measure-')) ?? '';
      const valueSets = await loadValueSets(path.join(dir, files.find((f) => f.startsWith('valuesets-')) ?? ''));
      const prepared = prepareMeasure(JSON.parse(readFileSync(path.join(dir, measureFile), 'utf8')) as unknown, libraries, valueSets, model, { file: measureFile });
      measures.push({ prepared, period: measurementPeriod(prepared) });
      // A few test patients of each measure: each then goes through all five measures.
      for (const file of readdirSync(path.join(dir, 'tests')).sort().slice(0, 12)) bundles.push(JSON.parse(readFileSync(path.join(dir, 'tests', file), 'utf8')) as PatientData);
    }
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
  });

  afterAll(() => {
    vi.restoreAllMocks();
  });

  it('gives every measure the report it gives alone, for periods 2025 and 2026 alike', async () => {
    expect(new Set(measures.map((m) => m.period.start)).size).toBe(2);
    for (const bundle of bundles) {
      const patient = measurePatient(model, bundle, { requireProfileTagging: true });
      for (const { prepared, period } of measures) {
        const shared = await evaluateMeasurePatient(prepared, patient, { period });
        const alone = await evaluateMeasurePatient(prepared, bundle, { period, patientSource: { requireProfileTagging: true } });
        expect(JSON.stringify(shared)).toBe(JSON.stringify(alone));
      }
    }
  });
});
