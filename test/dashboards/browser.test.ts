/**
 * The dashboards in a real browser: Debian's chromium driven by playwright-core against the app
 * listening on 127.0.0.1. Screenshots go to test-results/screenshots/ (kept as CI artifacts).
 * Skipped, with the reason, when /usr/bin/chromium is absent (.ci/run installs it).
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../support/knowledge.ts';
import { KEYS, prepareReportWarehouse, startDashboards, type DashboardService, type ReportFixture } from './support.ts';

const CHROMIUM = '/usr/bin/chromium';
const SKIP = existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent (install Debian's chromium: apt-get install -y chromium); the browser test is skipped`;
const SHOTS = path.join(PROJECT_ROOT, 'test-results/screenshots');
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

if (SKIP) console.warn(`SKIPPED: ${SKIP}`);

describe.skipIf(SKIP)('dashboards in chromium', () => {
  let fixture: ReportFixture;
  let service: DashboardService;
  let browser: Browser;
  let page: Page;
  let base: string;
  const outside: string[] = [];

  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true });
    fixture = await prepareReportWarehouse(150);
    service = await startDashboards(fixture);
    await service.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, acceptDownloads: true });
    // Loopback only: anything else is refused and recorded.
    await context.route('**/*', (route) => {
      const host = new URL(route.request().url()).hostname;
      if (host === '127.0.0.1' || host === 'localhost') return route.continue();
      outside.push(route.request().url());
      return route.abort();
    });
    page = await context.newPage();
  });
  afterAll(async () => {
    await browser?.close();
    await service?.app.close();
    await fixture?.close();
  });

  it('signs in, shows the overview, drills into the worklist, filters, pages, exports a CSV', async () => {
    await page.goto(`${base}/dashboards/`);
    await page.getByLabel('API key or access token').fill(KEYS.quality);
    await page.screenshot({ path: path.join(SHOTS, '01-sign-in.png') });
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('article.tile').first().waitFor();

    // Overview load, measured from a fresh navigation with the session cookie set (from another
    // document: a hash-only change would race the previous render).
    await page.goto('about:blank');
    const t0 = Date.now();
    await page.goto(`${base}/dashboards/#/overview`);
    await page.locator('article.tile canvas').first().waitFor();
    await page.waitForFunction(`document.querySelectorAll('article.tile').length > 1`);
    const overviewMs = Date.now() - t0;
    console.log(`browser: overview loaded in ${overviewMs} ms`);
    expect(overviewMs).toBeLessThan(5_000);
    await expect.poll(() => page.locator('article.tile').count()).toBeGreaterThan(3);
    await page.screenshot({ path: path.join(SHOTS, '02-overview.png'), fullPage: true });
    expect(await page.locator('article.tile .change').first().textContent()).toMatch(/vs previous run|no previous run/);

    // Keyboard: after a page renders, focus is on the content, so Tab reaches the first tile's link.
    await page.keyboard.press('Tab');
    expect(await page.evaluate(`[document.activeElement?.tagName, document.activeElement?.closest('article.tile') !== null]`)).toEqual(['A', true]);

    // Drill down from a care-gap tile to its worklist.
    const tile = page.locator('article.tile', { has: page.locator('.kind', { hasText: 'Care gap' }) }).first();
    const ruleId = await tile.getAttribute('data-rule');
    await tile.locator('h2 a').click();
    await page.getByRole('heading', { name: 'Care-gap worklist' }).waitFor();
    await page.locator('tbody tr').first().waitFor();
    expect(await page.locator('#f-rule').inputValue()).toBe(ruleId);
    await page.screenshot({ path: path.join(SHOTS, '03-worklist-rule.png'), fullPage: true });

    // All rules, 25 rows a page: page forward.
    await page.locator('#f-rule').selectOption('');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await expect.poll(() => page.locator('.pager span').textContent()).toMatch(new RegExp(`of ${fixture.runs[1]!.careGaps} `));
    await page.getByLabel('Rows per page').selectOption('25');
    await expect.poll(() => page.locator('tbody tr').count()).toBe(25);
    await page.getByRole('button', { name: 'Next →' }).click();
    await expect.poll(() => page.locator('.pager span').textContent()).toMatch(/^Rows 26–/);
    await page.screenshot({ path: path.join(SHOTS, '04-worklist-page-2.png'), fullPage: true });

    // Filter: one practitioner, age 40-80; sort by age.
    const practitioner = await page.locator('#f-practitioner option').nth(2).getAttribute('value');
    await page.locator('#f-practitioner').selectOption(practitioner!);
    await page.getByLabel('Age from').fill('40');
    await page.getByLabel('Age to').fill('80');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await expect.poll(() => page.locator('.pager span').textContent()).toMatch(/^Rows 1–/);
    await page.getByRole('button', { name: /^Age/ }).click();
    await expect.poll(() => page.locator('th[aria-sort="ascending"]').textContent()).toMatch(/Age/);
    expect(page.url()).toMatch(new RegExp(`practitioner=${practitioner}`));
    const ages = (await page.locator('tbody tr td:nth-child(2)').allTextContents()).map(Number);
    expect(ages.length).toBeGreaterThan(0);
    expect(ages.every((a) => a >= 40 && a <= 80)).toBe(true);
    expect(ages).toEqual([...ages].sort((a, b) => a - b));
    const summary = await page.locator('.pager span').textContent();
    const total = Number(/of ([\d,]+)/.exec(summary ?? '')![1]!.replace(/,/g, ''));
    await page.screenshot({ path: path.join(SHOTS, '05-worklist-filtered.png'), fullPage: true });

    // Export the filtered list as CSV through the page's link (the session cookie authorises it).
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'CSV' }).click()]);
    const csv = await readFile((await download.path())!, 'utf8');
    const lines = csv.trim().split('\n');
    expect(lines[0]).toMatch(/^gap_id,run_id,rule_id/);
    expect(lines.length - 1).toBe(total);
    expect(download.suggestedFilename()).toMatch(/^care-gaps-run-.*\.csv$/);
  });

  it('opens a measure from the overview, drills down from a bar to its patients, exports them as CSV', async () => {
    const measureId = 'cairn-cms122-hba1c-poor-control';
    await page.goto(`${base}/dashboards/#/overview`);
    const tile = page.locator(`article.tile.measure[data-measure="${measureId}"]`);
    await tile.locator('canvas').waitFor();
    // An inverse measure says so in words, and its change is judged the inverse way.
    expect(await tile.locator('.kind').textContent()).toMatch(/lower is better/);
    expect(await tile.locator('.value').textContent()).toMatch(/%$/);
    expect(await tile.locator('.rate').textContent()).toMatch(/^\d+ of \d+ patients/);
    await page.screenshot({ path: path.join(SHOTS, '08-overview-measures.png'), fullPage: true });

    await tile.locator('h2 a').click();
    await page.getByRole('heading', { level: 1, name: /HbA1c/ }).waitFor();
    const section = page.locator('section.breakdown[data-by="practitioner"]');
    await section.locator('canvas').waitFor();
    await page.locator('section.breakdown[data-by="stratum"] canvas').waitFor();
    await page.screenshot({ path: path.join(SHOTS, '09-measure.png'), fullPage: true });

    // Click the longest bar of the practitioner chart (Chart.js knows where it drew it).
    await section.locator('canvas').scrollIntoViewIfNeeded();
    const bar = await section.locator('canvas').evaluate((canvas) => {
      const chart = (globalThis as unknown as { Chart: { getChart(c: unknown): { data: { datasets: { data: (number | null)[] }[] }; getDatasetMeta(i: number): { data: { getCenterPoint(): { x: number; y: number } }[] } } } }).Chart.getChart(canvas);
      const values = chart.data.datasets[0]!.data.map((v) => v ?? -1);
      const index = values.indexOf(Math.max(...values));
      const element = chart.getDatasetMeta(0).data[index]!;
      const point = element.getCenterPoint();
      return { index, x: point.x, y: point.y };
    });
    const row = section.locator('tbody tr').nth(bar.index);
    const label = await row.locator('td').first().textContent();
    const denominator = Number((await row.locator('td').nth(1).textContent())!.replace(/,/g, ''));
    await section.locator('canvas').click({ position: { x: bar.x, y: bar.y } });
    await page.getByRole('heading', { level: 1, name: 'Patients' }).waitFor();
    await page.locator('tbody tr').first().waitFor();
    expect(page.url()).toMatch(/population=denominator/);
    expect(page.url()).toMatch(/practitioner=/);
    const summary = await page.locator('.pager span').textContent();
    expect(Number(/of ([\d,]+)/.exec(summary ?? '')![1]!.replace(/,/g, ''))).toBe(denominator);
    expect(await page.locator('tbody tr').count()).toBe(Math.min(50, denominator));
    if (label !== 'Not attributed') expect(new Set(await page.locator('tbody tr td:nth-child(4)').allTextContents())).toEqual(new Set([label]));
    await page.screenshot({ path: path.join(SHOTS, '10-measure-patients.png'), fullPage: true });

    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'CSV' }).click()]);
    const csv = await readFile((await download.path())!, 'utf8');
    const lines = csv.trim().split('\n');
    expect(lines[0]).toMatch(/^run_id,measure_id,group_id,report_id,patient_id,/);
    expect(lines.length - 1).toBe(denominator);
    expect(download.suggestedFilename()).toMatch(new RegExp(`^measures-${measureId}-patients-run-.*\\.csv$`));
  });

  it('shows rule performance and run history with charts', async () => {
    await page.goto(`${base}/dashboards/#/rules`);
    await page.getByRole('heading', { name: 'Rule performance' }).waitFor();
    await page.locator('table').first().waitFor();
    await page.screenshot({ path: path.join(SHOTS, '06-rules.png'), fullPage: true });
    await page.goto(`${base}/dashboards/#/runs`);
    await page.getByRole('heading', { name: 'Run history' }).waitFor();
    await page.locator('tbody tr').first().waitFor();
    expect(await page.locator('tbody tr').count()).toBeGreaterThanOrEqual(2);
    await page.screenshot({ path: path.join(SHOTS, '07-runs.png'), fullPage: true });
    expect(outside).toEqual([]);
  });
});
