import { z } from 'zod';
import { CairnError, type Problem } from '../domain/errors.ts';

/**
 * The parts of a FHIR R4 Measure ({@link https://hl7.org/fhir/R4/measure.html}) Cairn evaluates,
 * read once at the edge with zod and turned into a frozen {@link MeasureDefinition}. Extensions are
 * the CQF Measures IG ones ({@link https://hl7.org/fhir/us/cqfmeasures/}), which QI-Core eCQMs use
 * to put scoring, population basis and improvement notation on the group.
 */

const CQFM = 'http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/';
export const EXT_SCORING = `${CQFM}cqfm-scoring`;
export const EXT_POPULATION_BASIS = `${CQFM}cqfm-populationBasis`;
export const EXT_IMPROVEMENT_NOTATION = `${CQFM}cqfm-improvementNotation`;
export const EXT_APPLIES_TO = `${CQFM}cqfm-appliesTo`;
export const MEASURE_POPULATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/measure-population';
export const IMPROVEMENT_NOTATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/measure-improvement-notation';
export const MEASURE_SCORING_SYSTEM = 'http://terminology.hl7.org/CodeSystem/measure-scoring';

const Coding = z.looseObject({ system: z.string().optional(), code: z.string().optional(), display: z.string().optional() });
const CodeableConcept = z.looseObject({ coding: z.array(Coding).optional(), text: z.string().optional() });
const Extension = z.looseObject({
  url: z.string(),
  valueCode: z.string().optional(),
  valueCodeableConcept: CodeableConcept.optional(),
});
const Expression = z.looseObject({ language: z.string().optional(), expression: z.string().optional() });

const MeasureResource = z.looseObject({
  resourceType: z.literal('Measure'),
  id: z.string().optional(),
  url: z.string().optional(),
  version: z.string().optional(),
  name: z.string().optional(),
  title: z.string().optional(),
  extension: z.array(Extension).optional(),
  library: z.array(z.string()).min(1, 'a computable measure names its CQL library in library[0]'),
  scoring: CodeableConcept.optional(),
  improvementNotation: CodeableConcept.optional(),
  effectivePeriod: z.looseObject({ start: z.string().optional(), end: z.string().optional() }).optional(),
  group: z
    .array(
      z.looseObject({
        id: z.string().optional(),
        extension: z.array(Extension).optional(),
        population: z.array(
          z.looseObject({
            id: z.string().optional(),
            code: CodeableConcept,
            criteria: Expression,
          }),
        ),
        stratifier: z.array(z.looseObject({ id: z.string().optional(), code: CodeableConcept.optional(), description: z.string().optional(), criteria: Expression.optional() })).optional(),
      }),
    )
    .min(1, 'a measure needs at least one group'),
  supplementalData: z.array(z.looseObject({ id: z.string().optional(), code: CodeableConcept.optional(), criteria: Expression })).optional(),
});
type MeasureResource = z.infer<typeof MeasureResource>;

/** The population codes of the measure-population code system that proportion and cohort scoring use. */
export const POPULATION_CODES = [
  'initial-population',
  'denominator',
  'denominator-exclusion',
  'denominator-exception',
  'numerator',
  'numerator-exclusion',
] as const;
export type PopulationCode = (typeof POPULATION_CODES)[number];

export type Scoring = 'proportion' | 'cohort';
export type ImprovementNotation = 'increase' | 'decrease';

export interface PopulationDefinition {
  readonly id: string | undefined;
  readonly code: PopulationCode;
  /** The CQL define (of the main library) whose value is this population. */
  readonly expression: string;
}

export interface StratifierDefinition {
  readonly id: string;
  readonly description: string | undefined;
  /** The CQL define, or undefined when the published content left it empty (reported, not evaluated). */
  readonly expression: string | undefined;
}

export interface GroupDefinition {
  /** The group id, or `group-<n>` (1-based) when the Measure gives none. */
  readonly id: string;
  readonly scoring: Scoring;
  /** `boolean` for patient-based groups; a resource type (e.g. `Encounter`) for episode-based ones. */
  readonly populationBasis: string;
  readonly improvementNotation: ImprovementNotation;
  readonly populations: readonly PopulationDefinition[];
  readonly stratifiers: readonly StratifierDefinition[];
}

export interface SupplementalDataDefinition {
  readonly id: string;
  readonly expression: string;
}

