import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCqlCompiler, type CqlCompiler } from '../../src/cql-engine/compiler.ts';
import { loadFhirR4Model } from '../../src/cql-engine/fhir-model.ts';
import type { KnowledgeDeps } from '../../src/evaluate/knowledge-service.ts';

export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const FIXTURES = path.join(PROJECT_ROOT, 'test/fixtures');
export const MINIMAL_KNOWLEDGE = path.join(FIXTURES, 'knowledge/minimal');
export const SHARED_FIXTURES = path.resolve(PROJECT_ROOT, '../shared/fixtures');
export const HAS_SHARED = existsSync(SHARED_FIXTURES);
/** Shown in the skip message of tests that read ../shared. */
export const SHARED_MISSING = `../shared/fixtures not found at ${SHARED_FIXTURES}; tests over published fixtures are skipped`;

let deps: KnowledgeDeps | undefined;

/** testDeps builds one compiler (with an ELM cache under .cache/) and one FHIR model per test file. */
export function testDeps(): KnowledgeDeps {
  deps ??= { compiler: createCqlCompiler({ cacheDir: path.join(PROJECT_ROOT, '.cache/test-elm') }), model: loadFhirR4Model() };
  return deps;
}

export function uncachedCompiler(): CqlCompiler {
  return createCqlCompiler();
}

/** copyKnowledge copies a knowledge folder to a fresh temp dir, for tests that break it. */
export async function copyKnowledge(source: string = MINIMAL_KNOWLEDGE): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'cairn-knowledge-'));
  await cp(source, dir, { recursive: true });
  return dir;
}

/** editFile rewrites a file in a knowledge copy. */
export async function editFile(root: string, file: string, edit: (text: string) => string): Promise<void> {
  const full = path.join(root, file);
  await writeFile(full, edit(await readFile(full, 'utf8')));
}

export async function readJson<T = unknown>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, 'utf8')) as T;
}
