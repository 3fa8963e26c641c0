import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { CairnError, type Problem } from '../domain/errors.ts';

/**
 * Cairn's settings: defaults, then the config file (`cairn.config.json` in the working folder, or
 * `--config FILE`), then environment variables, then command-line flags. Parsed once into a frozen
 * object; a bad configuration lists every problem at once.
 */
const FileSchema = z.strictObject({
  $schema: z.string().optional(),
  /** Folder holding `cql/`, `rules/` and `value-sets/`. */
  knowledgeDir: z.string().min(1).optional(),
  /** Folder for the DuckDB file, the ELM cache and other state. */
  dataDir: z.string().min(1).optional(),
  /** The analytical database file; default `<dataDir>/cairn.duckdb`. */
  database: z.string().min(1).optional(),
  server: z
    .strictObject({
      host: z.string().min(1).optional(),
      port: z.number().int().min(0).max(65_535).optional(),
      /** The URL EHRs call (behind a proxy); JWT audiences are this plus the path. */
      publicBaseUrl: z.url().optional(),
      /** Browser origins allowed by CORS (echoed back, never `*`). */
      corsOrigins: z.array(z.url()).optional(),
      bodyLimitBytes: z.number().int().min(1_024).max(100 * 1024 * 1024).optional(),
      /** Time budget for fetching missing prefetch data from the EHR's FHIR server. */
      fhirBudgetMs: z.number().int().min(50).max(30_000).optional(),
      /** CDS service calls evaluated at once; more get 503 with Retry-After. */
      maxInFlight: z.number().int().min(1).max(10_000).optional(),
      /** Worker threads that evaluate CDS calls; 0 evaluates on the HTTP thread. Default: one per core. */
      evaluationThreads: z.number().int().min(0).max(256).optional(),
    })
    .optional(),
  /** CDS client authentication (see README); `CAIRN_AUTH=off` switches it off for local trials. */
  auth: z.unknown().optional(),
  /** Folder of client configuration files (`*.json`), added to `auth.clients`. */
  clientsDir: z.string().min(1).optional(),
  /** New data the nightly job ingests before it evaluates. */
  ingest: z
    .strictObject({
      /** NDJSON / Bundle files or folders, read again each night (ingest is idempotent). */
      paths: z.array(z.string().min(1)).optional(),
      /** A FHIR Bulk Data server: system or Group `$export`, incremental with `_since`. */
      bulk: z.strictObject({ url: z.url(), tokenFile: z.string().min(1).optional(), types: z.array(z.string().min(1)).optional() }).optional(),
    })
    .optional(),
  /** When the nightly job runs (node-cron syntax, local time). */
  schedule: z.string().min(1).optional(),
  /** How the nightly job (`cairn batch`, and `cairn serve` on its schedule) evaluates. */
  batch: z
    .strictObject({
      /**
       * Measure retrieves of a profile return only resources whose meta.profile lists it (as
       * fqm-execution does); published QI-Core eCQMs such as CMS104 and CMS165 need it. Default false.
       */
      trustMetaProfile: z.boolean().optional(),
    })
    .optional(),
});

export interface Config {
  readonly knowledgeDir: string;
  readonly dataDir: string;
  readonly databasePath: string;
  readonly elmCacheDir: string;
  readonly configFile: string | undefined;
  readonly server: {
    readonly host: string;
    readonly port: number;
    readonly publicBaseUrl: string;
    readonly corsOrigins: readonly string[];
    readonly bodyLimitBytes: number;
    readonly fhirBudgetMs: number;
    readonly maxInFlight: number;
    readonly evaluationThreads: number;
  };
  /** The raw `auth` section, parsed by the CDS Hooks authentication module; `off` when CAIRN_AUTH=off. */
  readonly auth: { readonly raw: unknown; readonly off: boolean };
  readonly clientsDir: string;
  /** Whether the config file names clientsDir (a named folder must exist; the default one may be absent). */
  readonly clientsDirConfigured: boolean;
  readonly ingest: {
    readonly paths?: readonly string[];
    readonly bulk?: { readonly url: string; readonly tokenFile?: string; readonly types?: readonly string[] };
  };
  readonly schedule: string;
  readonly batch: {
    /** Measure retrieves trust `meta.profile` (runBatch's `trustMetaProfile`). */
    readonly trustMetaProfile: boolean;
  };
}

export interface ConfigInputs {
  readonly flags?: Partial<Record<'knowledgeDir' | 'dataDir' | 'config', string | undefined>> & { readonly trustMetaProfile?: boolean | undefined };
  /** The environment; passed in so nothing below main reads process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
}

export const DEFAULT_CONFIG_FILE = 'cairn.config.json';

function readConfigFile(file: string, required: boolean, problems: Problem[]): z.infer<typeof FileSchema> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if (required || (error as NodeJS.ErrnoException).code !== 'ENOENT') problems.push({ code: 'CONFIG_INVALID', file, message: `cannot read the config file: ${(error as Error).message}` });
    return {};
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    problems.push({ code: 'CONFIG_INVALID', file, message: `not valid JSON: ${(error as Error).message}` });
    return {};
  }
  const parsed = FileSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) problems.push({ code: 'CONFIG_INVALID', file, path: ['$', ...issue.path.map(String)].join('.'), message: issue.message });
  return validSections(json);
}

/**
 * validSections keeps the sections of a file that failed its schema which are valid on their own,
 * so that checks reading them (`cairn serve`'s clients and schedule) add their problems to the same
 * report instead of showing up one failed start later.
 */
function validSections(json: unknown): z.infer<typeof FileSchema> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return {};
  const sections: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(FileSchema.shape)) {
    if (!(key in json)) continue;
    const section = schema.safeParse((json as Record<string, unknown>)[key]);
    if (section.success) sections[key] = section.data;
  }
  return sections as z.infer<typeof FileSchema>;
}

