import type { TerminologyProvider } from 'cql-execution';
import { PatientLibraryContexts, PatientSession, type DefineResults } from '../cql-engine/execute.ts';
import type { FhirModel } from '../cql-engine/fhir-model.ts';
import { FhirPatient, indexPatient, type PatientData, type PatientSourceOptions } from '../cql-engine/patient-source.ts';
import { toJsonValue, type JsonValue } from '../cql-engine/values.ts';
import { deterministicUuid, stableStringify } from '../evaluate/ids.ts';
import type { GroupDefinition, PopulationCode, StratifierDefinition, SupplementalDataDefinition } from './definition.ts';
import {
  EXT_SUPPLEMENTAL_DATA,
  groupExtensions,
  improvementNotationConcept,
  populationCode,
  type CodeableConcept,
  type Coding,
  type ContainedResource,
  type Extension,
  type IndividualReport,
  type ReportGroup,
  type ReportPopulation,
  type ReportStratifier,
  sdeObservationId,
} from './measure-report.ts';
import { resolvePeriod, type MeasurementPeriod, type PeriodInput } from './period.ts';
import { applyProportion, membersOf, proportionScore, type MemberKey, type Membership, type PopulationCounts } from './populations.ts';
import type { PreparedMeasure } from './prepare.ts';

/** The CQL parameter every eCQM declares as `parameter "Measurement Period" Interval<DateTime>`. */
export const MEASUREMENT_PERIOD_PARAMETER = 'Measurement Period';

export interface EvaluateMeasureOptions {
  /** The measurement period; see {@link measurementPeriod}. */
  readonly period: MeasurementPeriod;
  /** CQL `Now()`; defaults to the end of the measurement period, so results never depend on the clock. */
  readonly executionDateTime?: string;
  readonly patientSource?: PatientSourceOptions;
}

/** measurementPeriod resolves the requested period (dates or date-times), or else the Measure's effectivePeriod. */
export function measurementPeriod(prepared: PreparedMeasure, requested?: Partial<PeriodInput>): MeasurementPeriod {
  return resolvePeriod(requested, prepared.definition.effectivePeriod, prepared.definition.canonical);
}

function countsOf(group: GroupDefinition, membership: Membership, within?: ReadonlySet<MemberKey>): PopulationCounts {
  const counts: Partial<Record<PopulationCode, number>> = {};
  for (const { code } of group.populations) {
    const members = membership[code];
    if (members === undefined) continue;
    counts[code] = within === undefined ? members.size : [...members].filter((m) => within.has(m)).length;
  }
  return counts;
}

/** What every report of a group repeats, built once per group: frozen, so reports may share it. */
interface GroupShape {
  readonly extension: readonly Extension[];
  readonly populations: readonly { readonly code: PopulationCode; readonly zero: ReportPopulation; readonly one: ReportPopulation; readonly id: string | undefined; readonly concept: CodeableConcept }[];
  /** Every population with count 0: most patients' reports, shared. */
  readonly none: readonly ReportPopulation[];
}

const shapes = new WeakMap<GroupDefinition, GroupShape>();

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const field of Object.values(value)) deepFreeze(field);
    Object.freeze(value);
  }
  return value;
}

function populationEntry(id: string | undefined, code: CodeableConcept, count: number): ReportPopulation {
  return id === undefined ? { code, count } : { id, code, count };
}

function shapeOf(group: GroupDefinition): GroupShape {
  let shape = shapes.get(group);
  if (shape === undefined) {
    const populations = group.populations.map((p) => {
      const concept = populationCode(p.code);
      return { code: p.code, id: p.id, concept, zero: populationEntry(p.id, concept, 0), one: populationEntry(p.id, concept, 1) };
    });
    shape = deepFreeze({ extension: groupExtensions(group), populations, none: populations.map((p) => p.zero) });
    shapes.set(group, shape);
  }
  return shape;
}

