import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { CairnError } from '../../src/domain/errors.ts';
import { openWarehouse } from '../../src/warehouse/database.ts';
import { ingestPaths } from '../../src/warehouse/ingest.ts';
import { countByResourceType, countPatients } from '../../src/warehouse/read.ts';
import { generatePopulation } from '../../src/synthetic/generate.ts';
import { FIXTURES, NOW, rows, sharedFixture, snapshot, tempDir, tempWarehouse } from './helpers.ts';

const TSX = resolve(import.meta.dirname, '../../node_modules/tsx/dist/loader.mjs');
const CHILD = resolve(import.meta.dirname, 'child-process.ts');

async function ndjsonCounts(dir: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const name of (await readdir(dir)).filter((n) => n.endsWith('.ndjson') && n !== 'log.ndjson')) {
    for (const line of (await readFile(join(dir, name), 'utf8')).split('\n')) {
      if (line.trim() === '') continue;
      const type = (JSON.parse(line) as { resourceType: string }).resourceType;
      counts[type] = (counts[type] ?? 0) + 1;
    }
  }
  return counts;
}

async function bundleCounts(files: string[]): Promise<Record<string, number>> {
  const seen = new Set<string>();
  for (const file of files) {
    const bundle = JSON.parse(await readFile(file, 'utf8')) as { entry?: { resource?: { resourceType: string; id?: string } }[] };
    for (const entry of bundle.entry ?? []) if (entry.resource?.id) seen.add(`${entry.resource.resourceType}/${entry.resource.id}`);
  }
  const counts: Record<string, number> = {};
  for (const key of seen) counts[key.split('/')[0]!] = (counts[key.split('/')[0]!] ?? 0) + 1;
  return counts;
}

async function jsonFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.json')) out.push(join(entry.parentPath, entry.name));
  }
  return out.sort();
}

