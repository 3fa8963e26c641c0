import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import { runNightly } from '../batch/nightly.ts';
import { loadConfig } from '../config/config.ts';
import { CairnError } from '../domain/errors.ts';
import { createCqlCompiler } from '../cql-engine/compiler.ts';
import { loadFhirR4Model } from '../cql-engine/fhir-model.ts';
import { loadPreparedKnowledge } from '../evaluate/knowledge-service.ts';
import { withWarehouse } from '../warehouse/database.ts';
import { ensureDemoPopulation } from '../warehouse/demo.ts';
import { measureSummaries, ruleCounts } from '../warehouse/results.ts';

interface BatchFlags {
  readonly knowledge?: string;
  readonly dataDir?: string;
  readonly config?: string;
  readonly at?: string;
  readonly demo: boolean;
  readonly workers: string;
  /** true with --trust-meta-profile, false with --no-trust-meta-profile, else undefined (the configuration decides). */
  readonly trustMetaProfile?: boolean;
}

/** registerBatchCommand adds `cairn batch`: the nightly job, run now. */
export function registerBatchCommand(program: Command): void {
  program
    .command('batch')
    .description('run the nightly job now: ingest from the configured sources, evaluate every patient in the analytical database against the active batch rules and publish alerts and care gaps')
    .option('--at <datetime>', 'evaluation instant (CQL Now()), e.g. 2026-03-01T02:00:00Z (default: now)')
    .option('--knowledge <dir>', 'knowledge folder (default: CAIRN_KNOWLEDGE_DIR or .)')
    .option('--data-dir <dir>', 'data folder holding cairn.duckdb (default: CAIRN_DATA_DIR or ./data)')
    .option('--config <file>', 'configuration file (default: ./cairn.config.json when present)')
    .option('--demo', 'first generate and ingest 1,000 synthetic patients when the database is empty', false)
    .option('--workers <n>', 'worker threads evaluating patients (0: on the main thread)', String(availableParallelism()))
    .option('--trust-meta-profile', 'a measure retrieve of a profile only returns resources whose meta.profile lists it (QI-Core eCQMs need it; default: config batch.trustMetaProfile or CAIRN_TRUST_META_PROFILE, else off)')
    .option('--no-trust-meta-profile', 'match measure retrieves by resource type alone, whatever the configuration says')
    .action(async (flags: BatchFlags) => {
      const config = loadConfig({ flags: { knowledgeDir: flags.knowledge, dataDir: flags.dataDir, config: flags.config, trustMetaProfile: flags.trustMetaProfile }, env: process.env, cwd: process.cwd() });
      const evaluatedAt = flags.at ?? new Date().toISOString();
      if (!Number.isInteger(Number(flags.workers)) || Number(flags.workers) < 0) throw new CairnError('INPUT_INVALID', `--workers ${flags.workers} is not a whole number`);
      if (Number.isNaN(Date.parse(evaluatedAt))) throw new CairnError('INPUT_INVALID', `--at ${evaluatedAt} is not an ISO 8601 date-time`);
      const prepared = await loadPreparedKnowledge(config.knowledgeDir, { compiler: createCqlCompiler({ cacheDir: config.elmCacheDir }), model: loadFhirR4Model() });
      console.log(`knowledge ${prepared.knowledge.version}: ${prepared.rulesFor(undefined).length} batch rules`);
      if (flags.demo) {
        const loaded = await ensureDemoPopulation({ path: config.databasePath, now: new Date() });
        if (loaded) console.log(`generated and ingested a synthetic demo population: ${loaded.loaded} resources`);
      }
      await withWarehouse({ path: config.databasePath }, async (warehouse) => {
        const { ingests, run: summary } = await runNightly(warehouse, prepared, {
          sources: config.ingest,
          evaluatedAt,
          now: () => new Date(),
          workers: Number(flags.workers),
          trustMetaProfile: config.batch.trustMetaProfile,
          log: (event, detail) => process.stderr.write(`${JSON.stringify({ component: 'ingest', event, ...detail })}\n`),
          ...(process.stderr.isTTY ? { onProgress: (done: number, total: number) => process.stderr.write(`\revaluated ${done}/${total} patients${done === total ? '\n' : ''}`) } : {}),
        });
        for (const counts of ingests) console.log(`ingested: read ${counts.read}, loaded ${counts.loaded}, replaced ${counts.replaced}, deleted ${counts.deleted}, quarantined ${counts.quarantined}`);
        console.log(`run ${summary.runId} published: ${summary.patients} patients, ${summary.alerts} alerts, ${summary.careGaps} care gaps, ${summary.errors} rule errors`);
        for (const { measure, report } of await measureSummaries(warehouse, summary.runId)) console.log(`  ${describeSummary(measure, report)}`);
        const rows = await ruleCounts(warehouse, summary.runId);
        const width = Math.max(40, ...rows.map((row) => row.ruleId.length));
        for (const row of rows) {
          console.log(`  ${row.ruleId.padEnd(width)} ${String(row.alerts).padStart(6)} alerts ${String(row.careGaps).padStart(6)} care gaps ${String(row.errors).padStart(4)} errors`);
        }
      });
    });
}

interface SummaryShape {
  group?: { population?: { code?: { coding?: { code?: string }[] }; count?: number }[]; measureScore?: { value?: number } }[];
  improvementNotation?: { coding?: { code?: string }[] };
}

/** describeSummary renders a summary MeasureReport's first group as one line: rate, numerator/denominator, direction. */
function describeSummary(measure: string, report: unknown): string {
  const summary = report as SummaryShape;
  const group = summary.group?.[0];
  const count = (code: string): number => group?.population?.find((p) => p.code?.coding?.[0]?.code === code)?.count ?? 0;
  const score = group?.measureScore?.value;
  const direction = summary.improvementNotation?.coding?.[0]?.code === 'decrease' ? 'lower is better' : 'higher is better';
  const eligible = count('denominator') - count('denominator-exclusion') - count('denominator-exception');
  return `${measure.split('/').pop()}: ${score === undefined ? 'no score' : `${(score * 100).toFixed(1)}%`} (numerator ${count('numerator')} of ${eligible}; ${direction})`;
}
