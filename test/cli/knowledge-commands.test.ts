import { readdir } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { copyKnowledge, editFile, FIXTURES, MINIMAL_KNOWLEDGE, PROJECT_ROOT } from '../support/knowledge.ts';

/** run invokes the CLI in-process and captures what it prints. */
async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  process.exitCode = undefined;
  try {
    const code = await main(['node', 'cairn', ...args, '--data-dir', path.join(PROJECT_ROOT, '.cache/cli-test-data')]);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
    process.exitCode = undefined;
  }
}

afterEach(() => {
  process.exitCode = undefined;
});

describe('cairn CLI (knowledge commands)', () => {
  it('validate accepts the minimal knowledge', async () => {
    const result = await run('validate', '--knowledge', MINIMAL_KNOWLEDGE);
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/knowledge [0-9a-f]{16} is valid: 3 libraries, 4 rules \(3 active\)/);
  });

  it('validate prints every problem with its location and exits non-zero', async () => {
    const root = await copyKnowledge();
    await editFile(root, 'rules/test-draft-order.json', (t) => t.replace('"Active Count", "Draft', '"Active Cuont", "Draft'));
    await editFile(root, 'cql/Faulty.cql', (t) => t.replace('singleton from {', 'singleton frm {'));
    const result = await run('validate', '--knowledge', root);
    expect(result.code).toBe(1);
    expect(result.out).toContain('rules/test-draft-order.json $.cql.facts[1] [RULE_REFERENCE] define "Active Cuont" does not exist in library TestOrders version \'1.0.0\' (hint: did you mean "Active Count"?)');
    expect(result.out).toMatch(/cql\/Faulty\.cql:11:\d+ \[CQL_COMPILE\]/);
  });

  it('eval prints the decisions as JSON for a hook', async () => {
    const result = await run('eval', '--knowledge', MINIMAL_KNOWLEDGE, '--patient', path.join(FIXTURES, 'patients/test-orders-patient.json'),
      '--hook', 'order-sign', '--context', path.join(FIXTURES, 'patients/test-orders-context.json'), '--at', '2026-03-01T12:00:00Z');
    expect(result.code).toBe(0);
    const evaluation = JSON.parse(result.out) as { decisions: { kind: string; card: { summary: string } }[] };
    expect(evaluation.decisions.map((d) => d.card.summary)).toEqual(['Test medication ordered with 1 active (age 55)']);
  });

  it('eval refuses an unknown hook and an unreadable patient file with a clear error', async () => {
    const badHook = await run('eval', '--knowledge', MINIMAL_KNOWLEDGE, '--patient', 'x.json', '--hook', 'order-review', '--at', '2026-03-01T12:00:00Z');
    expect(badHook.code).toBe(1);
    expect(badHook.err).toContain('--hook order-review is not one of');
    const missing = await run('eval', '--knowledge', MINIMAL_KNOWLEDGE, '--patient', '/nonexistent/p.json', '--at', '2026-03-01T12:00:00Z');
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('cannot read patient file /nonexistent/p.json');
  });

  it('compile writes the ELM of each CQL library', async () => {
    const out = await mkdtemp(path.join(os.tmpdir(), 'cairn-elm-'));
    const result = await run('compile', '--knowledge', MINIMAL_KNOWLEDGE, '--out', out);
    expect(result.code).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['FHIRHelpers-4.0.1.json', 'Faulty-1.0.0.json', 'TestOrders-1.0.0.json']);
  });
});

describe('cairn eval --case', () => {
  it('runs a rule test case of the sample knowledge', async () => {
    const result = await run('eval', '--knowledge', PROJECT_ROOT, '--case', path.join(PROJECT_ROOT, 'rules/opioid-benzodiazepine-concurrent.tests/opioid-ordered-with-active-benzodiazepine.json'));
    expect(result.code).toBe(0);
    const evaluation = JSON.parse(result.out) as { hook: string; decisions: { ruleId: string; card: { indicator: string } }[] };
    expect(evaluation.hook).toBe('order-select');
    expect(evaluation.decisions).toEqual([expect.objectContaining({ ruleId: 'opioid-benzodiazepine-concurrent', card: expect.objectContaining({ indicator: 'warning' }) })]);
  });

  it('refuses --patient together with --case', async () => {
    const result = await run('eval', '--knowledge', MINIMAL_KNOWLEDGE, '--patient', 'a.json', '--case', 'b.json');
    expect(result.code).toBe(1);
    expect(result.err).toContain('give exactly one of --patient FILE or --case FILE');
  });
});

describe('cairn test', () => {
  async function knowledgeWithCases(cases: Record<string, unknown>): Promise<string> {
    const root = await copyKnowledge();
    const { mkdir, writeFile, readFile } = await import('node:fs/promises');
    await mkdir(path.join(root, 'rules/test-draft-order.tests'));
    const patient = JSON.parse(await readFile(path.join(FIXTURES, 'patients/test-orders-patient.json'), 'utf8')) as unknown;
    const context = JSON.parse(await readFile(path.join(FIXTURES, 'patients/test-orders-context.json'), 'utf8')) as unknown;
    for (const [name, expect] of Object.entries(cases)) {
      await writeFile(path.join(root, `rules/test-draft-order.tests/${name}.json`), JSON.stringify({ description: name, evaluatedAt: '2026-03-01T12:00:00Z', hook: 'order-select', context, patient, expect }));
    }
    return root;
  }

  it('passes a correct case and reports coverage of conditions and defines', async () => {
    const root = await knowledgeWithCases({ fires: { fires: true, card: { indicator: 'warning' }, defines: { 'Active Count': 1 } } });
    const result = await run('test', 'test-draft-order', '--knowledge', root, '--coverage');
    expect(result.code).toBe(0);
    expect(result.out).toContain('PASS test-draft-order › fires');
    expect(result.out).toContain('1 passed, 0 failed');
    expect(result.out).toMatch(/condition Has Draft Test Order equal true\s+yes\s+NO/);
  });

  it('prints a diff for each failure and exits 1', async () => {
    const root = await knowledgeWithCases({ wrong: { fires: true, card: { indicator: 'critical' }, defines: { 'Active Cnt': 1 } } });
    const result = await run('test', '--knowledge', root);
    expect(result.code).toBe(1);
    expect(result.out).toContain('FAIL test-draft-order › wrong');
    expect(result.out).toContain('$.card.indicator: expected "critical", got "warning"');
    expect(result.out).toContain('$.defines["Active Cnt"]: no such define in TestOrders|1.0.0 (did you mean "Active Count"?)');
  });
});
