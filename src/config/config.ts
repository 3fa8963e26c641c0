import path from 'node:path';
import { z } from 'zod';
import { CairnError } from '../domain/errors.ts';

/** Settings every command shares. Parsed once, from flags over environment over defaults, then frozen. */
const ConfigSchema = z.strictObject({
  /** Folder holding `cql/`, `rules/` and `value-sets/`. */
  knowledgeDir: z.string().min(1),
  /** Folder for the DuckDB file, the ELM cache and other state. */
  dataDir: z.string().min(1),
});

export type Config = Readonly<z.infer<typeof ConfigSchema>> & { readonly elmCacheDir: string };

export interface ConfigInputs {
  readonly flags?: Partial<Record<'knowledgeDir' | 'dataDir', string | undefined>>;
  /** The environment (CAIRN_KNOWLEDGE_DIR, CAIRN_DATA_DIR); passed in so nothing below main reads process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
}

/** loadConfig resolves settings; every problem is reported at once as CONFIG_INVALID. */
export function loadConfig({ flags = {}, env = {}, cwd }: ConfigInputs): Config {
  const raw = {
    knowledgeDir: flags.knowledgeDir ?? env.CAIRN_KNOWLEDGE_DIR ?? '.',
    dataDir: flags.dataDir ?? env.CAIRN_DATA_DIR ?? 'data',
  };
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new CairnError('CONFIG_INVALID', 'configuration is invalid', {
      problems: parsed.error.issues.map((issue) => ({ code: 'CONFIG_INVALID', path: `$.${issue.path.join('.')}`, message: issue.message })),
    });
  }
  const knowledgeDir = path.resolve(cwd, parsed.data.knowledgeDir);
  const dataDir = path.resolve(cwd, parsed.data.dataDir);
  return Object.freeze({ knowledgeDir, dataDir, elmCacheDir: path.join(dataDir, 'elm-cache') });
}
