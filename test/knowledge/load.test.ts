import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CairnError, formatProblem, type Problem } from '../../src/domain/errors.ts';
import { ActiveKnowledge, loadPreparedKnowledge } from '../../src/evaluate/knowledge-service.ts';
import { loadKnowledge } from '../../src/knowledge/load.ts';
import { copyKnowledge, editFile, MINIMAL_KNOWLEDGE, testDeps } from '../support/knowledge.ts';

async function problemsOf(root: string): Promise<Problem[]> {
  try {
    await loadPreparedKnowledge(root, testDeps());
  } catch (error) {
    if (error instanceof CairnError) return [...error.problems];
    throw error;
  }
  throw new Error(`expected ${root} to be invalid`);
}

describe('loadKnowledge', () => {
  it('loads the minimal fixture into one versioned set', async () => {
    const set = await loadKnowledge(MINIMAL_KNOWLEDGE, testDeps());
    expect(set.rules.map((r) => r.rule.id).sort()).toEqual(['test-birthday-gap', 'test-draft-order', 'test-draft-rule', 'test-faulty']);
    expect([...set.libraries.keys()].sort()).toEqual(['FHIRHelpers|4.0.1', 'Faulty|1.0.0', 'TestOrders|1.0.0']);
    expect(set.version).toMatch(/^[0-9a-f]{16}$/);
    expect(Object.isFrozen(set)).toBe(true);
  });

  it('gives equal content the same version and any change a new one', async () => {
    const copy = await copyKnowledge();
    const a = await loadKnowledge(MINIMAL_KNOWLEDGE, testDeps());
    const b = await loadKnowledge(copy, testDeps());
    expect(b.version).toBe(a.version);
    await editFile(copy, 'rules/test-draft-rule.json', (t) => t.replace('A draft rule', 'A draft rule, edited'));
    const c = await loadKnowledge(copy, testDeps());
    expect(c.version).not.toBe(a.version);
  });

  it('resolves value sets by url, url|version and urn:oid', async () => {
    const set = await loadKnowledge(MINIMAL_KNOWLEDGE, testDeps());
    const url = 'http://cairn.test/fhir/ValueSet/test-medications';
    expect(set.valueSets.resolve(url)?.codes).toHaveLength(2);
    expect(set.valueSets.resolve(`${url}|1.0.0`)).toBeDefined();
    expect(set.valueSets.resolve(url, '9.9.9')).toBeUndefined();
    expect(set.valueSets.resolve('urn:oid:2.16.840.1.999999.1')).toBe(set.valueSets.resolve(url));
  });
});

describe('broken knowledge gives precise errors', () => {
  const cases: { name: string; break: (root: string) => Promise<void>; want: Partial<Problem>[] }[] = [
    {
      name: 'CQL syntax error at file:line:column',
      break: (root) => editFile(root, 'cql/TestOrders.cql', (t) => t.replace(`where M.status = 'draft'`, `where M.status = = 'draft'`)),
      want: [{ code: 'CQL_COMPILE', file: 'cql/TestOrders.cql', line: 13 }],
    },
    {
      name: 'unknown include naming both libraries',
      break: (root) => editFile(root, 'cql/Faulty.cql', (t) => t.replace(`context Patient`, `include MissingLib version '2.0.0'\n\ncontext Patient`)),
      want: [{ code: 'CQL_INCLUDE', file: 'cql/Faulty.cql' }],
    },
    {
      name: 'missing value set naming the library and URL',
      break: (root) => rm(path.join(root, 'value-sets/test-medications.json')),
      want: [{ code: 'VALUESET_MISSING', file: 'cql/TestOrders.cql' }],
    },
    {
      name: 'rule JSON with a syntax error at line and column',
      break: (root) => editFile(root, 'rules/test-draft-rule.json', (t) => t.replace('"status": "draft",', '"status": "draft"')),
      want: [{ code: 'RULE_INVALID', file: 'rules/test-draft-rule.json', line: 7, column: 3 }],
    },
    {
      name: 'rule failing the schema, at its JSON path',
      break: (root) => editFile(root, 'rules/test-draft-order.json', (t) => t.replace('"indicator": "warning"', '"indicator": "hard-stop"')),
      want: [{ code: 'RULE_INVALID', file: 'rules/test-draft-order.json', path: '$.outcome.card.indicator' }],
    },
    {
      name: 'rule naming a define that does not exist, with the closest name',
      break: (root) => editFile(root, 'rules/test-birthday-gap.json', (t) => t.replace('"facts": ["Age", "Next Birthday"]', '"facts": ["Age", "Next Birthdy"]')),
      want: [
        { code: 'RULE_REFERENCE', file: 'rules/test-birthday-gap.json', path: '$.cql.facts[1]', hint: 'did you mean "Next Birthday"?' },
        { code: 'RULE_REFERENCE', file: 'rules/test-birthday-gap.json', path: '$.outcome.careGap.dueDate.fact' },
      ],
    },
  ];

  for (const testCase of cases) {
    it(testCase.name, async () => {
      const root = await copyKnowledge();
      await testCase.break(root);
      const problems = await problemsOf(root);
      for (const want of testCase.want) expect(problems).toContainEqual(expect.objectContaining(want));
      for (const problem of problems) expect(formatProblem(problem)).toContain(problem.file ?? '');
    });
  }

  it('reports every problem in every file at once', async () => {
    const root = await copyKnowledge();
    await editFile(root, 'rules/test-draft-order.json', (t) => t.replace('"indicator": "warning"', '"indicator": "hard-stop"'));
    await editFile(root, 'rules/test-draft-rule.json', (t) => t.replace('"version": "0.1.0"', '"version": "one"'));
    await writeFile(path.join(root, 'value-sets/broken.json'), '{"resourceType": "ValueSet"}');
    const problems = await problemsOf(root);
    const files = new Set(problems.map((p) => p.file));
    expect(files).toEqual(new Set(['rules/test-draft-order.json', 'rules/test-draft-rule.json', 'value-sets/broken.json']));
  });

  it('a reload with broken knowledge keeps the previous knowledge serving', async () => {
    const root = await copyKnowledge();
    const active = await ActiveKnowledge.load(root, testDeps());
    const before = active.current;
    await editFile(root, 'cql/TestOrders.cql', (t) => t.replace('define "Age":', 'define "Age" oops'));
    const outcome = await active.reload();
    expect(outcome.swapped).toBe(false);
    if (!outcome.swapped) {
      expect(outcome.keptVersion).toBe(before.knowledge.version);
      expect(outcome.problems[0]).toMatchObject({ code: 'CQL_COMPILE', file: 'cql/TestOrders.cql' });
    }
    expect(active.current).toBe(before);

    await editFile(root, 'cql/TestOrders.cql', (t) => t.replace('define "Age" oops', 'define "Age":'));
    await editFile(root, 'rules/test-draft-rule.json', (t) => t.replace('"0.1.0"', '"0.2.0"'));
    const fixed = await active.reload();
    expect(fixed).toMatchObject({ swapped: true, previousVersion: before.knowledge.version });
    expect(active.current.knowledge.version).not.toBe(before.knowledge.version);
  });
});
