import { CairnError, type Problem } from '../domain/errors.ts';
import type { CqlCompiler } from '../cql-engine/compiler.ts';
import type { FhirModel } from '../cql-engine/fhir-model.ts';
import { loadRuleCases, runRuleCase } from '../authoring/cases.ts';
import { loadKnowledge } from '../knowledge/load.ts';
import type { KnowledgeSet } from '../knowledge/knowledge-set.ts';
import { prepareKnowledge, type PreparedKnowledge } from './prepare.ts';

export interface KnowledgeDeps {
  readonly compiler: CqlCompiler;
  readonly model: FhirModel;
}

/** loadPreparedKnowledge loads, validates and prepares a knowledge directory, or throws KNOWLEDGE_INVALID with every problem. */
export async function loadPreparedKnowledge(root: string, deps: KnowledgeDeps): Promise<PreparedKnowledge> {
  const knowledge = await loadKnowledge(root, { compiler: deps.compiler });
  const { prepared, problems } = prepareKnowledge(knowledge, deps.model);
  if (!prepared) {
    throw new CairnError('KNOWLEDGE_INVALID', `knowledge in ${knowledge.root} could not be prepared; nothing from it is used`, { problems });
  }
  return prepared;
}

/** How a set's own test cases went. */
export interface TestSummary {
  readonly cases: number;
  readonly passed: number;
  readonly failed: number;
}

/**
 * testKnowledge runs every test case in `root`'s `rules/<id>.tests/` against `prepared`. Broken case
 * files and failed cases come back as KNOWLEDGE_INVALID problems located at the case file, one per
 * difference, so a refusal lists them like any other problem.
 */
export async function testKnowledge(prepared: PreparedKnowledge, root: string): Promise<{ tests: TestSummary; problems: Problem[] }> {
  const { cases, problems: caseProblems } = await loadRuleCases(root);
  const problems: Problem[] = caseProblems.map((p) => ({ ...p, code: 'KNOWLEDGE_INVALID' as const, message: `test case file is broken: ${p.message}` }));
  let passed = 0;
  for (const loaded of cases) {
    const result = await runRuleCase(prepared, loaded);
    if (result.passed) passed++;
    for (const failure of result.failures) {
      problems.push({ code: 'KNOWLEDGE_INVALID', file: loaded.file, message: `test case "${loaded.name}" of rule ${loaded.ruleId} failed: ${failure}` });
    }
  }
  return { tests: { cases: cases.length, passed, failed: cases.length - passed }, problems };
}

export type ReloadOutcome =
  | {
      readonly swapped: true;
      readonly version: string;
      readonly previousVersion: string;
      readonly knowledge: KnowledgeSet;
      readonly previous: KnowledgeSet;
      readonly tests: TestSummary;
    }
  | {
      readonly swapped: false;
      readonly keptVersion: string;
      readonly problems: readonly Problem[];
      readonly message: string;
      /** The refused set's version, when it loaded but failed preparation or its tests. */
      readonly candidateVersion?: string;
      readonly candidate?: KnowledgeSet;
      readonly tests?: TestSummary;
    };

export interface CheckOptions {
  /** Run the set's own test cases (default true); false only for a snapshot that already passed them. */
  readonly runTests?: boolean;
}

export type CheckResult =
  | { readonly ok: true; readonly prepared: PreparedKnowledge; readonly tests: TestSummary }
  | { readonly ok: false; readonly message: string; readonly problems: readonly Problem[]; readonly candidate?: KnowledgeSet; readonly tests?: TestSummary };

/**
 * checkKnowledge is the gate a set passes before it may serve: it loads and validates `root`,
 * prepares it, and runs its own test cases. It never throws for a bad set; it says why.
 */
export async function checkKnowledge(root: string, deps: KnowledgeDeps, options: CheckOptions = {}): Promise<CheckResult> {
  let knowledge: KnowledgeSet;
  try {
    knowledge = await loadKnowledge(root, { compiler: deps.compiler });
  } catch (error) {
    if (!(error instanceof CairnError)) throw error;
    return { ok: false, message: error.message, problems: error.problems };
  }
  const { prepared, problems } = prepareKnowledge(knowledge, deps.model);
  if (!prepared) return { ok: false, message: `knowledge ${knowledge.version} in ${knowledge.root} could not be prepared; nothing from it is used`, problems, candidate: knowledge };
  if (options.runTests === false) return { ok: true, prepared, tests: { cases: 0, passed: 0, failed: 0 } };
  const result = await testKnowledge(prepared, root);
  if (result.problems.length > 0) {
    const broken = result.problems.length > 0 && result.tests.failed === 0 ? ' (broken test case files)' : '';
    return {
      ok: false,
      message: `knowledge ${knowledge.version} failed ${result.tests.failed} of its ${result.tests.cases} test case(s)${broken}; nothing from it is used`,
      problems: result.problems,
      candidate: knowledge,
      tests: result.tests,
    };
  }
  return { ok: true, prepared, tests: result.tests };
}

/**
 * ActiveKnowledge holds the knowledge set that is serving. A reload either swaps a whole new,
 * fully prepared set that passed its own test cases in (one reference assignment, so a request
 * sees the old or the new set, never a mix) or keeps the old one and says why. Reloads run one at
 * a time, in the order asked.
 */
export class ActiveKnowledge {
  #current: PreparedKnowledge;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #root: string;
  readonly #deps: KnowledgeDeps;

  private constructor(root: string, deps: KnowledgeDeps, initial: PreparedKnowledge) {
    this.#root = root;
    this.#deps = deps;
    this.#current = initial;
  }

  /** load starts serving the knowledge in `root`; it throws when that knowledge is invalid (its test cases are not run). */
  static async load(root: string, deps: KnowledgeDeps): Promise<ActiveKnowledge> {
    return new ActiveKnowledge(root, deps, await loadPreparedKnowledge(root, deps));
  }

  /** of starts serving an already prepared set, read from `root`. */
  static of(root: string, deps: KnowledgeDeps, prepared: PreparedKnowledge): ActiveKnowledge {
    return new ActiveKnowledge(root, deps, prepared);
  }

  get current(): PreparedKnowledge {
    return this.#current;
  }

  /** root is the folder reloads read by default (the configured knowledge folder). */
  get root(): string {
    return this.#root;
  }

  get deps(): KnowledgeDeps {
    return this.#deps;
  }

  /**
   * reload loads `root` (default: the same folder) again, validates it, runs its test cases, and
   * swaps it in only if all of that passed; otherwise the serving set stays.
   */
  reload(root: string = this.#root, options: CheckOptions = {}): Promise<ReloadOutcome> {
    const next = this.#queue.then(() => this.#reload(root, options));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #reload(root: string, options: CheckOptions): Promise<ReloadOutcome> {
    const previous = this.#current.knowledge;
    const checked = await checkKnowledge(root, this.#deps, options);
    if (!checked.ok) {
      return {
        swapped: false,
        keptVersion: previous.version,
        problems: checked.problems,
        message: checked.message,
        ...(checked.candidate ? { candidateVersion: checked.candidate.version, candidate: checked.candidate } : {}),
        ...(checked.tests ? { tests: checked.tests } : {}),
      };
    }
    this.#current = checked.prepared;
    const { knowledge } = checked.prepared;
    return { swapped: true, version: knowledge.version, previousVersion: previous.version, knowledge, previous, tests: checked.tests };
  }
}
