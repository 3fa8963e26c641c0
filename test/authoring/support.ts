import { cp, mkdir, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { vi } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { generatePopulation } from '../../src/synthetic/generate.ts';
import { withWarehouse } from '../../src/warehouse/database.ts';
import { ingestPaths } from '../../src/warehouse/ingest.ts';
import { FIXTURES, MINIMAL_KNOWLEDGE, PROJECT_ROOT, copyKnowledge, editFile } from '../support/knowledge.ts';

export { editFile };

/** ELM cache shared by the CLI runs of these tests (the CLI's data folder is per test). */
export const ELM_CACHE = path.join(PROJECT_ROOT, '.cache/authoring-elm');

/** copySample copies the sample knowledge's rule folders (cql/, value-sets/, rules/ with their tests) to a temp dir; measures are left out to keep runs short. */
export async function copySample(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-sample-'));
  for (const folder of ['cql', 'value-sets', 'rules']) await cp(path.join(PROJECT_ROOT, folder), path.join(dir, folder), { recursive: true });
  return dir;
}

/** tempDataDir makes a data folder whose ELM cache is shared between tests (compiling the sample CQL is slow). */
export async function tempDataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-data-'));
  await mkdir(ELM_CACHE, { recursive: true });
  await symlink(ELM_CACHE, path.join(dir, 'elm-cache'));
  return dir;
}

/** bumpRule rewrites a rule's version in a knowledge copy. */
/** The version a sample rule has now (tests bump from it, so a rule's next release does not break them). */
export const SAMPLE_HBA1C_VERSION = (JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'rules/hba1c-above-9.json'), 'utf8')) as { version: string }).version;

/** nextVersion is `version` with its minor (or, with 'patch', its patch) number one higher. */
export function nextVersion(version: string, part: 'minor' | 'patch' = 'minor'): string {
  const [major = 0, minor = 0, patch = 0] = version.split('.').map(Number);
  return part === 'minor' ? `${major}.${minor + 1}.0` : `${major}.${minor}.${patch + 1}`;
}

export async function bumpRule(root: string, ruleId: string, version: string): Promise<void> {
  await editFile(root, `rules/${ruleId}.json`, (t) => t.replace(/"version": "[^"]+"/, `"version": "${version}"`));
}

/** minimalWithCase copies the minimal knowledge and adds one test case for `test-draft-order` expecting `expect`. */
export async function minimalWithCase(expect: Record<string, unknown>): Promise<string> {
  const root = await copyKnowledge(MINIMAL_KNOWLEDGE);
  await mkdir(path.join(root, 'rules/test-draft-order.tests'));
  const patient = JSON.parse(await readFile(path.join(FIXTURES, 'patients/test-orders-patient.json'), 'utf8')) as unknown;
  const context = JSON.parse(await readFile(path.join(FIXTURES, 'patients/test-orders-context.json'), 'utf8')) as unknown;
  await writeFile(path.join(root, 'rules/test-draft-order.tests/fires.json'), JSON.stringify({ description: 'fires', evaluatedAt: '2026-03-01T12:00:00Z', hook: 'order-select', context, patient, expect }));
  return root;
}

/** populate generates `patients` synthetic patients and ingests them into `<dataDir>/cairn.duckdb`. */
export async function populate(dataDir: string, patients: number): Promise<void> {
  const out = await mkdtemp(path.join(os.tmpdir(), 'cairn-population-'));
  await generatePopulation({ patients, seed: 11, outDir: out });
  await withWarehouse({ path: path.join(dataDir, 'cairn.duckdb') }, (warehouse) => ingestPaths(warehouse, [out], { now: new Date('2026-02-01T00:00:00Z'), sources: ['test'] }));
}

/** runCli invokes the CLI in-process with `--data-dir` and captures what it prints. */
export async function runCli(dataDir: string, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  process.exitCode = undefined;
  try {
    const code = await main(['node', 'cairn', ...args, '--data-dir', dataDir]);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
    process.exitCode = undefined;
  }
}

export const exists = existsSync;
