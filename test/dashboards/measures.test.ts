import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeDirection } from '../../src/dashboards/measures.ts';
import { queryRows } from '../../src/warehouse/database.ts';
import { bearer, NOW, prepareReportWarehouse, startDashboards, type DashboardService, type ReportFixture } from './support.ts';

/**
 * The measure part of the report API over a warehouse prepared by the real ingest and two real
 * batch runs with the demo measures (measures/*.json): tiles, breakdowns, patient lists behind
 * every number, stored MeasureReports, the DEQM gaps Bundle, exports and the access audit.
 */

let fixture: ReportFixture;
let service: DashboardService;

beforeAll(async () => {
  fixture = await prepareReportWarehouse(150);
  service = await startDashboards(fixture);
});
afterAll(async () => {
  await service?.app.close();
  await fixture?.close();
});

type Json = Record<string, unknown>;
type Page = { total: number; patients?: number; items: Json[]; links: { export: Record<string, string> }; run?: { runId: string } };
type Point = { runId: string; numerator: number; denominator: number; rate: number | null };
type Tile = { measureId: string; title: string; improvementNotation: string; latest: Point; previous?: Point; change?: number; direction?: string; trend: Point[] };

async function get<T = Page>(url: string, role: 'quality' | 'informaticist' | 'admin' = 'quality'): Promise<T> {
  const response = await service.app.inject({ url, headers: bearer(role) });
  expect(response.statusCode, `${url}: ${response.body}`).toBe(200);
  return response.json() as T;
}

const CMS122 = 'cairn-cms122-hba1c-poor-control';
const CMS130 = 'cairn-cms130-colorectal-cancer-screening';

describe('changeDirection', () => {
  it.each([
    { name: 'a rising rate of an increase measure is better', input: [2.5, 'increase'] as const, want: 'better' },
    { name: 'a rising rate of an inverse (decrease) measure is worse', input: [2.5, 'decrease'] as const, want: 'worse' },
    { name: 'a falling rate of an inverse measure is better', input: [-1, 'decrease'] as const, want: 'better' },
    { name: 'a falling rate of an increase measure is worse', input: [-1, 'increase'] as const, want: 'worse' },
    { name: 'no change is the same either way', input: [0, 'decrease'] as const, want: 'same' },
  ])('$name', ({ input, want }) => expect(changeDirection(input[0], input[1])).toBe(want));
});

