import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/warehouse/database.ts';
import { bearer, NOW, prepareReportWarehouse, startDashboards, type DashboardService, type ReportFixture } from './support.ts';

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

type Page = { total: number; patients?: number; items: Record<string, unknown>[]; links: Record<string, unknown>; run?: { runId: string } };

async function get(url: string, role: 'quality' | 'informaticist' | 'admin' = 'admin'): Promise<Page> {
  const response = await service.app.inject({ url, headers: bearer(role) });
  expect(response.statusCode, `${url}: ${response.body}`).toBe(200);
  return response.json() as Page;
}

describe('report API over a real ingest and batch', () => {
  it('lists runs newest first with status, duration and the counts the batch published', async () => {
    const page = await get('/api/runs');
    const [second, first] = fixture.runs.slice().reverse();
    expect(page.items.map((r) => [r.run_id, r.status, r.patients, r.alerts, r.care_gaps, r.errors])).toEqual([
      [second!.runId, 'published', second!.patients, second!.alerts, second!.careGaps, second!.errors],
      [first!.runId, 'published', first!.patients, first!.alerts, first!.careGaps, first!.errors],
    ]);
    expect(page.items[0]!.duration_ms).toBe(Date.parse(second!.finishedAt) - Date.parse(second!.startedAt));
  });

  it('serves the latest run\'s care gaps, the same rows as batch_care_gap, with stable server-side paging', async () => {
    const latest = fixture.runs[1]!;
    const all = await get('/api/care-gaps?limit=1000');
    expect(all.run?.runId).toBe(latest.runId);
    expect(all.total).toBe(latest.careGaps);
    const stored = await queryRows(fixture.warehouse.connection, `SELECT id FROM batch_care_gap WHERE run_id = $1 ORDER BY id`, [latest.runId]);
    expect(all.items.map((g) => g.gap_id).sort()).toEqual(stored.map((r) => r.id));
    const dueDates = all.items.map((g) => String(g.due_date));
    expect(dueDates).toEqual([...dueDates].sort());

    const pages: unknown[] = [];
    for (let offset = 0; offset < all.total; offset += 7) pages.push(...(await get(`/api/care-gaps?limit=7&offset=${offset}`)).items.map((g) => g.gap_id));
    expect(pages).toEqual(all.items.map((g) => g.gap_id));
    const first = await get('/api/care-gaps?limit=7');
    expect(first.links.next).toBe('/api/care-gaps?limit=7&offset=7');
  });

  it('filters care gaps by rule, practitioner, due date and age, and sorts', async () => {
    const all = (await get('/api/care-gaps?limit=1000')).items;
    const rule = String(all[0]!.rule_id);
    expect((await get(`/api/care-gaps?rule=${rule}&limit=1000`)).items.every((g) => g.rule_id === rule)).toBe(true);
    expect((await get(`/api/care-gaps?rule=${rule}&limit=1000`)).total).toBe(all.filter((g) => g.rule_id === rule).length);

    const practitioner = String(all.find((g) => g.practitioner_id)!.practitioner_id);
    const byPractitioner = await get(`/api/care-gaps?practitioner=${practitioner}&limit=1000`);
    expect(byPractitioner.total).toBe(all.filter((g) => g.practitioner_id === practitioner).length);

    const due = [...new Set(all.map((g) => String(g.due_date)))].sort();
    const from = due[Math.floor(due.length / 3)]!;
    const to = due[Math.floor((2 * due.length) / 3)]!;
    const inRange = await get(`/api/care-gaps?dueFrom=${from}&dueTo=${to}&limit=1000`);
    expect(inRange.total).toBe(all.filter((g) => String(g.due_date) >= from && String(g.due_date) <= to).length);

    const aged = await get('/api/care-gaps?ageMin=50&ageMax=64&limit=1000');
    expect(aged.total).toBe(all.filter((g) => Number(g.age) >= 50 && Number(g.age) <= 64).length);
    expect(aged.items.every((g) => Number(g.age) >= 50 && Number(g.age) <= 64)).toBe(true);

    const byAge = (await get('/api/care-gaps?sort=age&order=desc&limit=1000')).items.map((g) => Number(g.age ?? -1));
    expect(byAge).toEqual([...byAge].sort((a, b) => b - a));

    const bad = await service.app.inject({ url: '/api/care-gaps?dueFrom=yesterday', headers: bearer('admin') });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'INPUT_INVALID', field: 'dueFrom' });
  });

  it('attributes patients to Patient.generalPractitioner, else the most recent encounter\'s practitioner', async () => {
    const gaps = (await get('/api/care-gaps?limit=1000')).items;
    const gap = gaps.find((g) => g.practitioner_id)!;
    const expected = await queryRows(fixture.warehouse.connection, `
      SELECT split_part(json_extract_string(resource, '$.participant[0].individual.reference'), '/', 2) AS p FROM encounter
      WHERE patient_id = $1 ORDER BY effective_start DESC, id LIMIT 1`, [String(gap.patient_id)]);
    expect(gap.practitioner_id).toBe(expected[0]!.p);
    expect(gap.attribution).toBe('last-encounter');
    expect(String(gap.practitioner_name)).toMatch(/^Dr\. /);
  });

  it('summarises rule statistics from cards, feedback and batch results', async () => {
    const stats = await get('/api/rules/stats?from=2026-02-01&to=2026-03-02');
    const cards = await queryRows(fixture.warehouse.connection, `SELECT rule_id, count(*)::INTEGER AS n FROM cds_card GROUP BY rule_id`);
    for (const row of cards) {
      const item = stats.items.find((s) => s.rule_id === row.rule_id)!;
      expect(item.cards_shown).toBe(row.n);
      expect(Number(item.accepted) + Number(item.overridden)).toBe(item.cards_with_feedback);
      expect(item.acceptance_rate).toBeCloseTo(Number(item.accepted) / Number(row.n), 3);
    }
    expect(stats.items.reduce((n, s) => n + Number(s.cards_shown), 0)).toBe(fixture.cards);
    expect(stats.items.reduce((n, s) => n + Number(s.care_gaps_latest_run), 0)).toBe(fixture.runs[1]!.careGaps);

    const daily = await get('/api/rules/daily?from=2026-02-01&to=2026-03-02&limit=1000');
    expect(daily.items.reduce((n, d) => n + Number(d.cards_shown), 0)).toBe(fixture.cards);
    const day2 = daily.items.filter((d) => d.day === '2026-03-02').reduce((n, d) => n + Number(d.care_gaps), 0);
    expect(day2).toBe(fixture.runs[1]!.careGaps);

    const reasons = await get('/api/rules/override-reasons?from=2026-02-01&to=2026-03-02');
    expect(reasons.items.reduce((n, r) => n + Number(r.count), 0)).toBe(stats.items.reduce((n, s) => n + Number(s.overridden), 0));
    expect(reasons.items.map((r) => r.override_code)).toEqual(expect.arrayContaining(['snooze-30d', 'not-relevant']));
  });

  it('builds overview tiles with latest count and rate, change against the previous run and a trend', async () => {
    const response = await service.app.inject({ url: '/api/overview', headers: bearer('informaticist') });
    const body = response.json() as { tiles: { ruleId: string; kind: string; latest: { count: number; rate: number }; change?: number; direction?: string; trend: unknown[] }[]; measures: { available: boolean } };
    const total = body.tiles.filter((t) => t.kind === 'care-gap').reduce((n, t) => n + t.latest.count, 0);
    expect(total).toBe(fixture.runs[1]!.careGaps);
    expect(body.tiles.every((t) => t.trend.length === 2 && t.change !== undefined && ['better', 'worse', 'same'].includes(t.direction!))).toBe(true);
    expect(body.measures.available).toBe(true);
  });

  it('serves an OpenAPI document generated from the query schemas, and a page rendering it', async () => {
    const doc = (await service.app.inject({ url: '/api/openapi.json' })).json() as { openapi: string; paths: Record<string, { get?: { parameters?: { name: string }[] } }> };
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.paths['/api/care-gaps']!.get!.parameters!.map((p) => p.name)).toEqual(expect.arrayContaining(['rule', 'practitioner', 'dueFrom', 'dueTo', 'ageMin', 'ageMax', 'sort', 'limit', 'offset']));
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/api/care-gaps/export', '/api/runs', '/api/rules/stats', '/api/measures']));
    const page = await service.app.inject({ url: '/api/docs' });
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).toContain('GET /api/care-gaps');
  });
});

