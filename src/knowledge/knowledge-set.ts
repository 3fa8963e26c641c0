import type { CompiledLibrary } from '../cql-engine/compiler.ts';
import type { ValueSetExpansion, ValueSetIndex } from '../cql-engine/terminology.ts';
import type { MeasureDefinition } from '../measures/definition.ts';
import type { ElmSummary } from './elm.ts';
import type { Rule } from './rule-schema.ts';

/** A validated rule and the file it came from. */
export interface LoadedRule {
  readonly file: string;
  readonly rule: Rule;
}

/** A FHIR Measure from `measures/`, parsed and checked against the libraries. */
export interface LoadedMeasure {
  readonly file: string;
  readonly json: unknown;
  readonly definition: MeasureDefinition;
}

/** A compiled library with what the loader read from its ELM. */
export interface LoadedLibrary {
  readonly compiled: CompiledLibrary;
  readonly summary: ElmSummary;
}

/**
 * KnowledgeSet is one immutable, versioned load of the knowledge folders. `version` is a content
 * hash of every input file, so the same folders always give the same version.
 */
export interface KnowledgeSet {
  readonly version: string;
  readonly root: string;
  readonly files: readonly { readonly file: string; readonly sha256: string }[];
  readonly libraries: ReadonlyMap<string, LoadedLibrary>;
  readonly rules: readonly LoadedRule[];
  /** Measures run nightly (`measures/*.json`). */
  readonly measures: readonly LoadedMeasure[];
  readonly valueSets: ValueSetIndex;
  /** The expansions the index was built from (plain data: what worker threads receive). */
  readonly valueSetExpansions: readonly ValueSetExpansion[];
}

/** libraryKey is how libraries are indexed: `Name|version` (version may be empty). */
export function libraryKey(name: string, version: string | undefined): string {
  return `${name}|${version ?? ''}`;
}

/** findLibrary resolves a library by name and, when given, exact version; without a version the latest wins. */
export function findLibrary(set: Pick<KnowledgeSet, 'libraries'>, name: string, version?: string): LoadedLibrary | undefined {
  if (version !== undefined) return set.libraries.get(libraryKey(name, version));
  return [...set.libraries.values()]
    .filter((lib) => lib.summary.name === name)
    .sort((a, b) => (b.summary.version ?? '').localeCompare(a.summary.version ?? '', 'en', { numeric: true }))[0];
}
