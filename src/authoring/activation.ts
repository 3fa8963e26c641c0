/**
 * Safe activation: a knowledge set serves only after it loaded, validated and passed its own test
 * cases; every attempt is recorded in the activation history with who, when, the content version
 * and the rule-version diff; every activated set is kept as a snapshot, so restoring an earlier
 * version is activating its snapshot.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { CairnError, formatProblem, type Problem } from '../domain/errors.ts';
import { ActiveKnowledge, checkKnowledge, loadPreparedKnowledge, type KnowledgeDeps } from '../evaluate/knowledge-service.ts';
import type { KnowledgeSet } from '../knowledge/knowledge-set.ts';
import { loadKnowledge } from '../knowledge/load.ts';
import { ActivationHistory, indexRecord, indexRules, ruleDiff, rulesOf, type ActivationRecord, type RuleIndex, type Trigger } from './history.ts';

/** Who asked, and how. */
export interface ActivationRequest {
  readonly actor: string;
  readonly trigger: Trigger;
  /** The folder to activate; default the configured knowledge folder. */
  readonly source?: string;
}

export type ActivationResult =
  | { readonly activated: true; readonly record: ActivationRecord; readonly unchanged: boolean }
  | { readonly activated: false; readonly record?: ActivationRecord; readonly message: string; readonly problems: readonly Problem[] };

const MAX_RECORDED_PROBLEMS = 50;

function recordProblems(problems: readonly Problem[]): string[] {
  const lines = problems.slice(0, MAX_RECORDED_PROBLEMS).map(formatProblem);
  if (problems.length > MAX_RECORDED_PROBLEMS) lines.push(`… and ${problems.length - MAX_RECORDED_PROBLEMS} more`);
  return lines;
}

function relativeSnapshot(history: ActivationHistory, version: string): string {
  return path.relative(history.dataDir, history.snapshotPath(version)).split(path.sep).join('/');
}

/** versionOf is the content version of a folder, or undefined when it does not load. */
async function versionOf(root: string, deps: KnowledgeDeps): Promise<string | undefined> {
  try {
    return (await loadKnowledge(root, { compiler: deps.compiler })).version;
  } catch (error) {
    if (error instanceof CairnError) return undefined;
    throw error;
  }
}

/**
 * gateAndRecord checks `source` (copied to a staging folder first), keeps the copy as the
 * snapshot of its version when it passes, and appends the record either way. It does not swap
 * anything: callers decide what serves.
 */
async function gateAndRecord(
  history: ActivationHistory,
  deps: KnowledgeDeps,
  request: Required<ActivationRequest>,
  before: { version?: string; rules: RuleIndex },
  now: () => Date,
): Promise<{ ok: true; record: ActivationRecord; snapshot: string; knowledge: KnowledgeSet } | { ok: false; record: ActivationRecord; message: string; problems: readonly Problem[] }> {
  const staging = await history.stage(request.source);
  const base = { at: now().toISOString(), actor: request.actor, trigger: request.trigger, source: path.resolve(request.source), ...(before.version ? { previousVersion: before.version } : {}) };
  try {
    const checked = await checkKnowledge(staging, deps);
    if (!checked.ok) {
      await history.discard(staging);
      const record: ActivationRecord = {
        ...base,
        outcome: 'refused',
        ...(checked.candidate ? { version: checked.candidate.version, rules: rulesOf(checked.candidate), diff: ruleDiff(before.rules, indexRules(checked.candidate)) } : {}),
        ...(checked.tests ? { tests: checked.tests } : {}),
        problems: recordProblems(checked.problems),
      };
      await history.append(record);
      return { ok: false, record, message: checked.message.replaceAll(staging, request.source), problems: checked.problems };
    }
    const { knowledge } = checked.prepared;
    const snapshot = await history.keep(staging, knowledge.version);
    const record: ActivationRecord = {
      ...base,
      outcome: 'activated',
      version: knowledge.version,
      snapshot: relativeSnapshot(history, knowledge.version),
      rules: rulesOf(knowledge),
      diff: ruleDiff(before.rules, indexRules(knowledge)),
      tests: checked.tests,
    };
    await history.append(record);
    return { ok: true, record, snapshot, knowledge };
  } catch (error) {
    await history.discard(staging);
    throw error;
  }
}

/**
 * activateOffline is `cairn activate` without a running service: it gates the folder and records
 * the activation; a running service follows the history and swaps to the recorded snapshot.
 */
export async function activateOffline(history: ActivationHistory, deps: KnowledgeDeps, request: Required<ActivationRequest>, now: () => Date): Promise<ActivationResult> {
  const latest = await history.latestActivated();
  const gated = await gateAndRecord(history, deps, request, { ...(latest?.version ? { version: latest.version } : {}), rules: indexRecord(latest) }, now);
  if (!gated.ok) return { activated: false, record: gated.record, message: gated.message, problems: gated.problems };
  return { activated: true, record: gated.record, unchanged: gated.record.version === latest?.version };
}

/**
 * KnowledgeActivation is the service's side: it owns the serving ActiveKnowledge, gates every
 * activation, records it, and swaps only a set that passed. Activations run one at a time.
 */