/** What Cairn evaluates of a Measure: frozen, validated, with every defaulting rule applied. */
export interface MeasureDefinition {
  /** The canonical the reports name: `url|version` when the Measure has a version, else `url` (or `Measure/<id>`). */
  readonly canonical: string;
  readonly id: string;
  readonly name: string | undefined;
  readonly title: string | undefined;
  /** The main CQL library named by `library[0]`: the last path segment of the canonical, and its `|version` if present. */
  readonly library: { readonly canonical: string; readonly name: string; readonly version: string | undefined };
  readonly effectivePeriod: { readonly start: string | undefined; readonly end: string | undefined };
  readonly groups: readonly GroupDefinition[];
  readonly supplementalData: readonly SupplementalDataDefinition[];
  /** Content oddities that did not stop evaluation (empty stratifier criteria, contradictory codings, ...). */
  readonly warnings: readonly string[];
}

export interface DefinitionOverrides {
  /** Replaces the coded improvement notation of every group (for content whose coding is known to be wrong). */
  readonly improvementNotation?: ImprovementNotation;
}

/** jsonPath renders a zod issue path as `$.a[0].b`. */
function jsonPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : `${acc}.${String(key)}`), '$');
}

function extension(extensions: readonly z.infer<typeof Extension>[] | undefined, url: string): z.infer<typeof Extension> | undefined {
  return extensions?.find((e) => e.url === url);
}

function codeOf(concept: z.infer<typeof CodeableConcept> | undefined, system?: string): { code: string; display: string | undefined } | undefined {
  const coding = concept?.coding?.find((c) => c.code !== undefined && (system === undefined || c.system === undefined || c.system === system));
  return coding?.code === undefined ? undefined : { code: coding.code, display: coding.display };
}

/** splitLibraryCanonical reads `http://host/Library/Name|1.0.0` as name `Name` and version `1.0.0`. */
export function splitLibraryCanonical(canonical: string): { name: string; version: string | undefined } {
  const bar = canonical.indexOf('|');
  const url = bar < 0 ? canonical : canonical.slice(0, bar);
  const version = bar < 0 ? undefined : canonical.slice(bar + 1) || undefined;
  const name = url.split('/').filter((segment) => segment !== '').pop() ?? url;
  return { name, version };
}

/**
 * parseMeasure validates a FHIR R4 Measure and reads it into a {@link MeasureDefinition}. Every
 * problem is reported at once as INPUT_INVALID with its JSON path; scoring other than proportion or
 * cohort is rejected naming the field. `file` only labels the problems.
 */
export function parseMeasure(json: unknown, file = 'Measure', overrides: DefinitionOverrides = {}): MeasureDefinition {
  const parsed = MeasureResource.safeParse(json);
  if (!parsed.success) {
    throw new CairnError('INPUT_INVALID', `${file} is not a usable FHIR R4 Measure`, {
      problems: parsed.error.issues.map((issue) => ({ code: 'INPUT_INVALID', file, path: jsonPath(issue.path), message: issue.message })),
    });
  }
  const measure = parsed.data;
  const problems: Problem[] = [];
  const warnings: string[] = [];
  const groups = measure.group.map((group, g) => readGroup(measure, group, g, file, problems, warnings, overrides));
  const supplementalData = (measure.supplementalData ?? []).flatMap((sde, i): SupplementalDataDefinition[] => {
    const expression = sde.criteria.expression?.trim();
    if (!expression) {
      warnings.push(`supplementalData[${i}] has no criteria.expression; it is not reported`);
      return [];
    }
    return [{ id: sde.id ?? `sde-${i + 1}`, expression }];
  });
  if (problems.length > 0) {
    throw new CairnError('INPUT_INVALID', `${file} has ${problems.length} problem(s) Cairn cannot evaluate`, { problems });
  }
  const libraryCanonical = measure.library[0] ?? '';
  const id = measure.id ?? measure.name ?? splitLibraryCanonical(libraryCanonical).name;
  const url = measure.url ?? `Measure/${id}`;
  return deepFreeze({
    canonical: measure.version === undefined ? url : `${url}|${measure.version}`,
    id,
    name: measure.name,
    title: measure.title,
    library: { canonical: libraryCanonical, ...splitLibraryCanonical(libraryCanonical) },
    effectivePeriod: { start: measure.effectivePeriod?.start, end: measure.effectivePeriod?.end },
    groups,
    supplementalData,
    warnings,
  });
}