describe('ingest of real fixtures', () => {
  const bulk = sharedFixture('sample-bulk-fhir-datasets/10-patients');
  it.skipIf(bulk.skip)(`Synthea Bulk NDJSON: counts per type equal the files ${bulk.skip || ''}`, async () => {
    const warehouse = await tempWarehouse();
    const counts = await ingestPaths(warehouse, [bulk.path], { now: NOW });
    const expected = await ndjsonCounts(bulk.path);
    expect(await countByResourceType(warehouse)).toEqual(expected);
    // log.ndjson is an export log, not FHIR: its 4 lines are quarantined, not dropped.
    expect(counts.quarantined).toBe(4);
    expect(await countPatients(warehouse)).toBe(expected.Patient);
    const again = await ingestPaths(warehouse, [bulk.path], { now: NOW });
    expect(again).toMatchObject({ loaded: 0, replaced: 0, deleted: 0 });
  });

  const synthea = sharedFixture('fhir-patient-generator/EXM_125-7.3.000/patients-r4');
  it.skipIf(synthea.skip)(`Synthea transaction Bundles: counts per type equal the Bundles ${synthea.skip || ''}`, async () => {
    const files = (await jsonFiles(synthea.path)).filter((f) => /\/(numerator|denominator|ipop|none)\//.test(f));
    const warehouse = await tempWarehouse();
    await ingestPaths(warehouse, files, { now: NOW });
    expect(await countByResourceType(warehouse)).toEqual(await bundleCounts(files));
    // urn:uuid references were resolved: every Encounter belongs to a stored Patient.
    const orphans = await rows(warehouse, 'SELECT count(*)::INT AS n FROM encounter WHERE patient_id NOT IN (SELECT id FROM patient) OR patient_id IS NULL');
    expect(orphans[0]!.n).toBe(0);
  });

  const ecqm = sharedFixture('ecqm-content-qicore-2024/measures/CMS122-DiabetesGlycemicStatusAssessmentGreaterThan9PercentFHIR/tests');
  it.skipIf(ecqm.skip)(`eCQM test-case Bundles: counts per type equal the Bundles ${ecqm.skip || ''}`, async () => {
    const files = await jsonFiles(ecqm.path);
    const warehouse = await tempWarehouse();
    const counts = await ingestPaths(warehouse, files, { now: NOW });
    expect(counts.quarantined).toBe(0);
    expect(await countByResourceType(warehouse)).toEqual(await bundleCounts(files));
  });
});

describe('bad and changing input', () => {
  it('quarantines corrupt lines with file, line and reason, and loads the good ones', async () => {
    const warehouse = await tempWarehouse();
    const counts = await ingestPaths(warehouse, [join(FIXTURES, 'corrupt.ndjson')], { now: NOW });
    expect(counts).toMatchObject({ read: 2, loaded: 2, quarantined: 5 });
    const bad = await rows(warehouse, 'SELECT line::INT AS line, reason FROM quarantine ORDER BY line');
    expect(bad.map((r) => [r.line, r.reason])).toEqual([
      [2, 'not JSON'],
      [3, 'not a FHIR resource: resourceType is missing'],
      [4, 'Observation has no id'],
      [5, 'not a FHIR resource: resourceType is missing'],
      [8, 'Observation id is not a valid FHIR id'],
    ]);
    const obs = await rows(warehouse, `SELECT patient_id, code, value_number, strftime(effective_start, '%Y-%m-%d %H:%M') AS at FROM observation`);
    expect(obs).toEqual([{ patient_id: 'p1', code: '4548-4', value_number: 9.4, at: '2025-03-01 08:00' }]);
    // The same bad input ingested again is not stored twice.
    await ingestPaths(warehouse, [join(FIXTURES, 'corrupt.ndjson')], { now: NOW });
    expect((await rows(warehouse, 'SELECT count(*)::INT AS n FROM quarantine'))[0]!.n).toBe(5);
  });

  it('keeps what a truncated gzip held and quarantines the cut', async () => {
    const dir = await tempDir();
    const lines = Array.from({ length: 2000 }, (_, i) => JSON.stringify({ resourceType: 'Patient', id: `t${i}`, gender: i % 2 ? 'male' : 'female' }));
    const gz = gzipSync(lines.join('\n'));
    await writeFile(join(dir, 'Patient.ndjson.gz'), gz.subarray(0, Math.floor(gz.length * 0.6)));
    const warehouse = await tempWarehouse();
    const counts = await ingestPaths(warehouse, [dir], { now: NOW });
    expect(counts.loaded).toBeGreaterThan(100);
    expect(counts.loaded).toBeLessThan(2000);
    const cut = await rows(warehouse, 'SELECT reason FROM quarantine');
    expect(cut.some((r) => String(r.reason).includes('truncated'))).toBe(true);
  });

  it('keeps the newest version of duplicate ids, whatever the order read', async () => {
    const warehouse = await tempWarehouse();
    const counts = await ingestPaths(warehouse, [join(FIXTURES, 'versions.ndjson')], { now: NOW });
    expect(counts).toMatchObject({ read: 4, loaded: 2, unchanged: 2 });
    const stored = await rows(warehouse, 'SELECT id, version_id, status FROM condition ORDER BY id');
    expect(stored).toEqual([
      { id: 'c1', version_id: '3', status: 'resolved' },
      { id: 'c2', version_id: '1', status: 'entered-in-error' },
    ]);
    const dir = await tempDir();
    const older = (await readFile(join(FIXTURES, 'versions.ndjson'), 'utf8')).split('\n')[2]!;
    await writeFile(join(dir, 'old.ndjson'), `${older}\n`);
    expect(await ingestPaths(warehouse, [dir], { now: NOW })).toMatchObject({ skipped: 1, replaced: 0 });
    await writeFile(join(dir, 'old.ndjson'), `${older.replace('"versionId":"2","lastUpdated":"2024-02-01T00:00:00Z"', '"versionId":"4","lastUpdated":"2024-04-01T00:00:00Z"')}\n`);
    expect(await ingestPaths(warehouse, [dir], { now: NOW })).toMatchObject({ replaced: 1 });
    expect((await rows(warehouse, `SELECT status FROM condition WHERE id = 'c1'`))[0]!.status).toBe('inactive');
  });

  it('applies a Bulk Data deleted file and does not resurrect older copies', async () => {
    const warehouse = await tempWarehouse();
    await ingestPaths(warehouse, [join(FIXTURES, 'corrupt.ndjson'), join(FIXTURES, 'versions.ndjson')], { now: NOW });
    const counts = await ingestPaths(warehouse, [join(FIXTURES, 'deleted.ndjson')], { now: NOW });
    expect(counts).toMatchObject({ read: 2, deleted: 2 });
    expect(await countByResourceType(warehouse)).toEqual({ Condition: 1, Patient: 1 });
    const before = await snapshot(warehouse);
    const again = await ingestPaths(warehouse, [join(FIXTURES, 'corrupt.ndjson'), join(FIXTURES, 'versions.ndjson'), join(FIXTURES, 'deleted.ndjson')], { now: new Date('2025-07-01T00:00:00Z') });
    expect(again).toMatchObject({ loaded: 0, replaced: 0, deleted: 0 });
    expect(await snapshot(warehouse)).toEqual(before);
  });

  it('resolves urn:uuid references in a transaction Bundle to the ids the entries get', async () => {
    const warehouse = await tempWarehouse();
    const counts = await ingestPaths(warehouse, [join(FIXTURES, 'transaction-urn.json')], { now: NOW });
    expect(counts).toMatchObject({ loaded: 2, quarantined: 1 });
    const med = await rows(warehouse, 'SELECT patient_id, code, resource FROM medication_request');
    expect(med[0]!.patient_id).toBe('6f1c7a5e-3b7a-4a57-9f0e-1a2b3c4d5e6f');
    expect(med[0]!.code).toBe('1049621');
    expect(JSON.parse(String(med[0]!.resource)).subject.reference).toBe('Patient/6f1c7a5e-3b7a-4a57-9f0e-1a2b3c4d5e6f');
    const patient = await rows(warehouse, `SELECT birth_date::VARCHAR AS b, gender FROM patient`);
    expect(patient).toEqual([{ b: '1950-01-01', gender: 'male' }]);
  });

  it('reads NDJSON with Bundle lines, CRLF endings and offsets the same as the JavaScript reader', async () => {
    const dir = await tempDir();
    const bundle = JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: [
      { fullUrl: 'urn:uuid:aaaaaaaa-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', gender: 'female' }, request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'Observation', id: 'b1', status: 'final', subject: { reference: 'urn:uuid:aaaaaaaa-0000-4000-8000-000000000001' } }, request: { method: 'POST', url: 'Observation' } },
    ] });
    const obs = (id: string, at: string) => JSON.stringify({ resourceType: 'Observation', id, status: 'final', effectiveDateTime: at, subject: { reference: 'Patient/p9' } });
    await writeFile(join(dir, 'mixed.ndjson'), [obs('m1', '2025-03-01T10:00:00-05:30'), bundle, '', 'not json', obs('m2', '2025-03-01')].join('\n'));
    await writeFile(join(dir, 'crlf.ndjson'), [obs('r1', '2025-03-01T10:00:00Z'), '', 'oops', obs('r2', '2025-03-01T10:00:00.250+01:00')].join('\r\n'));
    const warehouse = await tempWarehouse();
    await warehouse.connection.run(`SET TimeZone = 'America/New_York'`);
    const counts = await ingestPaths(warehouse, [dir], { now: NOW });
    expect(counts).toMatchObject({ loaded: 6, quarantined: 2 });
    const bad = await rows(warehouse, `SELECT regexp_extract(source, '[^/]+$') AS file, line::INT AS line, reason FROM quarantine ORDER BY file`);
    expect(bad).toEqual([{ file: 'crlf.ndjson', line: 3, reason: 'not JSON' }, { file: 'mixed.ndjson', line: 4, reason: 'not JSON' }]);
    const stored = await rows(warehouse, `SELECT id, patient_id, strftime(effective_start, '%Y-%m-%d %H:%M:%S.%g') AS at FROM observation ORDER BY id`);
    expect(stored).toEqual([
      { id: 'b1', patient_id: 'aaaaaaaa-0000-4000-8000-000000000001', at: null },
      { id: 'm1', patient_id: 'p9', at: '2025-03-01 15:30:00.000' },
      { id: 'm2', patient_id: 'p9', at: '2025-03-01 00:00:00.000' },
      { id: 'r1', patient_id: 'p9', at: '2025-03-01 10:00:00.000' },
      { id: 'r2', patient_id: 'p9', at: '2025-03-01 09:00:00.250' },
    ]);
  });

  it('stores a repeated line or resource once, and replaces a same-version copy only when its JSON differs', async () => {
    const dir = await tempDir();
    const patient = (gender: string) => JSON.stringify({ resourceType: 'Patient', id: 'r1', meta: { versionId: '1', lastUpdated: '2024-01-01T00:00:00Z' }, gender });
    const other = JSON.stringify({ resourceType: 'Patient', id: 'r2' });
    // The same text twice, and the same resource with other JSON: the file needs its line order.
    await writeFile(join(dir, 'a.ndjson'), [patient('male'), other, other, patient('female')].join('\n'));
    const warehouse = await tempWarehouse();
    expect(await ingestPaths(warehouse, [dir], { now: NOW })).toMatchObject({ read: 4, loaded: 2, unchanged: 2 });
    expect(await rows(warehouse, `SELECT id, gender FROM patient ORDER BY id`)).toEqual([{ id: 'r1', gender: 'female' }, { id: 'r2', gender: null }]);
    await writeFile(join(dir, 'a.ndjson'), `${patient('female')}\n`);
    expect(await ingestPaths(warehouse, [dir], { now: NOW })).toMatchObject({ loaded: 0, replaced: 0, unchanged: 1 });
    await writeFile(join(dir, 'a.ndjson'), `${patient('other')}\n`);
    expect(await ingestPaths(warehouse, [dir], { now: NOW })).toMatchObject({ loaded: 0, replaced: 1, unchanged: 0 });
    expect(await rows(warehouse, `SELECT gender FROM patient WHERE id = 'r1'`)).toEqual([{ gender: 'other' }]);
  });

  it('reads whole gzip files in DuckDB, twice, and restores the memory limit it lowered', async () => {
    const dir = await tempDir();
    const lines = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ resourceType: 'Observation', id: `g${i}`, status: 'final', subject: { reference: `Patient/p${i % 7}` } }));
    await writeFile(join(dir, 'Observation.ndjson.gz'), gzipSync(lines.join('\n')));
    const warehouse = await tempWarehouse();
    const limit = async () => (await rows(warehouse, `SELECT current_setting('memory_limit') AS m`))[0]!.m;
    const before = await limit();
    const counts = await ingestPaths(warehouse, [dir], { now: NOW });
    expect(counts).toMatchObject({ read: 3000, loaded: 3000, quarantined: 0 });
    expect((await rows(warehouse, `SELECT count(DISTINCT patient_id)::INT AS n FROM observation`))[0]!.n).toBe(7);
    expect(await limit()).toBe(before);
  });

  it('fails and changes nothing when a file changes between reading keys and storing', async () => {
    const dir = await tempDir();
    const file = join(dir, 'Patient.ndjson');
    const patients = (prefix: string) => Array.from({ length: 50 }, (_, i) => JSON.stringify({ resourceType: 'Patient', id: `${prefix}${i}` })).join('\n');
    await writeFile(file, patients('a'));
    const warehouse = await tempWarehouse();
    const before = await snapshot(warehouse);
    let swapped = false;
    const swap = (done: number, total: number) => {
      // Halfway is the end of reading keys; storing reads the file again.
      if (done * 2 >= total && !swapped) {
        swapped = true;
        writeFileSync(file, patients('b'));
      }
    };
    await expect(ingestPaths(warehouse, [dir], { now: NOW, onProgress: swap })).rejects.toMatchObject({ code: 'WAREHOUSE_FAILED', message: expect.stringContaining('changed while it was being ingested') });
    expect(swapped).toBe(true);
    expect(await snapshot(warehouse)).toEqual(before);
    expect((await rows(warehouse, 'SELECT count(*)::INT AS n FROM ingest_run'))[0]!.n).toBe(0);
  });

  it('takes patient_id from every form of Patient reference, and only from those', async () => {
    const dir = await tempDir();
    const cases: [string, string | null][] = [
      ['Patient/p1', 'p1'],
      ['https://example.org/fhir/Patient/p2/_history/3', 'p2'],
      ['Patient/Patient/p3', 'p3'],
      ['Patient/bad id', null],
      ['Group/g1', null],
      ['xPatient/p4', null],
    ];
    const lines = cases.map(([reference], i) => JSON.stringify({ resourceType: 'Observation', id: `ref${i}`, status: 'final', subject: { reference } }));
    await writeFile(join(dir, 'Observation.ndjson'), lines.join('\n'));
    const warehouse = await tempWarehouse();
    await ingestPaths(warehouse, [dir], { now: NOW });
    const stored = await rows(warehouse, `SELECT id, patient_id FROM observation ORDER BY id`);
    expect(stored).toEqual(cases.map(([, patientId], i) => ({ id: `ref${i}`, patient_id: patientId })));
  });

  it('rejects missing paths with every one listed', async () => {
    const warehouse = await tempWarehouse();
    await expect(ingestPaths(warehouse, ['/nope/a', '/nope/b'], { now: NOW })).rejects.toMatchObject({ code: 'INPUT_INVALID', problems: [{ file: '/nope/a' }, { file: '/nope/b' }] });
  });
});

