import { existsSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { KNOWLEDGE_FOLDERS } from '../knowledge/load.ts';

export interface Watching {
  close(): void;
}

/**
 * debounce calls `fn` once `ms` after the last of a burst of calls (an editor saving several files,
 * a `git checkout`), never while a previous call is still running.
 */
function debounce(fn: () => Promise<void>, ms: number): { call(): void; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let again = false;
  const fire = (): void => {
    timer = undefined;
    if (running) {
      again = true;
      return;
    }
    running = true;
    void fn().finally(() => {
      running = false;
      if (again) {
        again = false;
        fire();
      }
    });
  };
  return {
    call() {
      if (timer) clearTimeout(timer);
      timer = setTimeout(fire, ms);
    },
    cancel() {
      if (timer) clearTimeout(timer);
    },
  };
}

/**
 * watchKnowledge calls `onChange` (debounced by `debounceMs`) when anything under the knowledge
 * folders of `root` (cql/, value-sets/, rules/, measures/) changes. Folders created later are not
 * watched until the service restarts.
 */
export function watchKnowledge(root: string, onChange: () => Promise<void>, debounceMs = 1000): Watching {
  const debounced = debounce(onChange, debounceMs);
  const watchers: FSWatcher[] = [];
  for (const folder of Object.values(KNOWLEDGE_FOLDERS)) {
    const dir = path.join(root, folder);
    if (existsSync(dir)) watchers.push(watch(dir, { recursive: true }, () => debounced.call()));
  }
  return {
    close() {
      debounced.cancel();
      for (const w of watchers) w.close();
    },
  };
}

/** watchFile calls `onChange` (debounced) when the file `name` in `dir` is written or replaced. */
export function watchFile(dir: string, name: string, onChange: () => Promise<void>, debounceMs = 300): Watching {
  const debounced = debounce(onChange, debounceMs);
  const watcher = existsSync(dir) ? watch(dir, (_event, changed) => changed === name && debounced.call()) : undefined;
  return {
    close() {
      debounced.cancel();
      watcher?.close();
    },
  };
}
