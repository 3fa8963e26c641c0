/**
 * The skip list: one line per skipped test, `<suite>/<group>/<test> | <reason>`. Blank lines
 * and lines starting with `#` are comments. Every entry needs a reason, and an entry naming a
 * test that does not exist is an error, so the list cannot silently rot.
 */

export interface SkipList {
  /** reasons maps test id to why it is skipped. */
  readonly reasons: ReadonlyMap<string, string>;
  /** problems are malformed or duplicate lines, with their 1-based line numbers. */
  readonly problems: readonly string[];
}

/** parseSkipList reads the text of a skip list; it never throws, it reports problems. */
export function parseSkipList(text: string): SkipList {
  const reasons = new Map<string, string>();
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const bar = line.indexOf(' | ');
    const id = bar < 0 ? line : line.slice(0, bar).trim();
    const reason = bar < 0 ? '' : line.slice(bar + 3).trim();
    if (id.split('/').length !== 3) {
      problems.push(`line ${index + 1}: '${id}' is not <suite>/<group>/<test>`);
    } else if (reason === '') {
      problems.push(`line ${index + 1}: ${id} has no reason (write '<id> | <reason>')`);
    } else if (reasons.has(id)) {
      problems.push(`line ${index + 1}: ${id} is listed twice`);
    } else {
      reasons.set(id, reason);
    }
  });
  return { reasons, problems };
}

/** unknownSkips returns the skip-list ids that name no test in `knownIds`. */
export function unknownSkips(list: SkipList, knownIds: ReadonlySet<string>): string[] {
  return [...list.reasons.keys()].filter((id) => !knownIds.has(id));
}
