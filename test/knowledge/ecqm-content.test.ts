import { copyFile, mkdir, mkdtemp, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepareLibrary } from '../../src/cql-engine/execute.ts';
import { loadKnowledge } from '../../src/knowledge/load.ts';
import { HAS_SHARED, SHARED_FIXTURES, SHARED_MISSING, testDeps } from '../support/knowledge.ts';

const ECQM = path.join(SHARED_FIXTURES, 'population/ecqm-content-qicore-2024');

/** Lays the published eCQM content out as a knowledge folder: ELM in cql/, ValueSet bundles in value-sets/. */
async function ecqmKnowledgeRoot(): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'cairn-ecqm-'));
  await mkdir(path.join(root, 'cql'));
  await mkdir(path.join(root, 'value-sets'));
  for (const file of await readdir(path.join(ECQM, 'elm'))) await copyFile(path.join(ECQM, 'elm', file), path.join(root, 'cql', file));
  for (const measure of await readdir(path.join(ECQM, 'measures'))) {
    for (const file of await readdir(path.join(ECQM, 'measures', measure))) {
      if (file.startsWith('valuesets-')) await copyFile(path.join(ECQM, 'measures', measure, file), path.join(root, 'value-sets', file));
    }
  }
  return root;
}

describe.skipIf(!HAS_SHARED)(`published eCQM content (QI-Core 4.1.1 ELM) loads as knowledge${HAS_SHARED ? '' : ` — skipped: ${SHARED_MISSING}`}`, () => {
  it('loads all 16 ELM libraries and their value sets without a single problem, and every library prepares', async () => {
    const deps = testDeps();
    const knowledge = await loadKnowledge(await ecqmKnowledgeRoot(), deps);
    expect(knowledge.libraries.size).toBe(16);
    const names = [...knowledge.libraries.values()].map((l) => l.summary.name);
    expect(names).toEqual(expect.arrayContaining(['BreastCancerScreeningFHIR', 'CMS104FHIRSTKDCAntithrombotic', 'FHIRHelpers', 'QICoreCommon']));
    const allElm = [...knowledge.libraries.values()].map((l) => l.compiled.elm);
    for (const library of knowledge.libraries.values()) {
      for (const vs of library.summary.valueSets) expect(knowledge.valueSets.resolve(vs.id, vs.version), `${library.summary.name}: ${vs.id}`).toBeDefined();
      expect(() => prepareLibrary(library.compiled.elm, allElm, deps.model)).not.toThrow();
    }
  });
});
