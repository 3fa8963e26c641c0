import type { Command } from 'commander';
import { loadRuleCases, runRuleCase, type CaseResult } from '../authoring/cases.ts';
import { ruleCoverage } from '../authoring/coverage.ts';
import { loadConfig } from '../config/config.ts';
import { CairnError, formatProblem } from '../domain/errors.ts';
import { createCqlCompiler } from '../cql-engine/compiler.ts';
import { loadFhirR4Model } from '../cql-engine/fhir-model.ts';
import { loadPreparedKnowledge } from '../evaluate/knowledge-service.ts';

interface TestFlags {
  readonly knowledge?: string;
  readonly dataDir?: string;
  readonly coverage: boolean;
}

const mark = (yes: boolean): string => (yes ? 'yes' : 'NO ');

/** registerTestCommand adds `cairn test [RULE...]`: run the rules' test cases next to the knowledge. */
export function registerTestCommand(program: Command): void {
  program
    .command('test')
    .description('run the test cases in rules/<rule-id>.tests/ (all rules, or the ones named); exit 1 on any failure')
    .argument('[rules...]', 'rule ids to test (default: every rule with cases)')
    .option('--knowledge <dir>', 'knowledge folder (default: CAIRN_KNOWLEDGE_DIR or .)')
    .option('--data-dir <dir>', 'data folder for the ELM cache (default: CAIRN_DATA_DIR or ./data)')
    .option('--coverage', 'report which conditions and CQL defines each rule\'s cases exercised true and false', false)
    .action(async (ruleIds: string[], flags: TestFlags) => {
      const config = loadConfig({ flags: { knowledgeDir: flags.knowledge, dataDir: flags.dataDir }, env: process.env, cwd: process.cwd() });
      const prepared = await loadPreparedKnowledge(config.knowledgeDir, { compiler: createCqlCompiler({ cacheDir: config.elmCacheDir }), model: loadFhirR4Model() });
      const { cases, problems } = await loadRuleCases(config.knowledgeDir, ruleIds);
      for (const id of ruleIds) {
        if (!prepared.knowledge.rules.some((r) => r.rule.id === id)) throw new CairnError('INPUT_INVALID', `no rule "${id}" in ${config.knowledgeDir}`);
      }
      for (const problem of problems) console.log(`BROKEN ${formatProblem(problem)}`);
      const results: CaseResult[] = [];
      for (const loaded of cases) {
        const result = await runRuleCase(prepared, loaded);
        results.push(result);
        console.log(`${result.passed ? 'PASS' : 'FAIL'} ${loaded.ruleId} › ${loaded.name}`);
        for (const failure of result.failures) console.log(`       ${failure}`);
      }
      const failed = results.filter((r) => !r.passed).length;
      console.log(`\n${results.length - failed} passed, ${failed} failed${problems.length ? `, ${problems.length} case file(s) broken` : ''} (knowledge ${prepared.knowledge.version})`);
      if (flags.coverage) {
        for (const { rule } of prepared.knowledge.rules.filter((r) => ruleIds.length === 0 || ruleIds.includes(r.rule.id))) {
          const coverage = ruleCoverage(rule, results.filter((r) => r.case.ruleId === rule.id));
          console.log(`\ncoverage ${rule.id} (${coverage.cases} cases)    true false`);
          for (const c of coverage.conditions) console.log(`  condition ${c.description.padEnd(48)} ${mark(c.seenTrue)}  ${mark(c.seenFalse)}`);
          for (const d of coverage.defines) console.log(`  define    "${d.define}"`.padEnd(60) + ` ${mark(d.seenTrue)}  ${mark(d.seenFalse)}`);
        }
      }
      if (failed > 0 || problems.length > 0 || results.length === 0) process.exitCode = 1;
    });
}
