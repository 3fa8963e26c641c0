/**
 * FHIR R4 MeasureReport ({@link https://hl7.org/fhir/R4/measurereport.html}) as Cairn writes it:
 * only the elements Cairn fills, readonly, with spec field names.
 */
import { deterministicUuid } from '../evaluate/ids.ts';
import { IMPROVEMENT_NOTATION_SYSTEM, MEASURE_POPULATION_SYSTEM, type GroupDefinition, type ImprovementNotation, type PopulationCode, type SupplementalDataDefinition } from './definition.ts';

export interface Coding {
  readonly system?: string;
  readonly code?: string;
  readonly display?: string;
}
export interface CodeableConcept {
  readonly coding?: readonly Coding[];
  readonly text?: string;
}
export interface Reference {
  readonly reference: string;
  readonly display?: string;
}
export interface Extension {
  readonly url: string;
  readonly valueReference?: Reference;
  readonly valueCode?: string;
  readonly valueCodeableConcept?: CodeableConcept;
  readonly valueString?: string;
}

/** {@link https://hl7.org/fhir/R4/measurereport-definitions.html#MeasureReport.group.population} */
export interface ReportPopulation {
  readonly id?: string;
  readonly code: CodeableConcept;
  readonly count: number;
  readonly subjectResults?: Reference;
}

export interface ReportStratum {
  readonly value: CodeableConcept;
  readonly population: readonly ReportPopulation[];
  readonly measureScore?: { readonly value: number };
}

export interface ReportStratifier {
  /** The Measure's stratifier id, so strata can be matched to their definition. */
  readonly id: string;
  readonly code?: readonly CodeableConcept[];
  readonly stratum: readonly ReportStratum[];
}

export interface ReportGroup {
  readonly id: string;
  readonly extension?: readonly Extension[];
  readonly population: readonly ReportPopulation[];
  readonly measureScore?: { readonly value: number };
  readonly stratifier?: readonly ReportStratifier[];
}

export type ReportType = 'individual' | 'summary' | 'subject-list';

/** A contained resource: the supplemental-data Observations and subject Lists Cairn writes. */
export interface ContainedResource {
  readonly resourceType: string;
  readonly id: string;
  readonly [field: string]: unknown;
}

export interface MeasureReport {
  readonly resourceType: 'MeasureReport';
  readonly id: string;
  readonly contained?: readonly ContainedResource[];
  readonly extension?: readonly Extension[];
  readonly status: 'complete';
  readonly type: ReportType;
  readonly measure: string;
  readonly subject?: Reference;
  readonly period: { readonly start: string; readonly end: string };
  readonly improvementNotation?: CodeableConcept;
  readonly group: readonly ReportGroup[];
  readonly evaluatedResource?: readonly Reference[];
}

/** An individual MeasureReport: one patient's populations, strata and supplemental data. */
export type IndividualReport = MeasureReport & { readonly type: 'individual'; readonly subject: Reference };

const DISPLAY: Readonly<Record<PopulationCode, string>> = {
  'initial-population': 'Initial Population',
  denominator: 'Denominator',
  'denominator-exclusion': 'Denominator Exclusion',
  'denominator-exception': 'Denominator Exception',
  numerator: 'Numerator',
  'numerator-exclusion': 'Numerator Exclusion',
};

export function populationCode(code: PopulationCode): CodeableConcept {
  return { coding: [{ system: MEASURE_POPULATION_SYSTEM, code, display: DISPLAY[code] }] };
}

/** populationCodeOf reads the measure-population code of a report population. */
export function populationCodeOf(population: ReportPopulation): string | undefined {
  return population.code.coding?.find((c) => c.system === undefined || c.system === MEASURE_POPULATION_SYSTEM)?.code;
}

export function improvementNotationConcept(notation: ImprovementNotation): CodeableConcept {
  return {
    coding: [{
      system: IMPROVEMENT_NOTATION_SYSTEM,
      code: notation,
      display: notation === 'increase' ? 'Increased score indicates improvement' : 'Decreased score indicates improvement',
    }],
  };
}

export const EXT_GROUP_IMPROVEMENT_NOTATION = 'http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-improvementNotation';
export const EXT_POPULATION_BASIS = 'http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-populationBasis';
/** DEQM supplemental data reference ({@link https://hl7.org/fhir/us/davinci-deqm/StructureDefinition-extension-supplementalData.html}). */
export const EXT_SUPPLEMENTAL_DATA = 'http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-supplementalData';

/** groupExtensions says, on each report group, how it was scored (improvement notation and population basis). */
export function groupExtensions(group: GroupDefinition): Extension[] {
  return [
    { url: EXT_GROUP_IMPROVEMENT_NOTATION, valueCodeableConcept: improvementNotationConcept(group.improvementNotation) },
    { url: EXT_POPULATION_BASIS, valueCode: group.populationBasis },
  ];
}

/** fhirId makes a valid FHIR id (`[A-Za-z0-9\-.]{1,64}`) from text, hashing it when too long. */
export function fhirId(text: string): string {
  const cleaned = text.replace(/[^A-Za-z0-9\-.]/g, '-');
  return cleaned.length <= 64 && cleaned.length > 0 ? cleaned : deterministicUuid(text);
}

/** sdeObservationId is the id of the contained Observation carrying a supplemental data element (`sde-...`). */
export function sdeObservationId(sde: SupplementalDataDefinition): string {
  return fhirId(sde.id.startsWith('sde-') ? sde.id : `sde-${sde.id}`);
}
