import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { CairnError, type Problem } from '../../domain/errors.ts';
import { parseClientConfig, type ClientConfig } from './config.ts';

/**
 * readClientConfigFiles reads every `*.json` of a folder (e.g. `config/clients/`) as one client
 * entry each, in file-name order; every problem of every file is reported at once as CONFIG_INVALID.
 */
export async function readClientConfigFiles(dir: string): Promise<readonly ClientConfig[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.json')).sort();
  const clients: ClientConfig[] = [];
  const problems: Problem[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(file, 'utf8'));
    } catch (error) {
      problems.push({ code: 'CONFIG_INVALID', file, message: `not readable JSON: ${error instanceof Error ? error.message : String(error)}` });
      continue;
    }
    try {
      clients.push(parseClientConfig(raw, { file }));
    } catch (error) {
      if (!(error instanceof CairnError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length > 0) throw new CairnError('CONFIG_INVALID', `${problems.length} problem(s) in client files of ${dir}`, { problems });
  return Object.freeze(clients);
}