function runChild(args: string[], until: string): Promise<{ kill: () => Promise<number | null>; exited: Promise<number | null> }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(until)) resolvePromise({ kill: async () => { child.kill('SIGKILL'); return exited; }, exited });
    });
    void exited.then((code) => { if (!out.includes(until)) reject(new Error(`child exited ${code} before "${until}": ${err}`)); });
  });
}

describe('single writer and crash safety', () => {
  it('a child killed mid-ingest leaves the previous data, and the database opens', async () => {
    const dir = await tempDir();
    const db = join(dir, 'kill.duckdb');
    const first = await openWarehouse({ path: db });
    await ingestPaths(first, [join(FIXTURES, 'versions.ndjson')], { now: NOW });
    const before = await snapshot(first);
    first.close();
    const pop = join(dir, 'pop');
    await generatePopulation({ patients: 1500, seed: 3, outDir: pop });
    const child = await runChild(['ingest', db, pop], 'progress');
    await child.kill();
    const after = await openWarehouse({ path: db });
    try {
      expect(await snapshot(after)).toEqual(before);
      expect(await countPatients(after)).toBe(0);
    } finally {
      after.close();
    }
  });

  it('says WAREHOUSE_BUSY with the file and what to do when another process holds it', async () => {
    const dir = await tempDir();
    const db = join(dir, 'busy.duckdb');
    (await openWarehouse({ path: db })).close();
    const child = await runChild(['hold', db], 'ready');
    try {
      const error = await openWarehouse({ path: db }).then(() => null, (e: unknown) => e);
      expect(error).toBeInstanceOf(CairnError);
      expect((error as CairnError).code).toBe('WAREHOUSE_BUSY');
      expect((error as CairnError).message).toContain(db);
      expect((error as CairnError).message).toMatch(/stop that process|wait/);
    } finally {
      await child.kill();
    }
  });
});
