import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { allCodes, SYSTEMS } from '../../src/synthetic/codes.ts';
import { generatePopulation } from '../../src/synthetic/generate.ts';
import { ingestPaths } from '../../src/warehouse/ingest.ts';
import { NOW, rows, sharedFixture, tempDir, tempWarehouse } from './helpers.ts';

async function digest(dir: string): Promise<string> {
  const hash = createHash('sha256');
  for (const name of (await readdir(dir)).sort()) hash.update(name).update(await readFile(join(dir, name)));
  return hash.digest('hex');
}

describe('synthetic population', () => {
  it('is deterministic per seed and differs across seeds', async () => {
    const [a, b, c] = [await tempDir(), await tempDir(), await tempDir()];
    await generatePopulation({ patients: 200, seed: 11, outDir: a });
    await generatePopulation({ patients: 200, seed: 11, outDir: b });
    await generatePopulation({ patients: 200, seed: 12, outDir: c });
    expect(await digest(a)).toBe(await digest(b));
    expect(await digest(a)).not.toBe(await digest(c));
  });

  it('writes the same bytes whatever the number of worker threads', async () => {
    const [inline, threaded] = [await tempDir(), await tempDir()];
    await generatePopulation({ patients: 700, seed: 5, outDir: inline, workers: 0 });
    await generatePopulation({ patients: 700, seed: 5, outDir: threaded, workers: 2 });
    expect(await digest(threaded)).toBe(await digest(inline));
  }, 60_000);

  it('exercises every rule and measure with both hits and misses', async () => {
    const dir = await tempDir();
    await generatePopulation({ patients: 3000, seed: 1, outDir: dir });
    const warehouse = await tempWarehouse();
    const counts = await ingestPaths(warehouse, [dir], { now: NOW });
    expect(counts.quarantined).toBe(0);
    const [facts] = await rows(warehouse, `
      WITH med AS (SELECT patient_id, code FROM medication_request WHERE status = 'active'),
      adults AS (SELECT id FROM patient WHERE birth_date <= DATE '2007-01-01')
      SELECT
        (SELECT count(DISTINCT o.patient_id) FROM med o JOIN med b USING (patient_id) WHERE o.code IN ('1049621','856999','835603') AND b.code IN ('308047','197901','197591'))::INT AS opioid_benzo,
        (SELECT count(DISTINCT patient_id) FROM med WHERE code IN ('1049621','856999','835603'))::INT AS opioid,
        (SELECT count(DISTINCT n.patient_id) FROM med n JOIN observation e USING (patient_id) WHERE n.code IN ('197806','198013') AND e.code IN ('33914-3','62238-1','98979-8') AND e.value_number < 30)::INT AS nsaid_low_egfr,
        (SELECT count(DISTINCT n.patient_id) FROM med n JOIN med a USING (patient_id) WHERE n.code IN ('197806','198013') AND a.code IN ('855332','1364435','1114198'))::INT AS nsaid_anticoag,
        (SELECT count(DISTINCT patient_id) FROM observation WHERE code IN ('4548-4','17856-6') AND value_number > 9 AND status = 'final')::INT AS a1c_over_9,
        (SELECT count(DISTINCT patient_id) FROM observation WHERE code IN ('4548-4','17856-6') AND value_number <= 9)::INT AS a1c_under_9,
        (SELECT count(*) FROM observation WHERE code = '85354-9')::INT AS bp,
        (SELECT count(DISTINCT patient_id) FROM observation WHERE code IN ('24606-6','24604-1'))::INT AS mammogram,
        (SELECT count(DISTINCT patient_id) FROM procedure WHERE code IN ('45378','73761001'))::INT AS colonoscopy,
        (SELECT count(DISTINCT patient_id) FROM observation WHERE code IN ('29771-3','57905-2','77353-1','60515-4'))::INT AS stool_or_ct,
        (SELECT count(*) FROM encounter WHERE code IN ('183919006','385765002'))::INT AS hospice,
        (SELECT count(DISTINCT patient_id) FROM condition WHERE code = 'Z51.5')::INT + (SELECT count(*) FROM encounter WHERE code IN ('305686008','M1017'))::INT AS palliative,
        (SELECT count(*) FROM patient WHERE deceased)::INT AS deceased,
        (SELECT count(*) FROM patient WHERE status = 'inactive')::INT AS inactive,
        (SELECT count(*) FROM condition WHERE status = 'entered-in-error')::INT AS condition_error,
        (SELECT count(*) FROM encounter WHERE code = '99213' AND effective_start >= TIMESTAMP '2025-01-01')::INT AS office_2025,
        (SELECT count(*) FROM encounter e JOIN condition d ON 'Condition/' || d.id = (e.resource->>'$.diagnosis[0].condition.reference') WHERE d.code LIKE 'I63%' AND (e.resource->>'$.diagnosis[0].rank') = '1')::INT AS ischemic_stroke_stays,
        (SELECT count(*) FROM encounter WHERE (resource->>'$.hospitalization.dischargeDisposition.coding[0].code') = '371828006')::INT AS died_in_hospital,
        (SELECT count(*) FROM medication_request WHERE (resource->>'$.category[0].coding[0].code') = 'discharge' AND (resource->>'$.doNotPerform') IS NULL)::INT AS discharge_prescriptions,
        (SELECT count(*) FROM medication_request WHERE (resource->>'$.doNotPerform') = 'true' AND (resource->>'$.reasonCode[0].coding[0].code') IS NOT NULL)::INT AS not_prescribed_with_reason,
        (SELECT count(*) FROM adults)::INT AS adults,
        (SELECT count(*) FROM patient)::INT AS patients`);
    const f = facts as Record<'opioid' | 'opioid_benzo' | 'a1c_over_9' | 'a1c_under_9' | 'adults' | 'patients', number> & Record<string, number>;
    for (const key of Object.keys(f)) expect(f[key], key).toBeGreaterThan(0);
    expect(f.opioid_benzo).toBeLessThan(f.opioid);
    expect(f.a1c_under_9).toBeGreaterThan(f.a1c_over_9);
    expect(f.adults / f.patients).toBeGreaterThan(0.7);
    expect(f.adults / f.patients).toBeLessThan(0.9);
  }, 120_000);

  const measures = sharedFixture('ecqm-content-qicore-2024/measures');
  it.skipIf(measures.skip)(`uses eCQM value-set codes for the measure groups ${measures.skip || ''}`, async () => {
    const known = new Set<string>();
    for (const dir of await readdir(measures.path)) {
      for (const name of (await readdir(join(measures.path, dir))).filter((n) => n.startsWith('valuesets-'))) {
        const bundle = JSON.parse(await readFile(join(measures.path, dir, name), 'utf8')) as { entry: { resource: { expansion?: { contains?: { system: string; code: string }[] } } }[] };
        for (const e of bundle.entry) for (const c of e.resource.expansion?.contains ?? []) known.add(`${c.system}|${c.code}`);
      }
    }
    // Groups that feed CMS104/122/125/130/165 and the Hospice/PalliativeCare exclusions must all be in a value set
    // (not STROKE.hemorrhagic and STROKE.dischargedAlive: those are there to be missed).
    const measureGroups = /^(ENCOUNTERS\.(office|preventive|wellness|telephone|hospice|palliative|inpatient)|LABS\.(hba1c|fobt|fitDna|ctColonography|mammogram)|PROCEDURES\.(colonoscopy|hospice|palliative)|CONDITIONS\.(diabetes|hospice|palliative|colonCancer|bilateralMastectomy)|STROKE\.(?!hemorrhagic$|dischargedAlive$)\w+)$/;
    const missing = allCodes()
      .filter(({ group }) => measureGroups.test(group))
      .filter(({ code }) => !known.has(`${SYSTEMS[code.system]}|${code.code}`))
      .map(({ group, code }) => `${group} ${code.code}`);
    expect(missing).toEqual([]);
  });
});
