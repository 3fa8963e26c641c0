import { CairnError, type Problem } from '../domain/errors.ts';
import type { CqlCompiler } from '../cql-engine/compiler.ts';
import type { FhirModel } from '../cql-engine/fhir-model.ts';
import { loadKnowledge } from '../knowledge/load.ts';
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

export type ReloadOutcome =
  | { readonly swapped: true; readonly version: string; readonly previousVersion: string }
  | { readonly swapped: false; readonly keptVersion: string; readonly problems: readonly Problem[]; readonly message: string };

/**
 * ActiveKnowledge holds the knowledge set that is serving. A reload either swaps a whole new,
 * fully prepared set in (one reference assignment, so a request sees the old or the new set,
 * never a mix) or keeps the old one and says why.
 */
export class ActiveKnowledge {
  #current: PreparedKnowledge;
  readonly #root: string;
  readonly #deps: KnowledgeDeps;

  private constructor(root: string, deps: KnowledgeDeps, initial: PreparedKnowledge) {
    this.#root = root;
    this.#deps = deps;
    this.#current = initial;
  }

  /** load starts serving the knowledge in `root`; it throws when that knowledge is invalid. */
  static async load(root: string, deps: KnowledgeDeps): Promise<ActiveKnowledge> {
    return new ActiveKnowledge(root, deps, await loadPreparedKnowledge(root, deps));
  }

  get current(): PreparedKnowledge {
    return this.#current;
  }

  /** reload loads `root` (default: the same folder) again and swaps it in only if it is entirely valid. */
  async reload(root: string = this.#root): Promise<ReloadOutcome> {
    const previousVersion = this.#current.knowledge.version;
    try {
      const next = await loadPreparedKnowledge(root, this.#deps);
      this.#current = next;
      return { swapped: true, version: next.knowledge.version, previousVersion };
    } catch (error) {
      if (!(error instanceof CairnError)) throw error;
      return { swapped: false, keptVersion: previousVersion, problems: error.problems, message: error.message };
    }
  }
}
