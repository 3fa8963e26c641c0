import os from 'node:os';
import type { Command } from 'commander';
import { activateOffline, type ActivationResult } from '../authoring/activation.ts';
import { ActivationHistory, describeDiff, type ActivationRecord } from '../authoring/history.ts';
import { loadConfig, type Config } from '../config/config.ts';
import { CairnError, formatProblem } from '../domain/errors.ts';
import { createCqlCompiler } from '../cql-engine/compiler.ts';
import { loadFhirR4Model } from '../cql-engine/fhir-model.ts';

interface ActivationFlags {
  readonly knowledge?: string;
  readonly dataDir?: string;
  readonly config?: string;
  readonly actor?: string;
}

function configFrom(flags: ActivationFlags): Config {
  return loadConfig({ flags: { knowledgeDir: flags.knowledge, dataDir: flags.dataDir, config: flags.config }, env: process.env, cwd: process.cwd() });
}

function common(command: Command): Command {
  return command
    .option('--data-dir <dir>', 'data folder holding the activation history and snapshots (default: CAIRN_DATA_DIR or ./data)')
    .option('--config <file>', 'configuration file (default: ./cairn.config.json when present)')
    .option('--actor <name>', 'who is activating, for the history (default: the OS user name)');
}

/** describeRecord renders one activation record in one line. */
export function describeRecord(record: ActivationRecord): string {
  const tests = record.tests ? ` tests ${record.tests.passed}/${record.tests.cases}` : '';
  const diff = record.diff ? ` ${describeDiff(record.diff)}` : '';
  return `${record.at} ${record.outcome.padEnd(9)} ${(record.version ?? '(invalid)').padEnd(16)} by ${record.actor} (${record.trigger})${tests}${diff}`;
}

function report(result: ActivationResult): void {
  if (result.activated) {
    const { record } = result;
    console.log(`knowledge ${record.version} activated${result.unchanged ? ' (already the active version)' : ''}: ${record.tests?.passed ?? 0} test case(s) passed; was ${record.previousVersion ?? 'none'}`);
    if (record.diff) console.log(`  rules: ${describeDiff(record.diff)}`);
    console.log('  a running `cairn serve` with the same data folder switches to it within seconds');
    return;
  }
  console.log(`refused: ${result.message}`);
  for (const problem of result.problems) console.log(`  ${formatProblem(problem)}`);
  console.log('the previously active knowledge stays active');
  process.exitCode = 1;
}

/**
 * registerActivationCommands adds `activate`, `activations` and `restore`: gate and record a
 * knowledge set in the activation history under the data folder, list it, and go back to an
 * earlier snapshot. A running service follows the history.
 */
export function registerActivationCommands(program: Command): void {
  common(program.command('activate'))
    .description('validate a knowledge folder, run its test cases, and only then record it as the active knowledge (snapshot + history); a running service switches to it')
    .option('--knowledge <dir>', 'knowledge folder (default: CAIRN_KNOWLEDGE_DIR or .)')
    .action(async (flags: ActivationFlags) => {
      const config = configFrom(flags);
      const deps = { compiler: createCqlCompiler({ cacheDir: config.elmCacheDir }), model: loadFhirR4Model() };
      const actor = flags.actor ?? os.userInfo().username;
      report(await activateOffline(new ActivationHistory(config.dataDir), deps, { actor, trigger: 'cli', source: config.knowledgeDir }, () => new Date()));
    });

  program
    .command('activations')
    .description('list the activation history: who activated which knowledge version when, test results and rule-version changes')
    .option('--data-dir <dir>', 'data folder holding the activation history (default: CAIRN_DATA_DIR or ./data)')
    .option('--config <file>', 'configuration file (default: ./cairn.config.json when present)')
    .option('--json', 'print the records as JSON lines', false)
    .action(async (flags: ActivationFlags & { json: boolean }) => {
      const history = new ActivationHistory(configFrom(flags).dataDir);
      const records = await history.records();
      if (records.length === 0) console.log(`no activations recorded in ${history.logFile}`);
      const active = records.filter((r) => r.outcome === 'activated').at(-1);
      for (const record of records) {
        if (flags.json) console.log(JSON.stringify(record));
        else console.log(`${record === active ? '*' : ' '} ${describeRecord(record)}`);
        if (!flags.json) for (const problem of record.problems ?? []) console.log(`      ${problem}`);
      }
    });

  common(program.command('restore'))
    .description('activate again the snapshot of an earlier knowledge version (default: the one before the active version); its test cases run first')
    .argument('[version]', 'knowledge version (a unique prefix is enough); `cairn activations` lists them')
    .action(async (version: string | undefined, flags: ActivationFlags) => {
      const config = configFrom(flags);
      const history = new ActivationHistory(config.dataDir);
      const found = await history.findVersion(version, (await history.latestActivated())?.version);
      if ('error' in found) throw new CairnError('INPUT_INVALID', `cannot restore: ${found.error}`);
      const deps = { compiler: createCqlCompiler({ cacheDir: config.elmCacheDir }), model: loadFhirR4Model() };
      const actor = flags.actor ?? os.userInfo().username;
      report(await activateOffline(history, deps, { actor, trigger: 'restore', source: history.snapshotPath(found.version) }, () => new Date()));
    });
}
