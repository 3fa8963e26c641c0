import { runCdsHooksLoadBench } from './cds-hooks-load.ts';
import { runMeasuresVsFqmBench } from './measures-vs-fqm.ts';
import { runOpioidEvalBench } from './opioid-eval.ts';
import { runSampleRulesEvalBench } from './sample-rules-eval.ts';

/**
 * Runs every bench in sequence (`npm run bench`). Each prints a human summary and one JSON line;
 * a bench whose results differ from its reference throws, and the run exits non-zero.
 */
const BENCHES: readonly { readonly name: string; readonly run: () => Promise<unknown> }[] = [
  { name: 'opioid-eval', run: () => runOpioidEvalBench() },
  { name: 'sample-rules-eval', run: () => runSampleRulesEvalBench() },
  { name: 'cds-hooks-load', run: () => runCdsHooksLoadBench() },
  // The same load signed as Epic's CDS Hooks client signs by default: the P-384 check is ~1-1.3 ms of it.
  { name: 'cds-hooks-load RS384', run: () => runCdsHooksLoadBench({ signingAlg: 'RS384' }) },
  // Skips (and says so) without ../shared. The 100,000-patient batch bench runs alone: bench/batch-population.ts.
  { name: 'measures-vs-fqm', run: () => runMeasuresVsFqmBench() },
];

let failed = 0;
for (const bench of BENCHES) {
  try {
    await bench.run();
  } catch (error) {
    failed++;
    console.error(`bench ${bench.name} failed:`, error);
  }
}
process.exitCode = failed === 0 ? 0 : 1;
