import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/warehouse/database.ts';
import type { ListColumn } from '../../src/warehouse/reports.ts';
import { bearer, prepareReportWarehouse, startDashboards, type DashboardService, type ReportFixture } from './support.ts';

let fixture: ReportFixture;
let service: DashboardService;
let dir: string;

beforeAll(async () => {
  fixture = await prepareReportWarehouse(120);
  service = await startDashboards(fixture);
  dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-export-test-'));
});
afterAll(async () => {
  await service?.app.close();
  await fixture?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** parseCsv reads RFC 4180 text (quoted fields, doubled quotes, LF or CRLF line ends). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(field); field = ''; }
    else if (ch === '\n' || (ch === '\r' && text[i + 1] === '\n')) { row.push(field); rows.push(row); row = []; field = ''; if (ch === '\r') i++; }
    else field += ch;
  }
  if (field !== '' || row.length > 0) { row.push(field); rows.push(row); }
  return rows;
}

/** normalise renders any format's value as the CSV text of its kind. */
function normalise(kind: ListColumn['kind'], value: unknown): string {
  if (value === null || value === undefined) return '';
  if (kind === 'date') return value instanceof Date ? value.toISOString().slice(0, 10) : typeof value === 'number' ? new Date(value).toISOString().slice(0, 10) : String(value).slice(0, 10);
  if (kind === 'timestamp') return new Date(value instanceof Date ? value.getTime() : typeof value === 'number' || typeof value === 'bigint' ? Number(value) : String(value)).toISOString();
  if (kind === 'integer' || kind === 'number') return String(Number(value));
  return String(value);
}

async function download(url: string): Promise<Buffer> {
  const response = await service.app.inject({ url, headers: bearer('admin') });
  expect(response.statusCode, response.body.slice(0, 300)).toBe(200);
  return response.rawPayload;
}

async function threeWays(list: string, query = ''): Promise<{ columns: ListColumn[]; csv: string[][]; parquet: string[][]; arrow: string[][] }> {
  const page = (await service.app.inject({ url: `/api/${list}?limit=1${query}`, headers: bearer('admin') })).json() as { columns: ListColumn[]; total: number };
  const columns = page.columns;
  const csvText = (await download(`/api/${list}/export?format=csv${query}`)).toString('utf8');
  const [header, ...csvRows] = parseCsv(csvText);
  expect(header).toEqual(columns.map((c) => c.name));
  const csv = csvRows.map((row) => row.map((v, i) => (v === '' ? '' : normalise(columns[i]!.kind, v))));

  const file = path.join(dir, `${list.replaceAll('/', '-')}.parquet`);
  await writeFile(file, await download(`/api/${list}/export?format=parquet${query}`));
  const parquetRows = await queryRows(fixture.warehouse.connection, `SELECT * FROM read_parquet('${file}')`);
  const parquet = parquetRows.map((row) => columns.map((c) => normalise(c.kind, row[c.name])));

  const table = tableFromIPC(await download(`/api/${list}/export?format=arrow${query}`));
  expect(table.schema.fields.map((f) => f.name)).toEqual(columns.map((c) => c.name));
  const arrow = table.toArray().map((row: Record<string, unknown>) => columns.map((c) => normalise(c.kind, row[c.name])));
  expect(csv.length).toBe(page.total);
  return { columns, csv, parquet, arrow };
}

describe('exports', () => {
  it('care gaps: CSV parses, Parquet reads back in DuckDB, Arrow reads back in apache-arrow, and all three agree row for row', async () => {
    const { csv, parquet, arrow } = await threeWays('care-gaps', '&sort=age&order=desc');
    expect(csv.length).toBe(fixture.runs[1]!.careGaps);
    expect(parquet).toEqual(csv);
    expect(arrow).toEqual(csv);
  });

  it('runs (timestamps) and rule statistics (rates) agree in all three formats', async () => {
    for (const list of ['runs', 'rules/stats', 'rules/daily']) {
      const { csv, parquet, arrow } = await threeWays(list, list.startsWith('rules') ? '&from=2026-02-01&to=2026-03-02' : '');
      expect(csv.length, list).toBeGreaterThan(0);
      expect(parquet, list).toEqual(csv);
      expect(arrow, list).toEqual(csv);
    }
  });

  it('filters apply to exports exactly as to pages', async () => {
    const page = (await service.app.inject({ url: '/api/care-gaps?rule=colorectal-cancer-screening-overdue&limit=1000', headers: bearer('admin') })).json() as { items: { gap_id: string }[] };
    const { csv, columns } = await threeWays('care-gaps', '&rule=colorectal-cancer-screening-overdue');
    const id = columns.findIndex((c) => c.name === 'gap_id');
    expect(csv.map((r) => r[id])).toEqual(page.items.map((g) => g.gap_id));
  });

  it('an empty list still exports its columns', async () => {
    const { csv, parquet, arrow } = await threeWays('care-gaps', '&rule=no-such-rule');
    expect([csv, parquet, arrow]).toEqual([[], [], []]);
  });
});