function reportPopulations(group: GroupDefinition, counts: PopulationCounts): readonly ReportPopulation[] {
  const shape = shapeOf(group);
  let out: ReportPopulation[] | undefined;
  for (let i = 0; i < shape.populations.length; i++) {
    const p = shape.populations[i] as GroupShape['populations'][number];
    const count = counts[p.code] ?? 0;
    if (count === 0 && out === undefined) continue;
    out ??= shape.none.slice(0, i);
    out.push(count === 0 ? p.zero : count === 1 ? p.one : populationEntry(p.id, p.concept, count));
  }
  return out ?? shape.none;
}

/** stratumValue names the stratum a non-boolean stratifier value puts the patient in (codes by their code). */
export function stratumValue(value: unknown): CodeableConcept {
  const json = toJsonValue(value);
  if (typeof json === 'string' || typeof json === 'number' || typeof json === 'boolean') return { text: String(json) };
  const codings = codingsIn(json);
  if (codings.length > 0) return { coding: codings, text: codings.map((c) => c.code).join(',') };
  return { text: stableStringify(json) };
}

function isRecordList(value: unknown): boolean {
  const items = Array.isArray(value) ? value : [value];
  return items.length > 0 && items.every((item) => typeof item === 'object' && item !== null && (item as { _json?: unknown })._json !== undefined);
}

function evaluateStratifier(
  group: GroupDefinition,
  stratifier: StratifierDefinition,
  membership: Membership,
  results: DefineResults,
  anonymous: Map<unknown, string>,
): ReportStratifier {
  const code = [{ text: stratifier.expression ?? stratifier.id }];
  if (stratifier.expression === undefined) return { id: stratifier.id, code, stratum: [] };
  const value = results[stratifier.expression];
  if (value === null || value === undefined || value === false || (Array.isArray(value) && value.length === 0)) return { id: stratifier.id, code, stratum: [] };
  let within: ReadonlySet<MemberKey> | undefined;
  let stratum: CodeableConcept = { text: 'true' };
  if (group.populationBasis !== 'boolean' && isRecordList(value)) within = membersOf(value, group.populationBasis, anonymous);
  else if (value !== true) stratum = stratumValue(value);
  const counts = countsOf(group, membership, within);
  const score = proportionScore(group, counts);
  return {
    id: stratifier.id,
    code,
    stratum: [{ value: stratum, population: reportPopulations(group, counts), ...(score === undefined ? {} : { measureScore: { value: score } }) }],
  };
}

/** codingsIn collects every `{system, code}` found in a JSON value (SDE tuples, Codes, Concepts, lists of them). */
export function codingsIn(json: JsonValue): Coding[] {
  const found = new Map<string, Coding>();
  collectCodings(json, found);
  return [...found.values()];
}