describe('measure API over a real ingest and batch with measures', () => {
  it('serves one tile per measure from the stored summary reports, with trend, change and improvement direction', async () => {
    const body = await get<{ available: boolean; run: { runId: string }; tiles: Tile[] }>('/api/measures', 'informaticist');
    expect(body.available).toBe(true);
    expect(body.tiles.map((t) => t.measureId).sort()).toEqual(fixture.prepared.measures.map((m) => m.definition.id).sort());
    const stored = await queryRows(fixture.warehouse.connection, `SELECT measure, report::VARCHAR AS report FROM batch_measure_report WHERE run_id = $1 AND type = 'summary'`, [fixture.runs[1]!.runId]);
    for (const tile of body.tiles) {
      expect(tile.trend.map((p) => p.runId)).toEqual(fixture.runs.map((r) => r.runId));
      const report = JSON.parse(String(stored.find((r) => String(r.measure).includes(`/${tile.measureId}|`))!.report)) as { group: { population: { code: { coding: { code: string }[] }; count: number }[]; measureScore?: { value: number } }[] };
      const count = (code: string): number => report.group[0]!.population.find((p) => p.code.coding[0]!.code === code)?.count ?? 0;
      expect(tile.latest.numerator).toBe(count('numerator') - count('numerator-exclusion'));
      expect(tile.latest.denominator).toBe(count('denominator') - count('denominator-exclusion') - count('denominator-exception'));
      expect(tile.latest.rate).toBe(report.group[0]!.measureScore?.value ?? null);
      if (tile.change !== undefined) {
        expect(tile.change).toBeCloseTo(((tile.latest.rate ?? 0) - (tile.previous!.rate ?? 0)) * 100, 2);
        expect(tile.direction).toBe(changeDirection(tile.change, tile.improvementNotation as 'increase' | 'decrease'));
      }
    }
    const inverse = body.tiles.find((t) => t.measureId === CMS122)!;
    expect(inverse.improvementNotation).toBe('decrease');
    expect(inverse.title).toMatch(/HbA1c/);
    expect(body.tiles.find((t) => t.measureId === CMS130)!.improvementNotation).toBe('increase');

    const overview = await get<{ measures: { available: boolean; tiles: Tile[] } }>('/api/overview', 'informaticist');
    expect(overview.measures.tiles).toEqual(body.tiles);
  });

  it('serves one measure with its latest summary MeasureReport, and its reports per run', async () => {
    const one = await get<{ id: string; tiles: Tile[]; run: { runId: string }; summary: { resourceType: string; type: string; measure: string } }>(`/api/measures/${CMS122}`, 'informaticist');
    expect(one.run.runId).toBe(fixture.runs[1]!.runId);
    expect(one.summary).toMatchObject({ resourceType: 'MeasureReport', type: 'summary' });
    expect(one.summary.measure).toContain(`/Measure/${CMS122}`);
    const reports = await get<{ reports: { run: { runId: string }; report: { type: string } }[] }>(`/api/measures/${CMS122}/reports`, 'informaticist');
    expect(reports.reports.map((r) => r.run.runId)).toEqual([fixture.runs[1]!.runId, fixture.runs[0]!.runId]);
    const first = await get<{ reports: { run: { runId: string } }[] }>(`/api/measures/${CMS122}/reports?run=${fixture.runs[0]!.runId}`, 'informaticist');
    expect(first.reports.map((r) => r.run.runId)).toEqual([fixture.runs[0]!.runId]);
    expect((await service.app.inject({ url: '/api/measures/no-such-measure', headers: bearer('informaticist') })).statusCode).toBe(404);
    expect((await service.app.inject({ url: '/api/measures/bad%20id', headers: bearer('informaticist') })).statusCode).toBe(400);
  });

  it('breaks a measure down by stratum from the summary stratifiers, and by practitioner and organization from individual reports', async () => {
    const strata = await get(`/api/measures/${CMS130}/breakdown?by=stratum`, 'informaticist');
    expect(strata.items.map((s) => s.stratifier_id).sort()).toEqual(['age-46-49', 'age-50-75']);
    const [summary] = (await get<{ reports: { report: { group: { stratifier: { id: string; stratum: { population: { code: { coding: { code: string }[] }; count: number }[] }[] }[] }[] } }[] }>(`/api/measures/${CMS130}/reports?run=latest`, 'informaticist')).reports;
    for (const item of strata.items) {
      const stratum = summary!.report.group[0]!.stratifier.find((s) => s.id === item.stratifier_id)!.stratum[0]!;
      expect(item.numerator).toBe(stratum.population.find((p) => p.code.coding[0]!.code === 'numerator')!.count);
    }
    const tile = (await get<{ tiles: Tile[] }>('/api/measures', 'informaticist')).tiles.find((t) => t.measureId === CMS130)!;
    for (const by of ['practitioner', 'organization', 'location']) {
      const page = await get(`/api/measures/${CMS130}/breakdown?by=${by}`, 'informaticist');
      expect(page.items.length, by).toBeGreaterThan(0);
      // Every patient is attributed once (or to `none`), so the bars add up to the measure.
      expect(page.items.reduce((n, i) => n + Number(i.numerator), 0), by).toBe(tile.latest.numerator);
      expect(page.items.reduce((n, i) => n + Number(i.denominator), 0), by).toBe(tile.latest.denominator);
      for (const i of page.items) if (Number(i.denominator) > 0) expect(i.score).toBeCloseTo(Number(i.numerator) / Number(i.denominator), 6);
    }
  });

  it('lists the patients behind every bar: the drill-down count equals the bar\'s count', async () => {
    const strata = await get(`/api/measures/${CMS130}/breakdown?by=stratum`, 'informaticist');
    for (const bar of strata.items) {
      for (const population of ['denominator', 'numerator'] as const) {
        const list = await get(`/api/measures/${CMS130}/patients?population=${population}&stratifier=${String(bar.stratifier_id)}&stratum=${String(bar.key)}&limit=1000`);
        expect(list.total, `${String(bar.stratifier_id)} ${population}`).toBe(bar[population]);
        expect(list.patients).toBe(list.total);
      }
    }
    const practitioners = await get(`/api/measures/${CMS122}/breakdown?by=practitioner`, 'informaticist');
    for (const bar of practitioners.items) {
      const list = await get(`/api/measures/${CMS122}/patients?population=denominator&practitioner=${String(bar.key)}&limit=1000`);
      expect(list.total, String(bar.label)).toBe(bar.denominator);
      expect(list.items.every((p) => (bar.key === 'none' ? p.practitioner_id === null : p.practitioner_id === bar.key))).toBe(true);
    }
    // The whole numerator is the subject-list report's numerator List.
    const numerator = await get(`/api/measures/${CMS122}/patients?population=numerator&limit=1000`);
    const subjectList = await get<{ reports: { report: { contained: { id: string; entry: { item: { reference: string } }[] }[]; group: { population: { code: { coding: { code: string }[] }; subjectResults: { reference: string } }[] }[] } }[] }>(`/api/measures/${CMS122}/reports?type=subject-list&run=latest`);
    const report = subjectList.reports[0]!.report;
    const ref = report.group[0]!.population.find((p) => p.code.coding[0]!.code === 'numerator')!.subjectResults.reference.slice(1);
    const members = report.contained.find((r) => r.id === ref)!.entry.map((e) => e.item.reference.replace('Patient/', '')).sort();
    expect(numerator.items.map((p) => p.patient_id).sort()).toEqual(members);

    const bad = await service.app.inject({ url: `/api/measures/${CMS130}/patients?stratifier=age-50-75`, headers: bearer('quality') });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'INPUT_INVALID', field: 'stratum' });
  });

  it('exports breakdowns and patient lists as CSV and Arrow that agree with the JSON', async () => {
    const list = await get(`/api/measures/${CMS130}/patients?population=numerator&limit=1000`);
    const csv = await service.app.inject({ url: list.links.export.csv, headers: bearer('quality') });
    expect(csv.statusCode).toBe(200);
    expect(csv.headers['content-disposition']).toMatch(new RegExp(`measures-${CMS130}-patients-run-.*\\.csv`));
    const lines = csv.body.trim().split('\n');
    expect(lines[0]).toMatch(/^run_id,measure_id,group_id,report_id,patient_id,/);
    expect(lines.length - 1).toBe(list.total);
    const breakdown = await get(`/api/measures/${CMS130}/breakdown?by=practitioner`, 'informaticist');
    const arrow = await service.app.inject({ url: breakdown.links.export.arrow, headers: bearer('informaticist') });
    const table = tableFromIPC(arrow.rawPayload);
    expect(table.numRows).toBe(breakdown.total);
    expect(table.getChild('numerator')!.toArray()).toEqual(Int32Array.from(breakdown.items.map((i) => Number(i.numerator))));
  });

  it('answers a DEQM gaps-in-care Bundle of DetectedIssues with the MeasureReports and Patients they reference', async () => {
    const gaps = await queryRows(fixture.warehouse.connection, `SELECT patient_id, count(*)::INTEGER AS n FROM batch_care_gap WHERE run_id = $1 AND rule_id LIKE 'measure:%' GROUP BY patient_id ORDER BY n DESC, patient_id LIMIT 1`, [fixture.runs[1]!.runId]);
    const patient = String(gaps[0]!.patient_id);
    const response = await service.app.inject({ url: `/api/care-gaps/deqm?patient=${patient}`, headers: bearer('quality') });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/application\/fhir\+json/);
    const bundle = response.json() as { resourceType: string; type: string; entry: { fullUrl: string; resource: Json & { resourceType: string; id: string } }[] };
    expect(bundle).toMatchObject({ resourceType: 'Bundle', type: 'collection' });
    const issues = bundle.entry.filter((e) => e.resource.resourceType === 'DetectedIssue');
    expect(issues.length).toBe(gaps[0]!.n);
    const urls = new Set(bundle.entry.map((e) => e.fullUrl));
    expect(urls.size).toBe(bundle.entry.length);
    for (const issue of issues) {
      const resource = issue.resource as unknown as { patient: { reference: string }; evidence: { detail: { reference: string }[] }[] };
      // Every reference resolves inside the Bundle (fullUrl = base + relative reference).
      for (const reference of [resource.patient.reference, resource.evidence[0]!.detail[0]!.reference]) {
        expect([...urls].some((u) => u.endsWith(`/${reference}`)), reference).toBe(true);
      }
    }
    expect(bundle.entry.some((e) => e.resource.resourceType === 'MeasureReport' && e.resource.type === 'individual')).toBe(true);

    const byMeasure = await service.app.inject({ url: `/api/care-gaps/deqm?measure=${CMS130}&limit=5`, headers: bearer('quality') });
    const stored = await queryRows(fixture.warehouse.connection, `SELECT count(*)::INTEGER AS n FROM batch_care_gap WHERE run_id = $1 AND rule_id = $2`, [fixture.runs[1]!.runId, `measure:${CMS130}`]);
    expect(byMeasure.headers['x-total-count']).toBe(String(stored[0]!.n));
    const page = byMeasure.json() as { entry: { resource: { resourceType: string } }[]; link: { relation: string }[] };
    expect(page.entry.filter((e) => e.resource.resourceType === 'DetectedIssue').length).toBe(Math.min(5, Number(stored[0]!.n)));
    if (Number(stored[0]!.n) > 5) expect(page.link.map((l) => l.relation)).toContain('next');
    expect((await service.app.inject({ url: '/api/care-gaps/deqm', headers: bearer('quality') })).statusCode).toBe(400);
  });
});