export class KnowledgeActivation {
  readonly active: ActiveKnowledge;
  readonly history: ActivationHistory;
  readonly #now: () => Date;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(active: ActiveKnowledge, history: ActivationHistory, now: () => Date) {
    this.active = active;
    this.history = history;
    this.#now = now;
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /**
   * start decides what serves when the service starts: the configured folder when its version was
   * never seen and it passes the gate; otherwise the latest activated snapshot (so a restore
   * survives a restart, and a folder that failed stays out). With no history and a failing
   * folder, it throws KNOWLEDGE_INVALID.
   */
  static async start(root: string, deps: KnowledgeDeps, history: ActivationHistory, options: { now: () => Date; actor: string }): Promise<{ activation: KnowledgeActivation; notes: string[] }> {
    const notes: string[] = [];
    const records = await history.records();
    // Only an activated version whose snapshot is still there can serve.
    const latest = records.filter((r) => r.outcome === 'activated' && r.version && existsSync(history.snapshotPath(r.version))).at(-1);
    const snapshot = latest?.version ? history.snapshotPath(latest.version) : undefined;
    const fromSnapshot = async (why: string): Promise<{ activation: KnowledgeActivation; notes: string[] }> => {
      notes.push(`${why}; serving the last activated knowledge ${latest!.version} from ${snapshot}`);
      const prepared = await loadPreparedKnowledge(snapshot!, deps);
      return { activation: new KnowledgeActivation(ActiveKnowledge.of(root, deps, prepared), history, options.now), notes };
    };
    const folderVersion = await versionOf(root, deps);
    if (latest && folderVersion && records.some((r) => r.version === folderVersion)) {
      return folderVersion === latest.version ? fromSnapshot(`knowledge ${folderVersion} is the last activated`) : fromSnapshot(`knowledge ${folderVersion} in ${root} was activated or refused before`);
    }
    const gated = await gateAndRecord(history, deps, { actor: options.actor, trigger: 'start', source: root }, { ...(latest?.version ? { version: latest.version } : {}), rules: indexRecord(latest) }, options.now);
    if (gated.ok) {
      const prepared = await loadPreparedKnowledge(gated.snapshot, deps);
      notes.push(`knowledge ${gated.knowledge.version} activated at start (${gated.record.tests?.passed ?? 0} test case(s) passed)`);
      return { activation: new KnowledgeActivation(ActiveKnowledge.of(root, deps, prepared), history, options.now), notes };
    }
    if (latest && snapshot) {
      notes.push(`knowledge in ${root} was refused: ${gated.message}`, ...(gated.record.problems ?? []).map((p) => `  ${p}`));
      return fromSnapshot('the knowledge folder was refused');
    }
    throw new CairnError('KNOWLEDGE_INVALID', gated.message, { problems: gated.problems, context: { root } });
  }

  /** activate gates `request.source` (default the configured folder), records the attempt, and swaps the set in if it passed. */
  activate(request: ActivationRequest): Promise<ActivationResult> {
    return this.#serial(() => this.#activate({ ...request, source: request.source ?? this.active.root }));
  }

  async #activate(request: Required<ActivationRequest>): Promise<ActivationResult> {
    const current = this.active.current.knowledge;
    if (request.trigger === 'watch' && (await versionOf(request.source, this.active.deps)) === current.version) {
      // A file was touched but the content is what serves: nothing to gate or record.
      return { activated: true, record: { at: this.#now().toISOString(), actor: request.actor, trigger: 'watch', outcome: 'activated', version: current.version, source: request.source }, unchanged: true };
    }
    const gated = await gateAndRecord(this.history, this.active.deps, request, { version: current.version, rules: indexRules(current) }, this.#now);
    if (!gated.ok) return { activated: false, record: gated.record, message: gated.message, problems: gated.problems };
    // The snapshot passed the gate a moment ago and never changes: load it without re-running its cases.
    const outcome = await this.active.reload(gated.snapshot, { runTests: false });
    if (!outcome.swapped) return { activated: false, message: outcome.message, problems: outcome.problems };
    return { activated: true, record: gated.record, unchanged: outcome.version === current.version };
  }

  /** restore activates the snapshot of `version` (default: the newest activated version other than the serving one). */
  restore(actor: string, version?: string): Promise<ActivationResult> {
    return this.#serial(async () => {
      const found = await this.history.findVersion(version, this.active.current.knowledge.version);
      if ('error' in found) return { activated: false, message: found.error, problems: [] };
      return this.#activate({ actor, trigger: 'restore', source: this.history.snapshotPath(found.version) });
    });
  }

  /**
   * follow swaps to the latest activated version in the history when another process (the CLI)
   * recorded it; it records nothing. Returns the version swapped to, if any.
   */
  follow(): Promise<string | undefined> {
    return this.#serial(async () => {
      const latest = await this.history.latestActivated();
      if (!latest?.version || latest.version === this.active.current.knowledge.version) return undefined;
      const outcome = await this.active.reload(this.history.snapshotPath(latest.version), { runTests: false });
      return outcome.swapped ? outcome.version : undefined;
    });
  }
}
