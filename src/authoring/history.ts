/**
 * The activation history: which knowledge version serves, who activated it, when, and how its rules
 * differ from the set before. Stored as files under the data folder, so the CLI can record and
 * restore while the service runs (DuckDB would be locked by the service):
 *
 * - `<dataDir>/knowledge-activations.jsonl`: one JSON record per line, appended, never rewritten;
 * - `<dataDir>/knowledge-snapshots/<version>/`: an immutable copy of each activated set (cql/,
 *   value-sets/, rules/ with their tests, measures/); restoring a version activates its snapshot.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, cp, mkdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { KNOWLEDGE_FOLDERS } from '../knowledge/load.ts';
import type { KnowledgeSet } from '../knowledge/knowledge-set.ts';

export const ACTIVATION_LOG = 'knowledge-activations.jsonl';
export const SNAPSHOT_DIR = 'knowledge-snapshots';

/** What asked for an activation. */
export const TRIGGERS = ['start', 'cli', 'signal', 'api', 'watch', 'restore'] as const;
export type Trigger = (typeof TRIGGERS)[number];

const RuleVersion = z.strictObject({ id: z.string(), version: z.string() });

/** How the rules of two knowledge sets differ, by rule id and rule version. */
export const RuleDiffSchema = z.strictObject({
  added: z.array(RuleVersion),
  removed: z.array(RuleVersion),
  changed: z.array(z.strictObject({ id: z.string(), from: z.string(), to: z.string() })),
  /** Rules whose file changed while their version did not (authors should bump the version). */
  unversioned: z.array(z.string()),
});
export type RuleDiff = z.infer<typeof RuleDiffSchema>;

/** One line of the activation log. */
export const ActivationRecordSchema = z.strictObject({
  at: z.string(),
  actor: z.string(),
  trigger: z.enum(TRIGGERS),
  outcome: z.enum(['activated', 'refused']),
  /** Content hash of the candidate set; absent when it could not even be loaded. */
  version: z.string().optional(),
  previousVersion: z.string().optional(),
  /** The folder the set was read from. */
  source: z.string(),
  /** The snapshot folder (relative to the data folder) that serves this version. */
  snapshot: z.string().optional(),
  /** Every rule of the set: id -> version. */
  rules: z.record(z.string(), z.string()).optional(),
  diff: RuleDiffSchema.optional(),
  tests: z.strictObject({ cases: z.number(), passed: z.number(), failed: z.number() }).optional(),
  /** Why a refused set was refused (formatted problems, at most 50). */
  problems: z.array(z.string()).optional(),
});
export type ActivationRecord = z.infer<typeof ActivationRecordSchema>;

/** A set's rules by id: version, and the hash of the rule file when known. */
export type RuleIndex = ReadonlyMap<string, { readonly version: string; readonly sha256?: string }>;

/** indexRules indexes the rules of a loaded set. */
export function indexRules(set: KnowledgeSet): RuleIndex {
  const hashes = new Map(set.files.map((f) => [f.file, f.sha256]));
  return new Map(set.rules.map((r) => [r.rule.id, { version: r.rule.version, ...(hashes.has(r.file) ? { sha256: hashes.get(r.file)! } : {}) }]));
}

/** indexRecord indexes the rules an activation record lists (versions only). */
export function indexRecord(record: ActivationRecord | undefined): RuleIndex {
  return new Map(Object.entries(record?.rules ?? {}).map(([id, version]) => [id, { version }]));
}

/** ruleDiff compares the rules of two sets by id and version. */
export function ruleDiff(before: RuleIndex, after: RuleIndex): RuleDiff {
  const diff: RuleDiff = { added: [], removed: [], changed: [], unversioned: [] };
  for (const [id, r] of after) {
    const was = before.get(id);
    if (!was) diff.added.push({ id, version: r.version });
    else if (was.version !== r.version) diff.changed.push({ id, from: was.version, to: r.version });
    else if (was.sha256 && r.sha256 && was.sha256 !== r.sha256) diff.unversioned.push(id);
  }
  for (const [id, r] of before) if (!after.has(id)) diff.removed.push({ id, version: r.version });
  return diff;
}

/** rulesOf maps every rule id of a set to its version. */
export function rulesOf(set: KnowledgeSet): Record<string, string> {
  return Object.fromEntries(set.rules.map((r) => [r.rule.id, r.rule.version]));
}

