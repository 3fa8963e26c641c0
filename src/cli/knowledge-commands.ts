import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { loadConfig, type Config } from '../config/config.ts';
import { CairnError, formatProblem } from '../domain/errors.ts';
import { HOOK_IDS, type HookId } from '../domain/hooks.ts';
import { createCqlCompiler } from '../cql-engine/compiler.ts';
import { loadFhirR4Model } from '../cql-engine/fhir-model.ts';
import type { PatientData } from '../cql-engine/patient-source.ts';
import { evaluatePatient } from '../evaluate/evaluate.ts';
import { loadPreparedKnowledge } from '../evaluate/knowledge-service.ts';
import { readCqlFolder } from '../knowledge/load.ts';
import { zodProblems } from '../knowledge/zod-problems.ts';
import { RuleCaseSchema, type RuleCase } from '../authoring/cases.ts';

interface KnowledgeFlags {
  readonly knowledge?: string;
  readonly dataDir?: string;
}

function configFrom(flags: KnowledgeFlags): Config {
  return loadConfig({ flags: { knowledgeDir: flags.knowledge, dataDir: flags.dataDir }, env: process.env, cwd: process.cwd() });
}

function knowledgeOptions(command: Command): Command {
  return command
    .option('--knowledge <dir>', 'knowledge folder with cql/, rules/, value-sets/ (default: CAIRN_KNOWLEDGE_DIR or .)')
    .option('--data-dir <dir>', 'data folder for the ELM cache and database (default: CAIRN_DATA_DIR or ./data)');
}

async function readJsonFile(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new CairnError('INPUT_INVALID', `cannot read ${what} ${file}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new CairnError('INPUT_INVALID', `${what} ${file} is not valid JSON: ${(error as Error).message}`);
  }
}

/** registerKnowledgeCommands adds `validate`, `compile` and `eval`. */
export function registerKnowledgeCommands(program: Command): void {
  knowledgeOptions(program.command('validate'))
    .description('load and check every CQL library, value set and rule; print every problem; exit non-zero if any')
    .action(async (flags: KnowledgeFlags) => {
      const config = configFrom(flags);
      const compiler = createCqlCompiler({ cacheDir: config.elmCacheDir });
      try {
        const prepared = await loadPreparedKnowledge(config.knowledgeDir, { compiler, model: loadFhirR4Model() });
        const { knowledge } = prepared;
        const active = knowledge.rules.filter((r) => r.rule.status === 'active').length;
        console.log(`knowledge ${knowledge.version} is valid: ${knowledge.libraries.size} libraries, ${knowledge.rules.length} rules (${active} active), ${knowledge.files.length} files`);
      } catch (error) {
        if (!(error instanceof CairnError)) throw error;
        for (const problem of error.problems) console.log(formatProblem(problem));
        console.log(`${error.problems.length} problem(s); the knowledge is not valid`);
        process.exitCode = 1;
      }
    });

  knowledgeOptions(program.command('compile'))
    .description('compile the CQL libraries and write their ELM JSON for inspection')
    .option('--out <dir>', 'where to write the ELM (default: <data-dir>/elm)')
    .action(async (flags: KnowledgeFlags & { out?: string }) => {
      const config = configFrom(flags);
      const inputs = await readCqlFolder(config.knowledgeDir);
      const compiled = await createCqlCompiler({ cacheDir: config.elmCacheDir }).compile(inputs.sources, inputs.prebuilt);
      const result = { libraries: compiled.libraries, problems: [...inputs.problems, ...compiled.problems] };
      const out = path.resolve(flags.out ?? path.join(config.dataDir, 'elm'));
      await mkdir(out, { recursive: true });
      for (const library of result.libraries.filter((l) => l.source === 'cql')) {
        const file = path.join(out, `${library.name}${library.version ? `-${library.version}` : ''}.json`);
        await writeFile(file, `${JSON.stringify(library.elm, null, 2)}\n`);
        console.log(`wrote ${path.relative(process.cwd(), file)}`);
      }
      for (const problem of result.problems) console.log(formatProblem(problem));
      if (result.problems.length) {
        console.log(`${result.problems.length} problem(s)`);
        process.exitCode = 1;
      }
    });

  knowledgeOptions(program.command('eval'))
    .description('evaluate one patient and print the decisions as JSON')
    .option('--patient <file>', 'FHIR R4 Bundle (or array of resources) with the patient\'s data')
    .option('--case <file>', 'a rule test case (rules/<id>.tests/*.json): its patient, hook, context and evaluatedAt')
    .option('--at <datetime>', 'evaluation instant, e.g. 2026-03-01T12:00:00Z (CQL Now()); required without --case')
    .option('--hook <id>', `CDS hook to evaluate for (${HOOK_IDS.join(', ')}); omit for the nightly batch rules`)
    .option('--context <file>', 'hook context JSON (or a whole CDS Hooks request, whose context is used)')
    .action(async (flags: KnowledgeFlags & { patient?: string; case?: string; at?: string; hook?: string; context?: string }) => {
      const config = configFrom(flags);
      const input = await evalInput(flags);
      const compiler = createCqlCompiler({ cacheDir: config.elmCacheDir });
      const prepared = await loadPreparedKnowledge(config.knowledgeDir, { compiler, model: loadFhirR4Model() });
      const evaluation = await evaluatePatient(prepared, input.patient, {
        evaluatedAt: input.at,
        ...(input.hook ? { hook: input.hook } : {}),
        ...(input.context ? { context: input.context } : {}),
      });
      console.log(JSON.stringify(evaluation, null, 2));
    });
}

interface EvalInput {
  readonly patient: PatientData;
  readonly at: string;
  readonly hook?: HookId;
  readonly context?: Record<string, unknown>;
}

/** evalInput reads `cairn eval`'s inputs from --case and/or --patient/--hook/--context/--at (flags win). */
async function evalInput(flags: { patient?: string; case?: string; at?: string; hook?: string; context?: string }): Promise<EvalInput> {
  if (!flags.patient === !flags.case) throw new CairnError('INPUT_INVALID', 'give exactly one of --patient FILE or --case FILE');
  if (flags.hook !== undefined && !(HOOK_IDS as readonly string[]).includes(flags.hook)) {
    throw new CairnError('INPUT_INVALID', `--hook ${flags.hook} is not one of ${HOOK_IDS.join(', ')}`);
  }
  let fromCase: Partial<RuleCase> = {};
  if (flags.case) {
    const parsed = RuleCaseSchema.safeParse(await readJsonFile(flags.case, 'case file'));
    if (!parsed.success) throw new CairnError('INPUT_INVALID', `case file ${flags.case} is not a rule test case`, { problems: zodProblems('INPUT_INVALID', flags.case, parsed.error) });
    fromCase = parsed.data;
  }
  const patient = (flags.patient ? await readJsonFile(flags.patient, 'patient file') : fromCase.patient) as PatientData;
  let context = fromCase.context;
  if (flags.context) {
    const raw = (await readJsonFile(flags.context, 'context file')) as Record<string, unknown>;
    context = (raw.context && typeof raw.context === 'object' ? raw.context : raw) as Record<string, unknown>;
  }
  const hook = (flags.hook ?? fromCase.hook) as HookId | undefined;
  if (context && !hook) throw new CairnError('INPUT_INVALID', 'a hook context needs --hook');
  const at = flags.at ?? fromCase.evaluatedAt;
  if (!at) throw new CairnError('INPUT_INVALID', '--at DATETIME is required (e.g. 2026-03-01T12:00:00Z)');
  return { patient, at, ...(hook ? { hook } : {}), ...(context ? { context } : {}) };
}
