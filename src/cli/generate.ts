/**
 * `cairn generate --patients N --seed S --out DIR`: write a deterministic synthetic population as
 * Bulk Data NDJSON, ready for `cairn ingest DIR`.
 */
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { CairnError } from '../domain/errors.ts';
import { generatePopulation } from '../synthetic/generate.ts';

interface GenerateFlags {
  readonly patients: string;
  readonly seed: string;
  readonly out: string;
  readonly asOf?: string;
  readonly progress: boolean;
}

function wholeNumber(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new CairnError('INPUT_INVALID', `${flag} must be a whole number, got "${value}".`);
  return n;
}

async function runGenerate(flags: GenerateFlags): Promise<void> {
  const patients = wholeNumber('--patients', flags.patients);
  const seed = wholeNumber('--seed', flags.seed);
  const asOf = flags.asOf ? new Date(flags.asOf) : undefined;
  if (asOf && Number.isNaN(asOf.getTime())) throw new CairnError('INPUT_INVALID', `--as-of must be a date, got "${flags.asOf}".`);
  const bar = flags.progress && process.stderr.isTTY ? new SingleBar({ format: 'generate [{bar}] {percentage}% {value}/{total} patients', stream: process.stderr }) : null;
  bar?.start(patients, 0);
  const started = performance.now();
  try {
    const stats = await generatePopulation({ patients, seed, outDir: flags.out, asOf, onProgress: (done) => bar?.update(done) });
    bar?.stop();
    const seconds = (performance.now() - started) / 1000;
    console.log(`generated ${stats.patients} patients, ${stats.resources} resources, ${(stats.bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(1)} s into ${flags.out}`);
    console.log(Object.entries(stats.byType).map(([type, n]) => `${type} ${n}`).join(', '));
  } finally {
    bar?.stop();
  }
}

/** registerGenerateCommand adds `cairn generate`. */
export function registerGenerateCommand(program: Command): void {
  program
    .command('generate')
    .description('Write a deterministic synthetic patient population as FHIR R4 Bulk Data NDJSON.')
    .requiredOption('--patients <n>', 'number of patients')
    .option('--seed <n>', 'random seed; the same seed gives identical files', '1')
    .requiredOption('--out <dir>', 'output folder')
    .option('--as-of <date>', 'end of the simulated history (default 2026-01-01)')
    .option('--no-progress', 'no progress bar even on a terminal')
    .action(async (flags: GenerateFlags) => runGenerate(flags));
}
