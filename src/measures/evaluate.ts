import { executeLibrary, type DefineResults } from '../cql-engine/execute.ts';
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

function reportPopulations(group: GroupDefinition, counts: PopulationCounts): ReportPopulation[] {
  return group.populations.map((p) => ({ ...(p.id === undefined ? {} : { id: p.id }), code: populationCode(p.code), count: counts[p.code] ?? 0 }));
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
  const walk = (node: JsonValue): void => {
    if (Array.isArray(node)) {
      node.forEach(walk);
      return;
    }
    if (node === null || typeof node !== 'object') return;
    if (typeof node.code === 'string' && (typeof node.system === 'string' || node.system === undefined)) {
      const coding: Coding = {
        ...(typeof node.system === 'string' ? { system: node.system } : {}),
        code: node.code,
        ...(typeof node.display === 'string' ? { display: node.display } : {}),
      };
      found.set(`${coding.system ?? ''}|${coding.code ?? ''}`, coding);
      return;
    }
    Object.values(node).forEach(walk);
  };
  walk(json);
  return [...found.values()];
}

/** The contained Observation holding one supplemental data element's value for one patient. */
function supplementalObservation(sde: SupplementalDataDefinition, value: unknown): ContainedResource | undefined {
  const json = toJsonValue(value);
  if (json === null || (Array.isArray(json) && json.length === 0)) return undefined;
  const codings = codingsIn(json);
  const valueConcept: CodeableConcept = codings.length > 0 ? { coding: codings } : { text: typeof json === 'string' ? json : stableStringify(json) };
  return { resourceType: 'Observation', id: sdeObservationId(sde), status: 'final', code: { text: sde.expression }, valueCodeableConcept: valueConcept };
}

/**
 * evaluateMeasurePatient runs the measure's CQL for one patient (raw data, or a {@link FhirPatient}
 * already indexed to run several measures over it) and returns the individual MeasureReport:
 * population counts per group after proportion semantics, the measure score when the patient is
 * in the scored denominator, strata, and supplemental data as contained Observations. The report
 * id is derived from the measure, patient and period. Throws EVALUATION_FAILED when the CQL fails.
 */
export async function evaluateMeasurePatient(prepared: PreparedMeasure, patientData: PatientData | FhirPatient, options: EvaluateMeasureOptions): Promise<IndividualReport> {
  const { definition } = prepared;
  const patient = patientData instanceof FhirPatient ? patientData : indexPatient(prepared.model, patientData, options.patientSource);
  const results = await executeLibrary(prepared.library, patient, {
    executionDateTime: options.executionDateTime ?? options.period.end,
    parameters: { [MEASUREMENT_PERIOD_PARAMETER]: options.period.interval },
    codeService: prepared.valueSets,
  });
  const patientId = patient.getId() ?? 'unknown';
  const anonymous = new Map<unknown, string>();
  const episodes = new Set<string>();

  const groups: ReportGroup[] = definition.groups.map((group) => {
    const raw: Partial<Record<PopulationCode, ReadonlySet<MemberKey>>> = {};
    for (const p of group.populations) raw[p.code] = membersOf(results[p.expression], group.populationBasis, anonymous);
    const membership = applyProportion(group, raw);
    if (group.populationBasis !== 'boolean') for (const key of membership['initial-population'] ?? []) if (!key.startsWith('#')) episodes.add(key);
    const counts = countsOf(group, membership);
    const score = proportionScore(group, counts);
    const stratifiers = group.stratifiers.map((s) => evaluateStratifier(group, s, membership, results, anonymous));
    return {
      id: group.id,
      extension: groupExtensions(group),
      population: reportPopulations(group, counts),
      ...(score === undefined ? {} : { measureScore: { value: score } }),
      ...(stratifiers.length === 0 ? {} : { stratifier: stratifiers }),
    };
  });

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