/** describeDiff renders a rule diff in one line, e.g. `+a@1.0.0 -b@1.0.0 ~c 1.0.0→1.1.0`. */
export function describeDiff(diff: RuleDiff): string {
  const parts = [
    ...diff.added.map((r) => `+${r.id}@${r.version}`),
    ...diff.removed.map((r) => `-${r.id}@${r.version}`),
    ...diff.changed.map((r) => `~${r.id} ${r.from}→${r.to}`),
    ...diff.unversioned.map((id) => `!${id} (changed, same version)`),
  ];
  return parts.length ? parts.join(' ') : 'no rule changes';
}

/**
 * ActivationHistory reads and appends the activation log and keeps the snapshots, all under one
 * data folder. Appends are single `write` calls of one line, so the CLI and the service may both
 * append.
 */
export class ActivationHistory {
  readonly dataDir: string;

  constructor(dataDir: string) {
    this.dataDir = path.resolve(dataDir);
  }

  get logFile(): string {
    return path.join(this.dataDir, ACTIVATION_LOG);
  }

  /** snapshotPath is where the snapshot of `version` lives (it may not exist). */
  snapshotPath(version: string): string {
    return path.join(this.dataDir, SNAPSHOT_DIR, version);
  }

  /** records returns every record, oldest first; unreadable lines are skipped (a torn last line). */
  async records(): Promise<ActivationRecord[]> {
    let text: string;
    try {
      text = await readFile(this.logFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const out: ActivationRecord[] = [];
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const parsed = ActivationRecordSchema.safeParse(JSON.parse(line));
        if (parsed.success) out.push(parsed.data);
      } catch {
        // A line cut short by a crash mid-append: the records before and after it still count.
      }
    }
    return out;
  }

  /** latestActivated is the newest record that activated a set (what serves). */
  async latestActivated(): Promise<ActivationRecord | undefined> {
    return (await this.records()).filter((r) => r.outcome === 'activated').at(-1);
  }

  async append(record: ActivationRecord): Promise<void> {
    await mkdir(this.dataDir, { recursive: true });
    await appendFile(this.logFile, `${JSON.stringify(ActivationRecordSchema.parse(record))}\n`);
  }

  /**
   * stage copies the knowledge folders of `source` to a fresh staging folder, so what is checked
   * is exactly what will serve even if an author keeps editing `source`.
   */
  async stage(source: string): Promise<string> {
    const staging = path.join(this.dataDir, SNAPSHOT_DIR, `.staging-${randomUUID()}`);
    await mkdir(staging, { recursive: true });
    for (const folder of Object.values(KNOWLEDGE_FOLDERS)) {
      const from = path.join(source, folder);
      if (existsSync(from)) await cp(from, path.join(staging, folder), { recursive: true });
    }
    return staging;
  }

  /** keep turns a staging folder into the snapshot of `version` (the first snapshot of a version wins). */
  async keep(staging: string, version: string): Promise<string> {
    const target = this.snapshotPath(version);
    if (existsSync(target)) await rm(staging, { recursive: true, force: true });
    else await rename(staging, target);
    return target;
  }

  async discard(staging: string): Promise<void> {
    await rm(staging, { recursive: true, force: true });
  }

  /**
   * findVersion resolves what `cairn restore` means: the given version (a unique prefix is
   * enough), or by default the newest activated version other than `current`. Only versions
   * whose snapshot exists qualify.
   */
  async findVersion(wanted: string | undefined, current: string | undefined): Promise<{ version: string } | { error: string }> {
    const activated = (await this.records()).filter((r) => r.outcome === 'activated' && r.version && existsSync(this.snapshotPath(r.version)));
    const versions = [...new Set(activated.map((r) => r.version!).reverse())];
    if (wanted === undefined) {
      const previous = versions.find((v) => v !== current);
      return previous ? { version: previous } : { error: 'no earlier activated version has a snapshot to restore' };
    }
    const matches = versions.filter((v) => v.startsWith(wanted));
    if (matches.length === 1) return { version: matches[0]! };
    if (matches.length > 1) return { error: `version "${wanted}" is ambiguous: ${matches.join(', ')}` };
    return { error: `no activated version "${wanted}" with a snapshot; known: ${versions.join(', ') || 'none'}` };
  }
}
