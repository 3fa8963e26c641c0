import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderSignRequest } from '../../bench/cds-hooks-load.ts';
import { createEvaluationPool, type CallEvaluator } from '../../src/cds-hooks/evaluation-pool.ts';
import { evaluateFromPrefetch } from '../../src/cds-hooks/prefetch-evaluation.ts';
import { describeServices, type CdsService } from '../../src/cds-hooks/services.ts';
import { loadPreparedKnowledge } from '../../src/evaluate/knowledge-service.ts';
import type { PreparedKnowledge } from '../../src/evaluate/prepare.ts';
import { copySample } from '../authoring/support.ts';
import { editFile, PROJECT_ROOT, testDeps } from '../support/knowledge.ts';

/**
 * Calls evaluated on worker threads answer exactly as on the HTTP thread, follow knowledge
 * swaps, and leave to the full path whatever needs it.
 */

const AT = '2026-03-01T12:00:00.000Z';
let prepared: PreparedKnowledge;
let service: CdsService;
let pool: CallEvaluator;
let body: string;

beforeAll(async () => {
  prepared = await loadPreparedKnowledge(PROJECT_ROOT, testDeps());
  service = describeServices(prepared).find((s) => s.id === 'medication-safety-order-sign') as CdsService;
  body = orderSignRequest(service.prefetch, AT).body;
  pool = createEvaluationPool(2);
}, 120_000);

afterAll(async () => {
  await pool.close();
});

describe('CDS evaluation pool', () => {
  it('answers a call with every prefetch key as the HTTP thread does', async () => {
    const here = await evaluateFromPrefetch(prepared, service, body, AT);
    expect(here.kind).toBe('evaluated');
    const answers = await Promise.all([1, 2, 3, 4].map(() => pool.evaluate(prepared, service, body, AT)));
    for (const answer of answers) expect(answer).toEqual(here);
  }, 120_000);

  it('answers each of many concurrent calls with its own outcome (calls sent ahead to busy workers)', async () => {
    // More calls than the workers hold at once: some go ahead to busy workers, some wait here.
    const request = JSON.parse(body) as { hookInstance: string };
    const bodies = Array.from({ length: 12 }, (_, i) => JSON.stringify({ ...request, hookInstance: `${request.hookInstance.slice(0, -2)}${String(i).padStart(2, '0')}` }));
    const answers = await Promise.all(bodies.map((text) => pool.evaluate(prepared, service, text, AT)));
    for (const [i, answer] of answers.entries()) {
      expect(answer).toEqual(await evaluateFromPrefetch(prepared, service, bodies[i] as string, AT));
      expect(answer.kind === 'evaluated' && answer.hookInstance).toBe((JSON.parse(bodies[i] as string) as { hookInstance: string }).hookInstance);
    }
  }, 120_000);

  it('answers every call still held by its workers or waiting with `fallback` when closed', async () => {
    const closing = createEvaluationPool(1);
    const pending = Array.from({ length: 4 }, () => closing.evaluate(prepared, service, body, AT));
    await closing.close();
    expect(await Promise.all(pending)).toEqual(Array.from({ length: 4 }, () => ({ kind: 'fallback' })));
  }, 120_000);

  it('answers a body given as its UTF-8 bytes (as the HTTP thread sends it) as it answers the text', async () => {
    // A non-ASCII display (multi-byte UTF-8) must reach the card's text decoded, as Fastify's parser decodes it.
    const accented = body.replace('oxycodone hydrochloride 5 MG Oral Tablet', 'oxycodone hydrochloride 5 MG Oral Tablet — Préparation');
    expect(accented).not.toBe(body);
    const bytes = new TextEncoder().encode(accented);
    const fromText = await evaluateFromPrefetch(prepared, service, accented, AT);
    expect(fromText.kind).toBe('evaluated');
    expect(JSON.stringify(fromText)).toContain('Préparation');
    expect(await evaluateFromPrefetch(prepared, service, bytes, AT)).toEqual(fromText);
    expect(await pool.evaluate(prepared, service, bytes, AT)).toEqual(fromText);
    // A view into a larger buffer reads only its own bytes.
    const framed = new Uint8Array(bytes.length + 8);
    framed.set(bytes, 4);
    expect(await pool.evaluate(prepared, service, framed.subarray(4, 4 + bytes.length), AT)).toEqual(fromText);
  }, 120_000);

  it('sends invalid requests back with their issues, and anything needing more to the full path', async () => {
    const request = JSON.parse(body) as { context: Record<string, unknown>; prefetch: Record<string, unknown> };
    const invalid = JSON.stringify({ ...request, context: { ...request.context, draftOrders: 'none' } });
    expect(await pool.evaluate(prepared, service, invalid, AT)).toEqual(await evaluateFromPrefetch(prepared, service, invalid, AT));
    expect((await pool.evaluate(prepared, service, invalid, AT)).kind).toBe('invalid');
    const [firstKey] = Object.keys(request.prefetch);
    const missing = JSON.stringify({ ...request, prefetch: { ...request.prefetch, [firstKey as string]: undefined } });
    for (const text of [missing, '{"hook": ', '', '{"__proto__": {"x": 1}}', '{"constructor": {"prototype": {"x": 1}}}']) expect(await pool.evaluate(prepared, service, text, AT)).toEqual({ kind: 'fallback' });
  }, 120_000);

  it('evaluates with the knowledge version of the call, switching when the serving set changes', async () => {
    const root = await copySample();
    await editFile(root, 'rules/opioid-benzodiazepine-concurrent.json', (text) => text.replace(/"summary": "[^"]*"/, '"summary": "Edited summary: opioid with benzodiazepine"'));
    const edited = await loadPreparedKnowledge(root, testDeps());
    expect(edited.knowledge.version).not.toBe(prepared.knowledge.version);
    const editedService = describeServices(edited).find((s) => s.id === service.id) as CdsService;
    const before = await pool.evaluate(prepared, service, body, AT);
    const after = await pool.evaluate(edited, editedService, body, AT);
    expect(after).toEqual(await evaluateFromPrefetch(edited, editedService, body, AT));
    const summaries = [before, after].map((o) => (o.kind === 'evaluated' ? o.evaluation.decisions.map((d) => (d.kind === 'card' ? d.card.summary : '')) : []));
    expect(summaries[1]).toContain('Edited summary: opioid with benzodiazepine');
    expect(summaries[0]).not.toContain('Edited summary: opioid with benzodiazepine');
  }, 180_000);
});
