import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { ActivationHistory } from '../authoring/history.ts';
import { formatPreview, previewImpact } from '../authoring/preview.ts';
import { loadConfig } from '../config/config.ts';
import { CairnError } from '../domain/errors.ts';
import { createCqlCompiler } from '../cql-engine/compiler.ts';
import { loadFhirR4Model } from '../cql-engine/fhir-model.ts';
import { loadPreparedKnowledge } from '../evaluate/knowledge-service.ts';
import { withWarehouse } from '../warehouse/database.ts';

interface PreviewFlags {
  readonly knowledge: string;
  readonly baseline?: string;
  readonly dataDir?: string;
  readonly config?: string;
  readonly at?: string;
  readonly patients?: string;
  readonly samples: string;
  readonly measures: boolean;
  readonly json: boolean;
}

const Instant = z.iso.datetime({ offset: true });

function wholeNumber(flag: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new CairnError('INPUT_INVALID', `${flag} ${value} is not a whole number ≥ ${min}`);
  return n;
}

/**
 * baselineFolder is what `preview` compares against: --baseline, else the snapshot of the latest
 * activation (what the service serves), else the configured knowledge folder.
 */
async function baselineFolder(flags: PreviewFlags, dataDir: string, knowledgeDir: string): Promise<string> {
  if (flags.baseline) return flags.baseline;
  const latest = await new ActivationHistory(dataDir).latestActivated();
  const snapshot = latest?.version ? new ActivationHistory(dataDir).snapshotPath(latest.version) : undefined;
  return snapshot && existsSync(snapshot) ? snapshot : knowledgeDir;
}

/** registerPreviewCommand adds `cairn preview`: the impact of a changed knowledge folder on the stored population, without publishing. */
export function registerPreviewCommand(program: Command): void {
  program
    .command('preview')
    .description('evaluate a changed knowledge folder against the population in the analytical database (read-only, nothing published) and report per rule the patients, alerts, cards and care gaps it would produce compared with the active knowledge')
    .requiredOption('--knowledge <dir>', 'the changed knowledge folder to preview')
    .option('--baseline <dir>', 'knowledge to compare with (default: the last activated snapshot, else CAIRN_KNOWLEDGE_DIR or .)')
    .option('--at <datetime>', 'evaluation instant (CQL Now()), e.g. 2026-03-01T02:00:00Z (default: now)')
    .option('--patients <n>', 'evaluate only the first N patients (by id)')
    .option('--samples <n>', 'sample patient ids listed per difference', '5')
    .option('--no-measures', 'skip measures (faster; their care gaps are not compared)')
    .option('--json', 'print the report as JSON', false)
    .option('--data-dir <dir>', 'data folder holding cairn.duckdb (default: CAIRN_DATA_DIR or ./data)')
    .option('--config <file>', 'configuration file (default: ./cairn.config.json when present)')
    .action(async (flags: PreviewFlags) => {
      const config = loadConfig({ flags: { dataDir: flags.dataDir, config: flags.config }, env: process.env, cwd: process.cwd() });
      const evaluatedAt = flags.at ?? new Date().toISOString();
      if (!Instant.safeParse(evaluatedAt).success) throw new CairnError('INPUT_INVALID', `--at ${evaluatedAt} is not an ISO 8601 instant with a time zone (e.g. 2026-03-01T02:00:00Z)`);
      const limit = flags.patients === undefined ? undefined : wholeNumber('--patients', flags.patients, 1);
      const samples = wholeNumber('--samples', flags.samples, 0);
      const deps = { compiler: createCqlCompiler({ cacheDir: config.elmCacheDir }), model: loadFhirR4Model() };
      const baselineDir = await baselineFolder(flags, config.dataDir, config.knowledgeDir);
      const candidate = await loadPreparedKnowledge(flags.knowledge, deps);
      const baseline = await loadPreparedKnowledge(baselineDir, deps);
      const report = await withWarehouse({ path: config.databasePath, readOnly: true }, (warehouse) =>
        previewImpact(warehouse, baseline, candidate, {
          evaluatedAt,
          samples,
          measures: flags.measures,
          ...(limit !== undefined ? { limit } : {}),
          ...(process.stderr.isTTY ? { onProgress: (done: number) => process.stderr.write(`\rpreviewed ${done} patients`) } : {}),
        }),
      );
      if (process.stderr.isTTY) process.stderr.write('\n');
      if (flags.json) console.log(JSON.stringify({ baseline: baselineDir, candidate: flags.knowledge, ...report }, null, 2));
      else for (const line of [`baseline: ${baselineDir}`, ...formatPreview(report)]) console.log(line);
    });
}
