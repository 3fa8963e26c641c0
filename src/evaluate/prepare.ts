import { CairnError, type Problem } from '../domain/errors.ts';
import { prepareMeasure, type PreparedMeasure } from '../measures/prepare.ts';
import { BATCH, HOOK_IDS, type HookId } from '../domain/hooks.ts';
import { LibraryRepository, prepareLibrary, type PreparedLibrary } from '../cql-engine/execute.ts';
import type { FhirModel } from '../cql-engine/fhir-model.ts';
import { findLibrary, libraryKey, type KnowledgeSet, type LoadedRule } from '../knowledge/knowledge-set.ts';
import { prepareConditions, type PreparedConditions } from '../rules-engine/conditions.ts';

/** A rule ready to evaluate: its conditions engine and the library it reads. */
export interface PreparedRule {
  readonly loaded: LoadedRule;
  readonly libraryKey: string;
  readonly conditions: PreparedConditions;
  /** The rule's CQL facts its conditions read: all a patient's evaluation computes unless the rule fires. */
  readonly decidingFacts: readonly string[];
}

/**
 * PreparedKnowledge is a knowledge set with every library parsed into cql-execution and every
 * rule's conditions built: made once per knowledge version, shared by every request and patient.
 */
export interface PreparedKnowledge {
  readonly knowledge: KnowledgeSet;
  readonly model: FhirModel;
  readonly libraries: ReadonlyMap<string, PreparedLibrary>;
  readonly rules: readonly PreparedRule[];
  /** Measures (from `measures/`), each with its library prepared; the nightly batch runs them all. */
  readonly measures: readonly PreparedMeasure[];
  /** Active rules that run in `hook`, or in the nightly batch when `hook` is undefined. */
  rulesFor(hook: HookId | undefined): readonly PreparedRule[];
}

export interface PrepareResult {
  readonly prepared?: PreparedKnowledge;
  readonly problems: readonly Problem[];
}

/** prepareKnowledge parses the libraries the rules read and builds each rule's conditions. */
export function prepareKnowledge(knowledge: KnowledgeSet, model: FhirModel): PrepareResult {
  const problems: Problem[] = [];
  const allElm = [...knowledge.libraries.values()].map((lib) => lib.compiled.elm);
  // One repository: libraries the rules share (CairnCommon, FHIRHelpers) are built once for all of them.
  const repository = new LibraryRepository(allElm);
  const libraries = new Map<string, PreparedLibrary>();
  const rules: PreparedRule[] = [];
  const sorted = [...knowledge.rules].sort((a, b) => (a.rule.id < b.rule.id ? -1 : 1));
  for (const loaded of sorted) {
    const library = findLibrary(knowledge, loaded.rule.cql.library, loaded.rule.cql.version);
    if (!library) {
      problems.push({ code: 'RULE_REFERENCE', file: loaded.file, path: '$.cql.library', message: `library ${loaded.rule.cql.library} is not loaded` });
      continue;
    }
    const key = libraryKey(library.summary.name, library.summary.version);
    if (!libraries.has(key)) {
      try {
        libraries.set(key, prepareLibrary(library.compiled.elm, allElm, model, { repository }));
      } catch (error) {
        problems.push({ code: 'CQL_INCLUDE', file: library.compiled.file, message: error instanceof Error ? error.message : String(error) });
        continue;
      }
    }
    const conditions = prepareConditions(loaded.rule.id, loaded.rule.conditions);
    const decidingFacts = Object.freeze(conditions.facts.filter((name) => loaded.rule.cql.facts.includes(name)));
    rules.push(Object.freeze({ loaded, libraryKey: key, conditions, decidingFacts }));
  }
  const measures: PreparedMeasure[] = [];
  const measureLibraries = [...knowledge.libraries.values()].map((lib) => ({ elm: lib.compiled.elm }));
  for (const loaded of knowledge.measures) {
    try {
      measures.push(prepareMeasure(loaded.json, measureLibraries, knowledge.valueSets, model, { file: loaded.file }));
    } catch (error) {
      if (!(error instanceof CairnError)) throw error;
      problems.push(...(error.problems.length ? error.problems : [{ code: 'MEASURE_INVALID' as const, file: loaded.file, message: error.message }]));
    }
  }
  if (problems.length > 0) return { problems };
  const active = rules.filter(({ loaded }) => loaded.rule.status === 'active');
  const byHook = new Map<HookId | typeof BATCH, readonly PreparedRule[]>([
    [BATCH, Object.freeze(active.filter(({ loaded }) => loaded.rule.runs.batch === true))],
    ...HOOK_IDS.map((hook) => [hook, Object.freeze(active.filter(({ loaded }) => (loaded.rule.runs.hooks ?? []).includes(hook)))] as const),
  ]);
  const rulesFor = (hook: HookId | undefined): readonly PreparedRule[] => byHook.get(hook ?? BATCH) ?? [];
  return { problems, prepared: Object.freeze({ knowledge, model, libraries, rules: Object.freeze(rules), measures: Object.freeze(measures), rulesFor }) };
}