function readGroup(
  measure: MeasureResource,
  group: MeasureResource['group'][number],
  g: number,
  file: string,
  problems: Problem[],
  warnings: string[],
  overrides: DefinitionOverrides,
): GroupDefinition {
  const at = `$.group[${g}]`;
  const groupId = group.id ?? `group-${g + 1}`;

  const scoringConcept = extension(group.extension, EXT_SCORING)?.valueCodeableConcept ?? measure.scoring;
  const scoringCode = codeOf(scoringConcept, MEASURE_SCORING_SYSTEM)?.code;
  let scoring: Scoring = 'proportion';
  if (scoringCode === 'proportion' || scoringCode === 'cohort') scoring = scoringCode;
  else {
    problems.push({
      code: 'INPUT_INVALID',
      file,
      path: scoringCode === undefined ? `${at}.extension(cqfm-scoring) / $.scoring` : extension(group.extension, EXT_SCORING) ? `${at}.extension(cqfm-scoring)` : '$.scoring',
      message: scoringCode === undefined ? 'the measure has no scoring' : `scoring '${scoringCode}' is not supported (Cairn scores proportion and cohort measures)`,
    });
  }

  const populationBasis = extension(group.extension, EXT_POPULATION_BASIS)?.valueCode ?? extension(measure.extension, EXT_POPULATION_BASIS)?.valueCode ?? 'boolean';

  const notationConcept = extension(group.extension, EXT_IMPROVEMENT_NOTATION)?.valueCodeableConcept ?? measure.improvementNotation;
  const notation = codeOf(notationConcept, IMPROVEMENT_NOTATION_SYSTEM);
  let improvementNotation: ImprovementNotation = notation?.code === 'decrease' ? 'decrease' : 'increase';
  if (notation !== undefined && notation.code !== 'increase' && notation.code !== 'decrease') {
    problems.push({ code: 'INPUT_INVALID', file, path: `${at} improvementNotation`, message: `improvement notation '${notation.code}' is neither increase nor decrease` });
  }
  const display = notation?.display?.trim().toLowerCase();
  if (notation !== undefined && (display === 'increase' || display === 'decrease') && display !== notation.code) {
    warnings.push(`group ${groupId}: improvement notation is coded '${notation.code}' but displayed '${display}'; the code is used${overrides.improvementNotation ? ` unless overridden (override: ${overrides.improvementNotation})` : ''}`);
  }
  if (overrides.improvementNotation !== undefined) improvementNotation = overrides.improvementNotation;

  const populations: PopulationDefinition[] = [];
  group.population.forEach((population, p) => {
    const code = codeOf(population.code, MEASURE_POPULATION_SYSTEM)?.code;
    const expression = population.criteria.expression?.trim();
    if (code === undefined || !(POPULATION_CODES as readonly string[]).includes(code)) {
      problems.push({ code: 'INPUT_INVALID', file, path: `${at}.population[${p}].code`, message: `population code '${code ?? '(none)'}' is not one proportion or cohort scoring uses` });
      return;
    }
    if (!expression) {
      problems.push({ code: 'INPUT_INVALID', file, path: `${at}.population[${p}].criteria.expression`, message: `population ${code} names no CQL define` });
      return;
    }
    if (populations.some((other) => other.code === code)) {
      problems.push({ code: 'INPUT_INVALID', file, path: `${at}.population[${p}].code`, message: `population ${code} appears twice in the group` });
      return;
    }
    populations.push({ id: population.id, code: code as PopulationCode, expression });
  });
  if (!populations.some((p) => p.code === 'initial-population')) {
    problems.push({ code: 'INPUT_INVALID', file, path: `${at}.population`, message: 'the group has no initial-population' });
  }
  if (scoring === 'proportion' && (!populations.some((p) => p.code === 'denominator') || !populations.some((p) => p.code === 'numerator'))) {
    problems.push({ code: 'INPUT_INVALID', file, path: `${at}.population`, message: 'a proportion group needs a denominator and a numerator' });
  }

  const stratifiers = (group.stratifier ?? []).map((stratifier, s): StratifierDefinition => {
    const expression = stratifier.criteria?.expression?.trim() || undefined;
    const id = stratifier.id ?? `stratifier-${s + 1}`;
    if (expression === undefined) {
      warnings.push(`group ${groupId} stratifier ${id} has no criteria.expression (a content defect); it is reported without strata`);
    }
    return { id, description: stratifier.description, expression };
  });

  return { id: groupId, scoring, populationBasis, improvementNotation, populations, stratifiers };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const field of Object.values(value)) deepFreeze(field);
  }
  return value;
}