describe('measure access', () => {
  it('keeps patient-level measure data from informaticists and audits every patient-level access', async () => {
    for (const url of [`/api/measures/${CMS122}/patients`, `/api/measures/${CMS122}/patients/export?format=csv`, `/api/measures/${CMS122}/reports?type=subject-list`, `/api/care-gaps/deqm?measure=${CMS122}`]) {
      expect((await service.app.inject({ url, headers: bearer('informaticist') })).statusCode, url).toBe(403);
    }
    const before = (await get('/api/audit?limit=1000', 'admin')).total;
    const list = await get(`/api/measures/${CMS122}/patients?population=numerator&limit=1000`, 'quality');
    await service.app.inject({ url: `/api/measures/${CMS122}/patients/export?format=parquet&population=numerator`, headers: bearer('quality') });
    await service.app.inject({ url: `/api/care-gaps/deqm?measure=${CMS122}`, headers: bearer('quality') });
    await service.app.inject({ url: `/api/measures/${CMS122}/reports?type=subject-list&run=latest`, headers: bearer('quality') });
    await get(`/api/measures/${CMS122}/breakdown?by=practitioner`, 'quality'); // aggregate: not audited
    const after = await get('/api/audit?limit=1000', 'admin');
    expect(after.total).toBe(before + 4);
    const [subjects, deqm, exported, listed] = after.items;
    expect(listed).toMatchObject({ user_name: 'qm.alice', role: 'quality', action: 'list', resource: `measures/${CMS122}/patients`, rows: list.total, patients: list.patients, accessed_at: NOW.toISOString() });
    expect(JSON.parse(String(listed!.query))).toMatchObject({ id: CMS122, population: 'numerator' });
    expect(exported).toMatchObject({ action: 'export.parquet', resource: `measures/${CMS122}/patients`, rows: list.total });
    expect(deqm).toMatchObject({ action: 'list', resource: 'care-gaps/deqm' });
    expect(subjects).toMatchObject({ action: 'list', resource: `measures/${CMS122}/reports` });
    expect(Number(subjects!.patients)).toBeGreaterThan(0);
  });

  it('documents the measure endpoints in the OpenAPI document', async () => {
    const doc = (await service.app.inject({ url: '/api/openapi.json' })).json() as { paths: Record<string, { get?: { parameters?: { name: string; in: string }[] } }> };
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining([
      '/api/measures', '/api/measures/{id}', '/api/measures/{id}/reports', '/api/measures/{id}/breakdown', '/api/measures/{id}/breakdown/export',
      '/api/measures/{id}/patients', '/api/measures/{id}/patients/export', '/api/measures/summaries', '/api/care-gaps/deqm',
    ]));
    expect(doc.paths['/api/measures/{id}/patients']!.get!.parameters!).toEqual(expect.arrayContaining([
      expect.objectContaining({ name: 'id', in: 'path' }), expect.objectContaining({ name: 'population', in: 'query' }), expect.objectContaining({ name: 'stratum', in: 'query' }),
    ]));
  });
});
