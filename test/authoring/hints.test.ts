import { cp } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CairnError, formatProblem, type Problem } from '../../src/domain/errors.ts';
import { loadKnowledge } from '../../src/knowledge/load.ts';
import { copyKnowledge, PROJECT_ROOT, testDeps } from '../support/knowledge.ts';
import { copySample, editFile } from './support.ts';

async function problemsOf(root: string): Promise<readonly Problem[]> {
  try {
    await loadKnowledge(root, { compiler: testDeps().compiler });
  } catch (error) {
    if (error instanceof CairnError) return error.problems;
    throw error;
  }
  return [];
}

const MEASURES = path.join(PROJECT_ROOT, 'measures/cairn-cms122-hba1c-poor-control.json');

describe('author hints', () => {
  it('a value set referenced with a version that is not loaded names the versions that are', async () => {
    const root = await copyKnowledge();
    await editFile(root, 'cql/TestOrders.cql', (t) => t.replace("'http://cairn.test/fhir/ValueSet/test-medications'", "'http://cairn.test/fhir/ValueSet/test-medications' version '2.0.0'"));
    const problems = await problemsOf(root);
    const problem = problems.find((p) => p.code === 'VALUESET_MISSING');
    expect(problem).toMatchObject({ file: 'cql/TestOrders.cql', hint: 'loaded with another version: 1.0.0' });
    expect(formatProblem(problem!)).toContain('(hint: loaded with another version: 1.0.0)');
  });

  it.skipIf(!existsSync(MEASURES))('a measure naming a define with a typo gets the closest define, at its JSON path', async () => {
    const root = await copySample();
    await cp(path.join(PROJECT_ROOT, 'measures'), path.join(root, 'measures'), { recursive: true });
    await editFile(root, 'measures/cairn-cms122-hba1c-poor-control.json', (t) => t.replace('"expression": "Initial Population"', '"expression": "Initial Populaton"'));
    const problems = await problemsOf(root);
    expect(problems).toContainEqual(expect.objectContaining({
      code: 'MEASURE_INVALID',
      file: 'measures/cairn-cms122-hba1c-poor-control.json',
      path: '$.group[0].population[0].criteria.expression',
      hint: 'did you mean "Initial Population"?',
    }));
  }, 120_000);

  it('a rule condition naming a fact with a typo gets the closest declared fact', async () => {
    const root = await copyKnowledge();
    await editFile(root, 'rules/test-draft-order.json', (t) => t.replace('"fact": "Has Draft Test Order"', '"fact": "Has Draft Test Ordr"'));
    const problems = await problemsOf(root);
    expect(problems).toContainEqual(expect.objectContaining({ code: 'RULE_REFERENCE', file: 'rules/test-draft-order.json', path: '$.conditions.all[0].fact', hint: 'did you mean "Has Draft Test Order"?' }));
  });
});