describe('access', () => {
  it('needs a signed-in user for every report route', async () => {
    for (const url of ['/api/runs', '/api/care-gaps', '/api/overview', '/api/care-gaps/export?format=csv']) {
      const response = await service.app.inject({ url });
      expect(response.statusCode, url).toBe(401);
      expect(response.headers['content-type']).toMatch(/application\/problem\+json/);
    }
    expect((await service.app.inject({ url: '/api/runs', headers: { authorization: 'Bearer wrong' } })).statusCode).toBe(401);
  });

  it('keeps patient-level lists from informaticists, who still see aggregates', async () => {
    for (const url of ['/api/care-gaps', '/api/alerts', '/api/runs/errors', '/api/care-gaps/export?format=csv']) {
      expect((await service.app.inject({ url, headers: bearer('informaticist') })).statusCode, url).toBe(403);
    }
    await get('/api/rules/stats', 'informaticist');
    await get('/api/runs', 'informaticist');
    expect((await service.app.inject({ url: '/api/audit', headers: bearer('quality') })).statusCode).toBe(403);
  });

  it('accepts a JWT from the trusted issuer, mapping its roles, and refuses others', async () => {
    const quality = await service.oidcToken({ preferred_username: 'dr.oidc', realm_access: { roles: ['cairn-quality', 'offline_access'] } });
    const me = await service.app.inject({ url: '/api/me', headers: { authorization: `Bearer ${quality}` } });
    expect(me.json()).toMatchObject({ name: 'dr.oidc', role: 'quality', via: 'oidc', patientLevel: true });
    const informatics = await service.oidcToken({ realm_access: { roles: ['cairn-informatics'] } });
    expect((await service.app.inject({ url: '/api/care-gaps', headers: { authorization: `Bearer ${informatics}` } })).statusCode).toBe(403);
    const noRole = await service.oidcToken({ realm_access: { roles: ['other'] } });
    expect((await service.app.inject({ url: '/api/me', headers: { authorization: `Bearer ${noRole}` } })).statusCode).toBe(401);
    const wrongAudience = await service.oidcToken({ realm_access: { roles: ['cairn-quality'] } }, { audience: 'someone-else' });
    expect((await service.app.inject({ url: '/api/me', headers: { authorization: `Bearer ${wrongAudience}` } })).statusCode).toBe(401);
  });

  it('signs in with a cookie that export links can use', async () => {
    const login = await service.app.inject({ method: 'POST', url: '/api/session', payload: { token: 'quality-key-0123456789' } });
    expect(login.statusCode).toBe(200);
    const cookie = String(login.headers['set-cookie']);
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    const viaCookie = await service.app.inject({ url: '/api/care-gaps/export?format=csv', headers: { cookie: cookie.split(';')[0]! } });
    expect(viaCookie.statusCode).toBe(200);
    expect((await service.app.inject({ method: 'POST', url: '/api/session', payload: { token: 'nope' } })).statusCode).toBe(401);
  });

  it('audits every patient-level access: who, when, what and how many patients', async () => {
    const before = await get('/api/audit?limit=1000');
    const page = await get('/api/care-gaps?limit=5&rule=colorectal-cancer-screening-overdue', 'quality');
    await service.app.inject({ url: '/api/alerts/export?format=arrow', headers: bearer('quality') });
    await get('/api/runs', 'quality'); // aggregate: not audited
    const after = await get('/api/audit?limit=1000');
    expect(after.total).toBe(before.total + 2);
    const [exported, listed] = after.items;
    expect(listed).toMatchObject({ user_name: 'qm.alice', role: 'quality', action: 'list', resource: 'care-gaps', rows: page.items.length, patients: new Set(page.items.map((g) => g.patient_id)).size, accessed_at: NOW.toISOString() });
    expect(JSON.parse(String(listed!.query))).toMatchObject({ rule: ['colorectal-cancer-screening-overdue'], limit: 5 });
    expect(exported).toMatchObject({ user_name: 'qm.alice', action: 'export.arrow', resource: 'alerts', rows: fixture.runs[1]!.alerts });
  });

  it('serves the web page and Chart.js without sign-in, with a strict content security policy', async () => {
    const page = await service.app.inject({ url: '/dashboards/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-security-policy']).toMatch(/script-src 'self'/);
    expect(page.body).toContain('/dashboards/vendor/chart.umd.min.js');
    const chart = await service.app.inject({ url: '/dashboards/vendor/chart.umd.min.js' });
    expect(chart.statusCode).toBe(200);
    expect(chart.body).toContain('Chart');
  });
});
