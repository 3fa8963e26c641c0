import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PreviewReport } from '../../src/authoring/preview.ts';
import { bumpRule, copySample, editFile, minimalWithCase, nextVersion, populate, runCli, SAMPLE_HBA1C_VERSION, tempDataDir } from './support.ts';

const AT = '2026-03-01T02:00:00Z';

describe('cairn preview', () => {
  let dataDir: string;
  let baseline: string;
  beforeAll(async () => {
    dataDir = await tempDataDir();
    await populate(dataDir, 40);
    baseline = await copySample();
  }, 120_000);

  it('reports per rule the patients, alerts, cards and care gaps of a changed rule against the baseline, with sample patients', async () => {
    const changed = await copySample();
    await bumpRule(changed, 'hba1c-above-9', nextVersion(SAMPLE_HBA1C_VERSION));
    await editFile(changed, 'rules/hba1c-above-9.json', (t) => t.replace('"operator": "equal", "value": true', '"operator": "notEqual", "value": true').replace(/"operator":\s*"equal",\s*"value":\s*true/, '"operator": "notEqual", "value": true'));
    const result = await runCli(dataDir, 'preview', '--knowledge', changed, '--baseline', baseline, '--at', AT, '--no-measures', '--json');
    expect(result.err).toBe('');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.out) as PreviewReport;
    expect(report.patients).toBe(40);
    const hba1c = report.rules.find((r) => r.ruleId === 'hba1c-above-9')!;
    expect(hba1c).toMatchObject({ change: 'changed', baselineVersion: SAMPLE_HBA1C_VERSION, candidateVersion: nextVersion(SAMPLE_HBA1C_VERSION) });
    expect(hba1c.candidate.patients).toBeGreaterThan(hba1c.baseline.patients);
    expect(hba1c.candidate.cards).toBe(hba1c.candidate.patients);
    expect(hba1c.newlyFiring.count).toBe(hba1c.candidate.patients - hba1c.baseline.patients + hba1c.noLongerFiring.count);
    expect(hba1c.newlyFiring.sample.length).toBe(Math.min(5, hba1c.newlyFiring.count));
    const unchanged = report.rules.find((r) => r.ruleId === 'statin-for-diabetes-40-75')!;
    expect(unchanged).toMatchObject({ change: 'unchanged', newlyFiring: { count: 0 }, noLongerFiring: { count: 0 } });
    expect(unchanged.baseline).toEqual(unchanged.candidate);
    expect(report.rules.find((r) => r.ruleId === 'opioid-benzodiazepine-concurrent')).toMatchObject({ cardsNote: 'n/a (needs draft orders)', candidate: { cards: null } });

    const text = await runCli(dataDir, 'preview', '--knowledge', changed, '--baseline', baseline, '--at', AT, '--no-measures', '--patients', '10');
    expect(text.code).toBe(0);
    expect(text.out).toContain('over 10 patient(s)');
    expect(text.out).toContain(`hba1c-above-9  [changed ${SAMPLE_HBA1C_VERSION} → ${nextVersion(SAMPLE_HBA1C_VERSION)}]`);
  }, 300_000);

  it('refuses a broken knowledge copy with every problem, and a bad --at', async () => {
    const broken = await copySample();
    await editFile(broken, 'rules/hba1c-above-9.json', (t) => t.replace('"indicator": "warning"', '"indicator": "hard-stop"'));
    const result = await runCli(dataDir, 'preview', '--knowledge', broken, '--baseline', baseline, '--at', AT);
    expect(result.code).toBe(1);
    expect(result.err).toContain('rules/hba1c-above-9.json $.outcome.card.indicator [RULE_INVALID]');
    const badAt = await runCli(dataDir, 'preview', '--knowledge', baseline, '--at', '2026-03-01');
    expect(badAt.code).toBe(1);
    expect(badAt.err).toContain('--at 2026-03-01 is not an ISO 8601 instant');
  }, 120_000);

  it('says so when there is no database to preview against', async () => {
    const result = await runCli(await tempDataDir(), 'preview', '--knowledge', baseline, '--at', AT);
    expect(result.code).toBe(1);
    expect(result.err).toContain('There is no analytical database');
  }, 120_000);
});

describe('cairn activate / activations / restore', () => {
  it('activates the sample knowledge after its own test cases pass', async () => {
    const dataDir = await tempDataDir();
    const root = await copySample();
    const result = await runCli(dataDir, 'activate', '--knowledge', root, '--actor', 'ana');
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/knowledge [0-9a-f]{16} activated: \d{2,} test case\(s\) passed; was none/);
    expect(result.out).toContain(`+hba1c-above-9@${SAMPLE_HBA1C_VERSION}`);
  }, 300_000);

  it('refuses a broken copy with its failed test cases, lists the history, and restores the previous version', async () => {
    const dataDir = await tempDataDir();
    const root = await minimalWithCase({ fires: true, card: { indicator: 'warning' } });
    const first = await runCli(dataDir, 'activate', '--knowledge', root, '--actor', 'ana');
    expect(first.code).toBe(0);
    const v1 = /knowledge ([0-9a-f]{16}) activated/.exec(first.out)![1]!;

    await editFile(root, 'rules/test-draft-order.json', (t) => t.replace('"indicator": "warning"', '"indicator": "critical"'));
    const refused = await runCli(dataDir, 'activate', '--knowledge', root, '--actor', 'ana');
    expect(refused.code).toBe(1);
    expect(refused.out).toContain('refused: knowledge');
    expect(refused.out).toContain('rules/test-draft-order.tests/fires.json [KNOWLEDGE_INVALID] test case "fires" of rule test-draft-order failed: $.card.indicator: expected "warning", got "critical"');
    expect(refused.out).toContain('the previously active knowledge stays active');

    await editFile(root, 'rules/test-draft-order.json', (t) => t.replace('"indicator": "critical"', '"indicator": "warning"'));
    await bumpRule(root, 'test-draft-order', '1.0.1');
    const second = await runCli(dataDir, 'activate', '--knowledge', root, '--actor', 'bo');
    expect(second.code).toBe(0);
    expect(second.out).toContain('~test-draft-order 1.0.0→1.0.1');

    const restored = await runCli(dataDir, 'restore', '--actor', 'cy');
    expect(restored.code).toBe(0);
    expect(restored.out).toContain(`knowledge ${v1} activated`);
    expect(restored.out).toContain('~test-draft-order 1.0.1→1.0.0');

    const history = await runCli(dataDir, 'activations');
    const lines = history.out.split('\n').filter((l) => /^[* ] \d{4}-/.test(l));
    expect(lines.map((l) => l.slice(2).split(/\s+/).slice(1, 2)[0])).toEqual(['activated', 'refused', 'activated', 'activated']);
    expect(lines[0]).toContain(` ${v1} by ana (cli)`);
    expect(lines[3]).toMatch(new RegExp(`^\\* .* ${v1} by cy \\(restore\\)`));
    expect(history.out).toContain('[KNOWLEDGE_INVALID] test case "fires"');

    const unknown = await runCli(dataDir, 'restore', 'deadbeef');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain('cannot restore: no activated version "deadbeef"');
    expect(path.isAbsolute(dataDir)).toBe(true);
  }, 300_000);
});
