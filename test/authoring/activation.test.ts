import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { activateOffline, KnowledgeActivation } from '../../src/authoring/activation.ts';
import { ActivationHistory } from '../../src/authoring/history.ts';
import { testDeps } from '../support/knowledge.ts';
import { bumpRule, editFile, exists, minimalWithCase, tempDataDir } from './support.ts';

const now = (): Date => new Date('2026-03-01T12:00:00Z');
const PASSING = { fires: true, card: { indicator: 'warning' } };

async function started(root: string): Promise<{ activation: KnowledgeActivation; history: ActivationHistory; notes: string[] }> {
  const history = new ActivationHistory(await tempDataDir());
  const { activation, notes } = await KnowledgeActivation.start(root, testDeps(), history, { now, actor: 'test' });
  return { activation, history, notes };
}

describe('safe activation', () => {
  it('activates a set that passes its tests, records who/when/version/diff, and keeps a snapshot', async () => {
    const root = await minimalWithCase(PASSING);
    const { activation, history, notes } = await started(root);
    const first = activation.active.current.knowledge.version;
    expect(notes.join('\n')).toContain(`knowledge ${first} activated at start (1 test case(s) passed)`);

    await bumpRule(root, 'test-draft-order', '1.1.0');
    const result = await activation.activate({ actor: 'ana', trigger: 'api' });
    expect(result.activated).toBe(true);
    const second = activation.active.current.knowledge.version;
    expect(second).not.toBe(first);
    const records = await history.records();
    expect(records.map((r) => [r.trigger, r.outcome, r.version, r.actor])).toEqual([['start', 'activated', first, 'test'], ['api', 'activated', second, 'ana']]);
    expect(records[1]).toMatchObject({ previousVersion: first, tests: { cases: 1, passed: 1, failed: 0 }, diff: { changed: [{ id: 'test-draft-order', from: '1.0.0', to: '1.1.0' }], added: [], removed: [] } });
    expect((await readdir(path.join(history.dataDir, 'knowledge-snapshots'))).sort()).toEqual([first, second].sort());
  });

  it('refuses a set whose test case fails, lists the failure, and keeps the old set serving', async () => {
    const root = await minimalWithCase(PASSING);
    const { activation, history } = await started(root);
    const before = activation.active.current;
    await editFile(root, 'rules/test-draft-order.json', (t) => t.replace('"indicator": "warning"', '"indicator": "critical"'));
    const result = await activation.activate({ actor: 'ana', trigger: 'api' });
    expect(result.activated).toBe(false);
    if (result.activated) return;
    expect(result.message).toMatch(/failed 1 of its 1 test case/);
    expect(result.problems).toContainEqual(expect.objectContaining({ code: 'KNOWLEDGE_INVALID', file: 'rules/test-draft-order.tests/fires.json', message: expect.stringContaining('$.card.indicator: expected "warning", got "critical"') }));
    expect(activation.active.current).toBe(before);
    expect((await history.records()).at(-1)).toMatchObject({ outcome: 'refused', tests: { failed: 1 }, problems: [expect.stringContaining('$.card.indicator')] });
  });

  it('refuses a set that does not compile, with file:line:column', async () => {
    const root = await minimalWithCase(PASSING);
    const { activation } = await started(root);
    const before = activation.active.current;
    await editFile(root, 'cql/TestOrders.cql', (t) => t.replace('exists "Draft Test Orders"', 'exists "Draft Test Order"'));
    const result = await activation.activate({ actor: 'ana', trigger: 'watch' });
    expect(result.activated).toBe(false);
    if (!result.activated) expect(result.problems).toContainEqual(expect.objectContaining({ code: 'CQL_COMPILE', file: 'cql/TestOrders.cql', line: expect.any(Number) }));
    expect(activation.active.current).toBe(before);
  });

  it('restores the previous version with one call, and a restart keeps serving what was restored', async () => {
    const root = await minimalWithCase(PASSING);
    const { activation, history } = await started(root);
    const first = activation.active.current.knowledge.version;
    await bumpRule(root, 'test-draft-order', '2.0.0');
    await activation.activate({ actor: 'ana', trigger: 'api' });
    const second = activation.active.current.knowledge.version;

    const restored = await activation.restore('bo');
    expect(restored).toMatchObject({ activated: true, record: { trigger: 'restore', actor: 'bo', version: first, previousVersion: second, diff: { changed: [{ id: 'test-draft-order', from: '2.0.0', to: '1.0.0' }] } } });
    expect(activation.active.current.knowledge.version).toBe(first);

    // The folder still holds version 2; it was activated before, so a restart serves the restored snapshot.
    const { activation: again, notes } = await KnowledgeActivation.start(root, testDeps(), history, { now, actor: 'test' });
    expect(again.active.current.knowledge.version).toBe(first);
    expect(notes.join('\n')).toContain('was activated or refused before');
    expect(await activation.restore('bo', 'ffffffff')).toMatchObject({ activated: false, message: expect.stringContaining('no activated version "ffffffff"') });
  });

  it('follows an activation the CLI recorded while the service runs', async () => {
    const root = await minimalWithCase(PASSING);
    const { activation, history } = await started(root);
    await bumpRule(root, 'test-draft-rule', '0.3.0');
    const offline = await activateOffline(history, testDeps(), { actor: 'cli-user', trigger: 'cli', source: root }, now);
    expect(offline.activated).toBe(true);
    if (!offline.activated) return;
    expect(await activation.follow()).toBe(offline.record.version);
    expect(activation.active.current.knowledge.version).toBe(offline.record.version);
    expect(await activation.follow()).toBeUndefined();
  });

  it('starts from the last activated snapshot when the folder is refused, and refuses to start with no history', async () => {
    const root = await minimalWithCase(PASSING);
    const { activation, history } = await started(root);
    const good = activation.active.current.knowledge.version;
    await editFile(root, 'rules/test-draft-order.json', (t) => t.replace('"indicator": "warning"', '"indicator": "info"'));
    const { activation: restarted, notes } = await KnowledgeActivation.start(root, testDeps(), history, { now, actor: 'test' });
    expect(restarted.active.current.knowledge.version).toBe(good);
    expect(notes.join('\n')).toMatch(/was refused: .*failed 1 of its 1 test case/);
    await expect(KnowledgeActivation.start(root, testDeps(), new ActivationHistory(await tempDataDir()), { now, actor: 'test' })).rejects.toMatchObject({ code: 'KNOWLEDGE_INVALID' });
    expect(exists(history.logFile)).toBe(true);
  });
});
