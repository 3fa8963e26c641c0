import type { GroupDefinition, PopulationCode } from './definition.ts';

/**
 * Proportion (and cohort) population semantics over one patient's define results, following the
 * CQF Measures IG "Proportion Measure Scoring"
 * ({@link https://hl7.org/fhir/us/cqfmeasures/measure-conformance.html#proportion-measure-scoring}):
 *
 * - denominator ⊆ initial population;
 * - denominator exclusions ⊆ denominator;
 * - numerator ⊆ denominator − denominator exclusions;
 * - numerator exclusions ⊆ numerator;
 * - denominator exceptions ⊆ denominator − exclusions − numerator (an exception only counts for
 *   those not in the numerator).
 *
 * A patient-based group has one member, the patient (`true`); an episode-based group has one member
 * per distinct resource the define returns, identified by `resourceType/id`.
 */

/** The identity of a population member: `patient` for patient-based groups, `Type/id` for episodes. */
export type MemberKey = string;

/** Members per population code, after the cascade above. */
export type Membership = Readonly<Partial<Record<PopulationCode, ReadonlySet<MemberKey>>>>;

export const PATIENT_MEMBER: MemberKey = 'patient';

interface ResourceLike {
  readonly _json?: { readonly resourceType?: unknown; readonly id?: unknown };
  getId?(): unknown;
}

/**
 * memberKeyOf identifies an episode: `resourceType/id` of the FHIR record; records without an id
 * fall back to a per-evaluation object identity, so distinct id-less resources still count apart.
 */
function memberKeyOf(value: unknown, anonymous: Map<unknown, string>): MemberKey {
  const record = value as ResourceLike;
  const json = record?._json;
  if (json !== undefined && typeof json.resourceType === 'string' && typeof json.id === 'string' && json.id !== '') return `${json.resourceType}/${json.id}`;
  let key = anonymous.get(value);
  if (key === undefined) anonymous.set(value, (key = `#anonymous-${anonymous.size + 1}`));
  return key;
}

/**
 * membersOf reads one define's value as the set of members it selects: for a boolean basis `true`
 * selects the patient; for a resource basis every record of the returned list (or the single
 * returned record) is an episode. Null and false select nobody.
 */
export function membersOf(value: unknown, populationBasis: string, anonymous: Map<unknown, string>): Set<MemberKey> {
  if (value === null || value === undefined || value === false) return new Set();
  if (populationBasis === 'boolean') {
    if (value === true) return new Set([PATIENT_MEMBER]);
    // Content that declares a boolean basis but returns a list: non-empty selects the patient.
    return Array.isArray(value) && value.length > 0 ? new Set([PATIENT_MEMBER]) : new Set();
  }
  const items = Array.isArray(value) ? value : [value];
  return new Set(items.filter((item) => item !== null && item !== undefined && typeof item === 'object').map((item) => memberKeyOf(item, anonymous)));
}

function intersect(a: ReadonlySet<MemberKey>, b: ReadonlySet<MemberKey>): Set<MemberKey> {
  return new Set([...a].filter((key) => b.has(key)));
}

function minus(a: ReadonlySet<MemberKey>, ...others: readonly (ReadonlySet<MemberKey> | undefined)[]): Set<MemberKey> {
  return new Set([...a].filter((key) => !others.some((other) => other?.has(key) === true)));
}

/**
 * applyProportion computes the membership of each population of `group` from the raw define
 * results (`raw[code]` = members the define selects on its own).
 */
export function applyProportion(group: GroupDefinition, raw: Readonly<Partial<Record<PopulationCode, ReadonlySet<MemberKey>>>>): Membership {
  const has = (code: PopulationCode): boolean => group.populations.some((p) => p.code === code);
  const ip = raw['initial-population'] ?? new Set<MemberKey>();
  if (group.scoring === 'cohort') return { 'initial-population': ip };
  const denominator = has('denominator') ? intersect(raw.denominator ?? new Set(), ip) : new Set(ip);
  const exclusion = has('denominator-exclusion') ? intersect(raw['denominator-exclusion'] ?? new Set(), denominator) : undefined;
  const numerator = intersect(raw.numerator ?? new Set(), minus(denominator, exclusion));
  const numeratorExclusion = has('numerator-exclusion') ? intersect(raw['numerator-exclusion'] ?? new Set(), numerator) : undefined;
  const exception = has('denominator-exception') ? intersect(raw['denominator-exception'] ?? new Set(), minus(denominator, exclusion, numerator)) : undefined;
  return {
    'initial-population': ip,
    denominator,
    ...(exclusion === undefined ? {} : { 'denominator-exclusion': exclusion }),
    numerator,
    ...(numeratorExclusion === undefined ? {} : { 'numerator-exclusion': numeratorExclusion }),
    ...(exception === undefined ? {} : { 'denominator-exception': exception }),
  };
}

/** Population counts, as a MeasureReport carries them. */
export type PopulationCounts = Readonly<Partial<Record<PopulationCode, number>>>;

/**
 * proportionScore is (numerator − numerator exclusions) / (denominator − denominator exclusions −
 * denominator exceptions), or undefined when that denominator is 0 (or for cohort groups).
 */
export function proportionScore(group: GroupDefinition, counts: PopulationCounts): number | undefined {
  if (group.scoring !== 'proportion') return undefined;
  const denominator = (counts.denominator ?? 0) - (counts['denominator-exclusion'] ?? 0) - (counts['denominator-exception'] ?? 0);
  if (denominator <= 0) return undefined;
  return ((counts.numerator ?? 0) - (counts['numerator-exclusion'] ?? 0)) / denominator;
}
