import { z } from 'zod';
import { CairnError, type Problem } from '../domain/errors.ts';
import { prepareLibrary, type PreparedLibrary } from '../cql-engine/execute.ts';
import type { FhirModel } from '../cql-engine/fhir-model.ts';
import type { ValueSetIndex } from '../cql-engine/terminology.ts';
import { parseMeasure, type DefinitionOverrides, type MeasureDefinition } from './definition.ts';

/** One ELM JSON library offered to a measure (the main library and everything it includes, or more). */
export interface MeasureLibrary {
  readonly elm: unknown;
}

/** A measure ready to evaluate many patients: parsed once, its CQL prepared once. */
export interface PreparedMeasure {
  readonly definition: MeasureDefinition;
  readonly library: PreparedLibrary;
  readonly valueSets: ValueSetIndex;
  readonly model: FhirModel;
}

export interface PrepareMeasureOptions {
  /** Labels problems (e.g. the Measure's file name). */
  readonly file?: string;
  readonly overrides?: DefinitionOverrides;
}

const ElmHeader = z.looseObject({
  library: z.looseObject({
    identifier: z.looseObject({ id: z.string(), version: z.string().optional() }),
    includes: z.looseObject({ def: z.array(z.looseObject({ path: z.string(), version: z.string().optional() })).optional() }).optional(),
    valueSets: z.looseObject({ def: z.array(z.looseObject({ name: z.string(), id: z.string(), version: z.string().optional() })).optional() }).optional(),
    statements: z.looseObject({ def: z.array(z.looseObject({ name: z.string(), type: z.string().optional() })).optional() }).optional(),
  }),
});
type ElmHeader = z.infer<typeof ElmHeader>;

interface Candidate {
  readonly elm: unknown;
  readonly header: ElmHeader;
}

function byVersionDescending(a: Candidate, b: Candidate): number {
  return (b.header.library.identifier.version ?? '').localeCompare(a.header.library.identifier.version ?? '', 'en', { numeric: true });
}

function findLibrary(candidates: readonly Candidate[], name: string, version: string | undefined): Candidate | undefined {
  const named = candidates.filter((c) => c.header.library.identifier.id === name || name.endsWith(`/${c.header.library.identifier.id}`));
  if (version !== undefined) return named.find((c) => c.header.library.identifier.version === version);
  return [...named].sort(byVersionDescending)[0];
}

/** The libraries `main` includes, transitively (unresolved includes are left to prepareLibrary to report). */
function reachable(main: Candidate, candidates: readonly Candidate[]): Candidate[] {
  const seen = new Set<Candidate>([main]);
  const queue = [main];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    for (const include of next.header.library.includes?.def ?? []) {
      const target = findLibrary(candidates, include.path, include.version);
      if (target !== undefined && !seen.has(target)) {
        seen.add(target);
        queue.push(target);
      }
    }
  }
  return [...seen];
}

/**
 * prepareMeasure parses a FHIR Measure, finds its main CQL library (`library[0]`: name = last path
 * segment, version after `|` if any, else the latest offered) among `libraries`, checks that every
 * population, stratifier and supplemental-data expression is a define of that library and that
 * every value set the reachable libraries use resolves in `valueSets`, and prepares the CQL once.
 * Call it once per measure and knowledge version, never per patient. Fails with INPUT_INVALID,
 * CQL_INCLUDE or VALUESET_MISSING listing every problem.
 */
export function prepareMeasure(measureJson: unknown, libraries: readonly MeasureLibrary[], valueSets: ValueSetIndex, model: FhirModel, options: PrepareMeasureOptions = {}): PreparedMeasure {
  const file = options.file ?? 'Measure';
  const definition = parseMeasure(measureJson, file, options.overrides);
  const candidates: Candidate[] = [];
  libraries.forEach((library, i) => {
    const header = ElmHeader.safeParse(library.elm);
    if (!header.success) throw new CairnError('INPUT_INVALID', `Library #${i + 1} offered to ${file} is not an ELM JSON library`);
    candidates.push({ elm: library.elm, header: header.data });
  });
  const { name, version } = definition.library;
  const main = findLibrary(candidates, name, version);
  if (main === undefined) {
    const versions = candidates.filter((c) => c.header.library.identifier.id === name).map((c) => c.header.library.identifier.version ?? '(none)');
    throw new CairnError('CQL_INCLUDE', `${file}: library[0] ${definition.library.canonical} names CQL library ${name}${version === undefined ? '' : ` version ${version}`}, which is not loaded`, {
      context: { measure: definition.canonical, ...(versions.length > 0 ? { loadedVersions: versions } : {}) },
    });
  }

  const problems: Problem[] = [];
  const defines = new Set((main.header.library.statements?.def ?? []).filter((d) => d.type !== 'FunctionDef').map((d) => d.name));
  const requireDefine = (expression: string, path: string): void => {
    if (!defines.has(expression)) problems.push({ code: 'INPUT_INVALID', file, path, message: `"${expression}" is not a define of ${name}` });
  };
  definition.groups.forEach((group, g) => {
    group.populations.forEach((p) => requireDefine(p.expression, `$.group[${g}] ${p.code}`));
    group.stratifiers.forEach((s) => s.expression !== undefined && requireDefine(s.expression, `$.group[${g}] stratifier ${s.id}`));
  });
  definition.supplementalData.forEach((sde) => requireDefine(sde.expression, `$.supplementalData ${sde.id}`));
  if (problems.length > 0) throw new CairnError('INPUT_INVALID', `${file} names expressions its library does not define`, { problems });

  const used = reachable(main, candidates);
  const missing: Problem[] = [];
  for (const library of used) {
    for (const vs of library.header.library.valueSets?.def ?? []) {
      if (valueSets.resolve(vs.id, vs.version) === undefined) {
        missing.push({ code: 'VALUESET_MISSING', file, message: `library ${library.header.library.identifier.id} references value set "${vs.name}" (${vs.id}${vs.version ? `|${vs.version}` : ''}), which is not loaded` });
      }
    }
  }
  if (missing.length > 0) throw new CairnError('VALUESET_MISSING', `${file}: ${missing.length} value set(s) the measure needs are not loaded`, { problems: missing });

  const library = prepareLibrary(main.elm, used.filter((c) => c !== main).map((c) => c.elm), model);
  return Object.freeze({ definition, library, valueSets, model });
}