function envNumber(env: Readonly<Record<string, string | undefined>>, name: string, problems: Problem[]): number | undefined {
  const value = env[name];
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65_535) {
    problems.push({ code: 'CONFIG_INVALID', path: name, message: `environment variable ${name}="${value}" is not a port number` });
    return undefined;
  }
  return n;
}

const ENV_BOOLEANS: Readonly<Record<string, boolean>> = { on: true, true: true, off: false, false: false };

function envBoolean(env: Readonly<Record<string, string | undefined>>, name: string, problems: Problem[]): boolean | undefined {
  const value = env[name];
  if (value === undefined || value === '') return undefined;
  const flag = ENV_BOOLEANS[value.toLowerCase()];
  if (flag === undefined) problems.push({ code: 'CONFIG_INVALID', path: name, message: `environment variable ${name}="${value}" must be "on" or "off" (or "true" / "false")` });
  return flag;
}

/** loadConfig resolves every setting or throws CONFIG_INVALID listing every problem. */
export function loadConfig(inputs: ConfigInputs): Config {
  const { config, problems } = resolveConfig(inputs);
  throwIfProblems(problems);
  return config;
}

/** throwIfProblems throws one CONFIG_INVALID listing every problem, if there are any. */
export function throwIfProblems(problems: readonly Problem[]): void {
  if (problems.length > 0) throw new CairnError('CONFIG_INVALID', `configuration is invalid (${problems.length} problem(s))`, { problems });
}

/**
 * resolveConfig resolves every setting and lists the problems found; a setting with a problem keeps
 * its default, so a command with checks of its own (`cairn serve`: clients, schedule) can add their
 * problems to these and report all of them at once.
 */
export function resolveConfig({ flags = {}, env = {}, cwd }: ConfigInputs): { config: Config; problems: Problem[] } {
  const problems: Problem[] = [];
  const explicitFile = flags.config ?? env.CAIRN_CONFIG;
  const configFile = path.resolve(cwd, explicitFile ?? DEFAULT_CONFIG_FILE);
  const file = readConfigFile(configFile, explicitFile !== undefined, problems);
  const fromFile = (p: string | undefined): string | undefined => (p === undefined ? undefined : path.resolve(path.dirname(configFile), p));

  const knowledgeDir = path.resolve(cwd, flags.knowledgeDir ?? env.CAIRN_KNOWLEDGE_DIR ?? fromFile(file.knowledgeDir) ?? '.');
  const dataDir = path.resolve(cwd, flags.dataDir ?? env.CAIRN_DATA_DIR ?? fromFile(file.dataDir) ?? 'data');
  // An empty HOST is unset, as an empty PORT is: the file (else the default) decides.
  const host = env.HOST || file.server?.host || '127.0.0.1';
  const port = envNumber(env, 'PORT', problems) ?? file.server?.port ?? 8080;
  const authSetting = env.CAIRN_AUTH;
  if (authSetting !== undefined && authSetting !== 'off' && authSetting !== 'on') {
    problems.push({ code: 'CONFIG_INVALID', path: 'CAIRN_AUTH', message: `CAIRN_AUTH="${authSetting}" must be "off" (local trials only) or "on"` });
  }
  const corsFromEnv = env.CAIRN_CORS_ORIGINS?.split(',').map((o) => o.trim()).filter(Boolean);
  const publicBaseUrl = env.CAIRN_PUBLIC_URL ?? file.server?.publicBaseUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (!z.url().safeParse(publicBaseUrl).success) problems.push({ code: 'CONFIG_INVALID', path: 'CAIRN_PUBLIC_URL', message: `"${publicBaseUrl}" is not a URL` });
  const trustFromEnv = envBoolean(env, 'CAIRN_TRUST_META_PROFILE', problems);
  const trustMetaProfile = flags.trustMetaProfile ?? trustFromEnv ?? file.batch?.trustMetaProfile ?? false;

  const config: Config = Object.freeze({
    knowledgeDir,
    dataDir,
    databasePath: path.resolve(cwd, env.CAIRN_DATABASE ?? fromFile(file.database) ?? path.join(dataDir, 'cairn.duckdb')),
    elmCacheDir: path.join(dataDir, 'elm-cache'),
    configFile,
    server: Object.freeze({
      host,
      port,
      publicBaseUrl,
      corsOrigins: Object.freeze(corsFromEnv ?? file.server?.corsOrigins ?? []),
      bodyLimitBytes: file.server?.bodyLimitBytes ?? 5 * 1024 * 1024,
      fhirBudgetMs: file.server?.fhirBudgetMs ?? 1500,
      maxInFlight: file.server?.maxInFlight ?? 64,
      evaluationThreads: file.server?.evaluationThreads ?? availableParallelism(),
    }),
    auth: Object.freeze({ raw: file.auth, off: authSetting === 'off' }),
    clientsDir: path.resolve(cwd, fromFile(file.clientsDir) ?? 'config/clients'),
    clientsDirConfigured: file.clientsDir !== undefined,
    ingest: Object.freeze({
      ...(file.ingest?.paths ? { paths: Object.freeze(file.ingest.paths.map((p) => fromFile(p) ?? p)) } : {}),
      ...(file.ingest?.bulk ? { bulk: Object.freeze({ ...file.ingest.bulk, ...(file.ingest.bulk.tokenFile ? { tokenFile: fromFile(file.ingest.bulk.tokenFile) } : {}) }) } : {}),
    }),
    schedule: env.CAIRN_SCHEDULE ?? file.schedule ?? '0 2 * * *',
    batch: Object.freeze({ trustMetaProfile }),
  });
  return { config, problems };
}
