import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import cron from 'node-cron';
import { runNightly } from '../batch/nightly.ts';
import { createClientAuthenticator, parseAuthConfig, readClientConfigFiles, type ClientAuthenticator } from '../cds-hooks/auth/index.ts';
import { resolveConfig, throwIfProblems, type Config } from '../config/config.ts';
import { ACCESS_OFF_WARNING, readDashboardAccess } from '../dashboards/access.ts';
import { CairnError, formatProblem, type Problem } from '../domain/errors.ts';
import { createCqlCompiler } from '../cql-engine/compiler.ts';
import { loadFhirR4Model } from '../cql-engine/fhir-model.ts';
import { KnowledgeActivation } from '../authoring/activation.ts';
import { ActivationHistory, ACTIVATION_LOG } from '../authoring/history.ts';
import { watchFile, watchKnowledge, type Watching } from '../authoring/watch.ts';
import { buildApp } from '../http/app.ts';
import { servingFlagsMissing, tuneHeapForServing } from '../http/heap.ts';
import { createEvaluationPool } from '../cds-hooks/evaluation-pool.ts';
import { createCdsStore } from '../warehouse/cds-store.ts';
import { openWarehouse } from '../warehouse/database.ts';
import { ensureDemoPopulation } from '../warehouse/demo.ts';
import { readPatientResources } from '../warehouse/patient-data.ts';

interface ServeFlags {
  readonly knowledge?: string;
  readonly dataDir?: string;
  readonly config?: string;
  readonly demo: boolean;
  readonly schedule?: string;
  readonly watch: boolean;
}

/**
 * serveSettings checks what only `cairn serve` needs (trusted CDS clients, the batch schedule) and
 * adds every problem to the configuration's own, so one failed start lists them all.
 */
async function serveSettings(config: Config, problems: Problem[], scheduleFlag: string | undefined): Promise<{ authenticator: ClientAuthenticator; schedule: string }> {
  const schedule = scheduleFlag ?? config.schedule;
  if (!cron.validate(schedule)) problems.push({ code: 'CONFIG_INVALID', path: scheduleFlag === undefined ? '$.schedule' : '--schedule', message: `"${schedule}" is not a valid cron expression` });
  const authenticator = config.auth.off ? createClientAuthenticator(parseAuthConfig({ mode: 'off' }), { now: Date.now }) : await requiredAuthenticator(config, problems);
  throwIfProblems(problems);
  // No problems: the clients were read and parsed, so there is an authenticator.
  return { authenticator: authenticator!, schedule };
}

/** requiredAuthenticator reads the trusted clients (the config's `auth.clients`, then `clientsDir`'s files), adding any problem to `problems`. */
async function requiredAuthenticator(config: Config, problems: Problem[]): Promise<ClientAuthenticator | undefined> {
  const raw: unknown = config.auth.raw ?? {};
  // Problems name the config file only when there is one (the default name may not exist).
  const file = config.configFile !== undefined && existsSync(config.configFile) ? config.configFile : undefined;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    problems.push({ code: 'CONFIG_INVALID', file, path: '$.auth', message: 'must be an object' });
    return undefined;
  }
  // The default folder may be absent (a start from another folder); one the config names may not.
  let fileClients: readonly unknown[] | undefined = [];
  if (existsSync(config.clientsDir)) fileClients = await configProblems(problems, () => readClientConfigFiles(config.clientsDir));
  else if (config.clientsDirConfigured) problems.push({ code: 'CONFIG_INVALID', file, path: '$.clientsDir', message: `folder ${config.clientsDir} does not exist` });
  const inline: unknown = (raw as { clients?: unknown }).clients ?? [];
  // Inline clients that are not a list are reported by the schema, as they are.
  const clients = Array.isArray(inline) && fileClients ? [...(inline as unknown[]), ...fileClients] : inline;
  const auth = await configProblems(problems, async () => parseAuthConfig({ mode: 'required', ...raw, clients }, { ...(file ? { file } : {}), pathPrefix: '$.auth' }));
  if (!auth) return undefined;
  const authenticator = createClientAuthenticator(auth, { now: Date.now });
  await configProblems(problems, () => authenticator.ready());
  return authenticator;
}

