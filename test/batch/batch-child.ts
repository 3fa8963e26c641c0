/**
 * Run by the crash test in a child process: `node --import tsx batch-child.ts DB KNOWLEDGE AT`
 * runs the nightly batch and prints `progress` after the first patients are written, so the
 * parent can kill it mid-run.
 */
import path from 'node:path';
import { runBatch } from '../../src/batch/run-batch.ts';
import { createCqlCompiler } from '../../src/cql-engine/compiler.ts';
import { loadFhirR4Model } from '../../src/cql-engine/fhir-model.ts';
import { loadPreparedKnowledge } from '../../src/evaluate/knowledge-service.ts';
import { openWarehouse } from '../../src/warehouse/database.ts';

const [db, knowledgeRoot, at] = process.argv.slice(2);
const prepared = await loadPreparedKnowledge(knowledgeRoot!, { compiler: createCqlCompiler({ cacheDir: path.join(knowledgeRoot!, '.cache/test-elm') }), model: loadFhirR4Model() });
const warehouse = await openWarehouse({ path: db! });
let told = false;
await runBatch(warehouse, prepared, {
  evaluatedAt: at!,
  now: () => new Date(),
  onProgress: (done) => {
    if (!told && done > 0) {
      told = true;
      process.stdout.write('progress\n');
    }
  },
});
process.stdout.write('done\n');
warehouse.close();