function collectCodings(node: JsonValue, found: Map<string, Coding>): void {
  if (Array.isArray(node)) {
    for (const item of node) collectCodings(item, found);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const { system, code, display } = node;
  if (typeof code === 'string' && (typeof system === 'string' || system === undefined)) {
    const coding: { system?: string; code: string; display?: string } = typeof system === 'string' ? { system, code } : { code };
    if (typeof display === 'string') coding.display = display;
    found.set(`${system ?? ''}|${code}`, coding);
    return;
  }
  for (const key in node) collectCodings(node[key] as JsonValue, found);
}

/**
 * Supplemental data values as CodeableConcepts (null: no value), per CQL value object. Measures
 * sharing a session share their supplemental-data library's results, so every eCQM's "SDE Race"
 * is one object per patient: converted once. Frozen, as reports share them.
 */
const sdeConcepts = new WeakMap<object, CodeableConcept | null>();

function sdeConcept(value: unknown): CodeableConcept | null {
  const known = typeof value === 'object' && value !== null ? sdeConcepts.get(value) : undefined;
  if (known !== undefined) return known;
  const json = toJsonValue(value);
  let concept: CodeableConcept | null = null;
  if (json !== null && !(Array.isArray(json) && json.length === 0)) {
    const codings = codingsIn(json);
    concept = deepFreeze(codings.length > 0 ? { coding: codings } : { text: typeof json === 'string' ? json : stableStringify(json) });
  }
  if (typeof value === 'object' && value !== null) sdeConcepts.set(value, concept);
  return concept;
}

/** The contained Observation holding one supplemental data element's value for one patient. */
function supplementalObservation(sde: SupplementalDataDefinition, value: unknown): ContainedResource | undefined {
  const valueConcept = sdeConcept(value);
  if (valueConcept === null) return undefined;
  return { resourceType: 'Observation', id: sdeObservationId(sde), status: 'final', code: { text: sde.expression }, valueCodeableConcept: valueConcept };
}

/**
 * MeasurePatient is one patient's data ready for several measures: indexed once, and measures
 * evaluated with the same terminology, measurement period and instant share one CQL session, so
 * the libraries they all include (SupplementalDataElements, Hospice, PalliativeCare, ...) run once
 * for the patient instead of once per measure; libraries that read neither the period nor the
 * clock (SupplementalDataElements) are shared by the sessions of different periods too. Make one
 * per patient, never across patients.
 */
export class MeasurePatient {
  readonly patient: FhirPatient;
  readonly #sessions = new Map<TerminologyProvider, Map<string, PatientSession>>();
  readonly #acrossSessions = new PatientLibraryContexts();

  constructor(patient: FhirPatient) {
    this.patient = patient;
  }

  /** session is the CQL session for measures with this terminology, period and `Now()`. */
  session(valueSets: TerminologyProvider, period: MeasurementPeriod, executionDateTime: string): PatientSession {
    let byPeriod = this.#sessions.get(valueSets);
    if (byPeriod === undefined) this.#sessions.set(valueSets, (byPeriod = new Map()));
    const key = `${period.start}|${period.end}|${executionDateTime}`;
    let session = byPeriod.get(key);
    if (session === undefined) {
      session = new PatientSession(this.patient, { executionDateTime, parameters: { [MEASUREMENT_PERIOD_PARAMETER]: period.interval }, codeService: valueSets }, this.#acrossSessions);
      byPeriod.set(key, session);
    }
    return session;
  }
}

/** measurePatient indexes one patient's data for {@link evaluateMeasurePatient} over several measures. */
export function measurePatient(model: FhirModel, patientData: PatientData | FhirPatient, options?: PatientSourceOptions): MeasurePatient {
  return new MeasurePatient(patientData instanceof FhirPatient ? patientData : indexPatient(model, patientData, options));
}

const selectsNobody = (value: unknown): boolean => value === null || value === undefined || value === false || (Array.isArray(value) && value.length === 0);

/**
 * measureResults runs the defines a measure reads, and no others: each group's initial population
 * first; only when it selects someone the group's other populations (which all lie within it, so
 * they would count nobody otherwise); then every stratifier and supplemental data expression, whose
 * values the report carries whatever the populations.
 */
async function measureResults(prepared: PreparedMeasure, session: PatientSession): Promise<DefineResults> {
  const plan = planOf(prepared);
  const results: Record<string, unknown> = {};
  for (const group of plan.groups) {
    await evaluateInto(session, prepared, results, group.initial);
    if (group.initial.length === 0 || group.initial.some((name) => !selectsNobody(results[name]))) await evaluateInto(session, prepared, results, group.populations);
    await evaluateInto(session, prepared, results, group.strata);
  }
  await evaluateInto(session, prepared, results, plan.supplementalData);
  return results;
}

/** The define names a measure reads, per group and for supplemental data (see {@link measureResults}). */
interface MeasurePlan {
  readonly groups: readonly { readonly initial: readonly string[]; readonly populations: readonly string[]; readonly strata: readonly string[] }[];
  readonly supplementalData: readonly string[];
}

const plans = new WeakMap<PreparedMeasure, MeasurePlan>();

function planOf(prepared: PreparedMeasure): MeasurePlan {
  let plan = plans.get(prepared);
  if (plan === undefined) {
    const { definition } = prepared;
    plan = {
      groups: definition.groups.map((group) => ({
        initial: group.populations.filter((p) => p.code === 'initial-population').map((p) => p.expression),
        populations: group.populations.map((p) => p.expression),
        strata: group.stratifiers.flatMap((s) => (s.expression === undefined ? [] : [s.expression])),
      })),
      supplementalData: definition.supplementalData.map((sde) => sde.expression),
    };
    plans.set(prepared, plan);
  }
  return plan;
}

/** evaluateInto adds to `results` those of `names` not there yet. */
async function evaluateInto(session: PatientSession, prepared: PreparedMeasure, results: Record<string, unknown>, names: readonly string[]): Promise<void> {
  let wanted: string[] | undefined;
  for (const name of names) if (!(name in results)) (wanted ??= []).push(name);
  if (wanted !== undefined) Object.assign(results, await session.evaluate(prepared.library, wanted));
}

/**
 * evaluateMeasurePatient runs the measure's CQL for one patient (raw data, an indexed
 * {@link FhirPatient}, or a {@link MeasurePatient} shared with the other measures evaluated for
 * that patient) and returns the individual MeasureReport: population counts per group after
 * proportion semantics, the measure score when the patient is in the scored denominator, strata,
 * and supplemental data as contained Observations. Only the defines the report needs run (see
 * {@link measureResults}). The report id is derived from the measure, patient and period. Throws
 * EVALUATION_FAILED when the CQL fails.
 */
export async function evaluateMeasurePatient(prepared: PreparedMeasure, patientData: PatientData | FhirPatient | MeasurePatient, options: EvaluateMeasureOptions): Promise<IndividualReport> {
  const { definition } = prepared;
  const shared = patientData instanceof MeasurePatient ? patientData : measurePatient(prepared.model, patientData, options.patientSource);
  const patient = shared.patient;
  const session = shared.session(prepared.valueSets, options.period, options.executionDateTime ?? options.period.end);
  const results = await measureResults(prepared, session);
  const patientId = patient.getId() ?? 'unknown';
  const anonymous = new Map<unknown, string>();
  const episodes = new Set<string>();

  const groups: ReportGroup[] = [];
  for (const group of definition.groups) {
    const raw: Partial<Record<PopulationCode, ReadonlySet<MemberKey>>> = {};
    for (const p of group.populations) raw[p.code] = membersOf(results[p.expression], group.populationBasis, anonymous);
    const membership = applyProportion(group, raw);
    if (group.populationBasis !== 'boolean') for (const key of membership['initial-population'] ?? []) if (!key.startsWith('#')) episodes.add(key);
    const counts = countsOf(group, membership);
    const score = proportionScore(group, counts);
    const reportGroup: { -readonly [K in keyof ReportGroup]: ReportGroup[K] } = { id: group.id, extension: shapeOf(group).extension, population: reportPopulations(group, counts) };
    if (score !== undefined) reportGroup.measureScore = { value: score };
    if (group.stratifiers.length > 0) reportGroup.stratifier = group.stratifiers.map((s) => evaluateStratifier(group, s, membership, results, anonymous));
    groups.push(reportGroup);
  }

  const contained: ContainedResource[] = [];
  const extension: Extension[] = [];
  for (const sde of definition.supplementalData) {
    const observation = supplementalObservation(sde, results[sde.expression]);
    if (observation === undefined) continue;
    contained.push(observation);
    extension.push({ url: EXT_SUPPLEMENTAL_DATA, valueReference: { reference: `#${observation.id}` } });
  }

  const first = definition.groups[0];
  return {
    resourceType: 'MeasureReport',
    id: deterministicUuid('MeasureReport', 'individual', definition.canonical, patientId, options.period.start, options.period.end),
    ...(contained.length === 0 ? {} : { contained }),
    ...(extension.length === 0 ? {} : { extension }),
    status: 'complete',
    type: 'individual',
    measure: definition.canonical,
    subject: { reference: `Patient/${patientId}` },
    period: { start: options.period.start, end: options.period.end },
    ...(first === undefined ? {} : { improvementNotation: improvementNotationConcept(first.improvementNotation) }),
    group: groups,
    ...(episodes.size === 0 ? {} : { evaluatedResource: [...episodes].sort().map((reference) => ({ reference })) }),
  };
}