/** configProblems runs a check that may throw CONFIG_INVALID, adding its problems to `problems` (undefined then). */
async function configProblems<T>(problems: Problem[], check: () => Promise<T>): Promise<T | undefined> {
  try {
    return await check();
  } catch (error) {
    if (!(error instanceof CairnError && error.code === 'CONFIG_INVALID')) throw error;
    problems.push(...error.problems);
    return undefined;
  }
}

/** registerServeCommand adds `cairn serve`: the CDS Hooks service plus the scheduled nightly job. */
export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('serve CDS Hooks (and run the nightly batch on its schedule) over the knowledge and the analytical database')
    .option('--knowledge <dir>', 'knowledge folder (default: CAIRN_KNOWLEDGE_DIR or .)')
    .option('--data-dir <dir>', 'data folder (default: CAIRN_DATA_DIR or ./data)')
    .option('--config <file>', 'configuration file (default: ./cairn.config.json when present)')
    .option('--demo', 'generate and ingest 1,000 synthetic patients when the database is empty, and run the batch once if it never ran', false)
    .option('--schedule <cron>', 'when the nightly batch runs (node-cron syntax, local time; default: config schedule or 02:00)')
    .option('--no-watch', 'do not activate the knowledge folder when its files change (SIGHUP and the admin API still do)')
    .action(async (flags: ServeFlags) => {
      const { config, problems } = resolveConfig({ flags: { knowledgeDir: flags.knowledge, dataDir: flags.dataDir, config: flags.config }, env: process.env, cwd: process.cwd() });
      const { authenticator, schedule } = await serveSettings(config, problems, flags.schedule);
      const history = new ActivationHistory(config.dataDir);
      const { activation, notes } = await KnowledgeActivation.start(config.knowledgeDir, { compiler: createCqlCompiler({ cacheDir: config.elmCacheDir }), model: loadFhirR4Model() }, history, {
        now: () => new Date(),
        actor: 'cairn serve',
      });
      const knowledge = activation.active;
      if (flags.demo) await ensureDemoPopulation({ path: config.databasePath, now: new Date() });
      const warehouse = await openWarehouse({ path: config.databasePath });
      // Audit records are written behind the responses; a failed write is logged once the app (and its logger) exists.
      const flushFailed: { log?: (error: unknown, givenUp: number) => void } = {};
      const store = await createCdsStore(warehouse, { onFlushError: (error, givenUp) => flushFailed.log?.(error, givenUp) });
      const reader = { ...warehouse, connection: await warehouse.connect() };

      // Until config.ts carries a `dashboards` section: config/dashboards.json (users, OIDC issuer).
      const access = await readDashboardAccess(path.resolve('config/dashboards.json'), { off: config.auth.off });
      tuneHeapForServing();
      const evaluator = config.server.evaluationThreads > 0 ? createEvaluationPool(config.server.evaluationThreads) : undefined;
      const app = await buildApp({
        logger: { level: 'info' },
        corsOrigins: config.server.corsOrigins,
        bodyLimit: config.server.bodyLimitBytes,
        cdsHooks: {
          knowledge: () => knowledge.current,
          authenticator,
          store,
          now: () => new Date(),
          publicBaseUrl: config.server.publicBaseUrl,
          fhirBudgetMs: config.server.fhirBudgetMs,
          maxInFlight: config.server.maxInFlight,
          ...(evaluator ? { evaluator } : {}),
          localSource: (patientId, types, { medicationIds }) => readPatientResources(reader, patientId, types, medicationIds),
        },
        dashboards: {
          warehouse,
          access,
          now: () => new Date(),
          rules: () => knowledge.current.knowledge.rules.map(({ rule }) => ({ id: rule.id, title: rule.title })),
          measureInfo: () => knowledge.current.measures.map(({ definition }) => ({ id: definition.id, title: definition.title ?? definition.id })),
          secureCookie: config.server.publicBaseUrl.startsWith('https:'),
        },
        admin: { activation, access },
      });
      flushFailed.log = (error, givenUp) => app.log.error({ err: error, givenUp }, 'CDS Hooks audit records could not be written; they wait for the next write');
      const missingFlags = servingFlagsMissing(process.execArgv, process.env.NODE_OPTIONS);
      if (missingFlags.length > 0) app.log.info(`for the lowest latency start node with ${missingFlags.join(' ')} (npm start does; else NODE_OPTIONS="${missingFlags.join(' ')}")`);
      for (const note of notes) app.log.info(note);
      if (authenticator.warning) app.log.warn(authenticator.warning);
      if (access.off) app.log.warn(ACCESS_OFF_WARNING);

      let batchRunning = false;
      const nightly = async (): Promise<void> => {
        if (batchRunning) return app.log.warn('the nightly batch is still running; this run is skipped');
        batchRunning = true;
        try {
          const { ingests, run } = await runNightly(warehouse, knowledge.current, {
            sources: config.ingest,
            evaluatedAt: new Date().toISOString(),
            now: () => new Date(),
            workers: availableParallelism(),
            trustMetaProfile: config.batch.trustMetaProfile,
            log: (event, detail) => app.log.info({ ingest: event, ...detail }),
          });
          app.log.info({ run, ingests }, 'nightly batch published');
        } catch (error) {
          app.log.error({ err: error }, 'nightly batch failed; the previous run stays published');
        } finally {
          batchRunning = false;
        }
      };
      const task = cron.schedule(schedule, () => void nightly());

      const activate = async (actor: string, trigger: 'signal' | 'watch'): Promise<void> => {
        const result = await activation.activate({ actor, trigger });
        if (result.activated && result.unchanged) return;
        if (result.activated) app.log.info({ version: result.record.version, previous: result.record.previousVersion, diff: result.record.diff, tests: result.record.tests }, `knowledge activated (${trigger})`);
        else app.log.error({ problems: result.problems.map(formatProblem) }, `knowledge refused (${trigger}): ${result.message}; the previous knowledge keeps serving`);
      };
      process.on('SIGHUP', () => void activate('SIGHUP', 'signal'));
      const watching: Watching[] = [
        // `cairn activate` / `cairn restore` append to the history; follow them.
        watchFile(history.dataDir, ACTIVATION_LOG, async () => {
          const version = await activation.follow();
          if (version) app.log.info({ version }, 'knowledge switched to the version activated in the history');
        }),
        ...(flags.watch ? [watchKnowledge(config.knowledgeDir, () => activate('watch', 'watch'))] : []),
      ];
      const shutdown = async (): Promise<void> => {
        for (const w of watching) w.close();
        await task.stop();
        await app.close();
        await evaluator?.close();
        await store.close();
        reader.connection.closeSync();
        warehouse.close();
      };
      process.once('SIGINT', () => void shutdown());
      process.once('SIGTERM', () => void shutdown());

      await app.listen({ host: config.server.host, port: config.server.port });
      app.log.info(`knowledge ${knowledge.current.knowledge.version}; CDS Hooks discovery at ${config.server.publicBaseUrl}/cds-services; dashboards at ${config.server.publicBaseUrl}/dashboards/`);
      if (flags.demo) {
        const runs = await warehouse.connection.runAndReadAll(`SELECT count(*) FROM information_schema.tables WHERE table_name = 'batch_run'`);
        const hasRuns = Number(runs.getRowsJS()[0]?.[0] ?? 0) > 0 && Number((await warehouse.connection.runAndReadAll('SELECT count(*) FROM batch_run')).getRowsJS()[0]?.[0] ?? 0) > 0;
        if (!hasRuns) void nightly();
      }
    });
}
