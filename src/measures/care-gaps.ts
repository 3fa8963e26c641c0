import { deterministicUuid } from '../evaluate/ids.ts';
import type { GroupDefinition } from './definition.ts';
import { populationCodeOf, type CodeableConcept, type IndividualReport, type Reference, type ReportGroup } from './measure-report.ts';
import type { PreparedMeasure } from './prepare.ts';

/** DEQM gap status codes ({@link https://hl7.org/fhir/us/davinci-deqm/CodeSystem-gaps-status.html}). */
export type GapStatus = 'open-gap' | 'closed-gap';

export const GAP_STATUS_EXTENSION = 'http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-gapStatus';
export const GAP_STATUS_SYSTEM = 'http://hl7.org/fhir/us/davinci-deqm/CodeSystem/gaps-status';
export const DETECTED_ISSUE_PROFILE = 'http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/gaps-detectedissue-deqm';
const MEASURE_INFO_EXTENSION = 'http://hl7.org/fhir/StructureDefinition/cqf-measureInfo';

/**
 * A DEQM Gaps In Care DetectedIssue
 * ({@link https://hl7.org/fhir/us/davinci-deqm/StructureDefinition-gaps-detectedissue-deqm.html}):
 * code CAREGAP (v3-ActCode, the profile's pattern), the gap status as modifier extension, the
 * patient, and the individual MeasureReport as evidence.
 */
export interface CareGapIssue {
  readonly resourceType: 'DetectedIssue';
  readonly id: string;
  readonly meta: { readonly profile: readonly string[] };
  readonly extension: readonly { readonly url: string; readonly extension: readonly { readonly url: string; readonly valueCanonical?: string; readonly valueString?: string }[] }[];
  readonly modifierExtension: readonly { readonly url: string; readonly valueCodeableConcept: CodeableConcept }[];
  readonly status: 'preliminary';
  readonly code: CodeableConcept;
  readonly patient: Reference;
  readonly identifiedPeriod: { readonly start: string; readonly end: string };
  readonly evidence: readonly { readonly detail: readonly Reference[] }[];
}

function count(group: ReportGroup, code: string): number {
  return group.population.find((p) => populationCodeOf(p) === code)?.count ?? 0;
}

/**
 * gapStatus says whether one group of an individual report is a care gap: undefined when nobody
 * (no episode) is left in the scored denominator (denominator − exclusions − exceptions); otherwise
 * `open-gap` when some are not in the numerator (less numerator exclusions) for an `increase`
 * measure, or when some are in it for a `decrease` (inverse) measure such as CMS122; else
 * `closed-gap`. Cohort groups have no gaps.
 */
export function gapStatus(group: GroupDefinition, reportGroup: ReportGroup): GapStatus | undefined {
  if (group.scoring !== 'proportion') return undefined;
  const eligible = count(reportGroup, 'denominator') - count(reportGroup, 'denominator-exclusion') - count(reportGroup, 'denominator-exception');
  if (eligible <= 0) return undefined;
  const met = count(reportGroup, 'numerator') - count(reportGroup, 'numerator-exclusion');
  if (group.improvementNotation === 'decrease') return met > 0 ? 'open-gap' : 'closed-gap';
  return met < eligible ? 'open-gap' : 'closed-gap';
}

export interface CareGapOptions {
  /** Also return DetectedIssues for closed gaps (default: open gaps only). */
  readonly includeClosed?: boolean;
}

/**
 * careGaps builds a DEQM DetectedIssue for every group of the measure in which the patient of
 * `report` has a gap (and closed gaps too with `includeClosed`). The issue references the
 * individual report as `MeasureReport/<id>` (store or bundle it with that id) and names the
 * Measure canonical and group in a cqf-measureInfo extension; its id derives from the report id
 * and group, so reruns give the same ids.
 */
export function careGaps(prepared: PreparedMeasure, report: IndividualReport, options: CareGapOptions = {}): CareGapIssue[] {
  const issues: CareGapIssue[] = [];
  for (const group of prepared.definition.groups) {
    const reportGroup = report.group.find((g) => g.id === group.id);
    if (reportGroup === undefined) continue;
    const status = gapStatus(group, reportGroup);
    if (status === undefined || (status === 'closed-gap' && options.includeClosed !== true)) continue;
    issues.push({
      resourceType: 'DetectedIssue',
      id: deterministicUuid('DetectedIssue', report.id, group.id),
      meta: { profile: [DETECTED_ISSUE_PROFILE] },
      extension: [{
        url: MEASURE_INFO_EXTENSION,
        extension: [{ url: 'measure', valueCanonical: report.measure }, { url: 'groupId', valueString: group.id }],
      }],
      modifierExtension: [{ url: GAP_STATUS_EXTENSION, valueCodeableConcept: { coding: [{ system: GAP_STATUS_SYSTEM, code: status }] } }],
      status: 'preliminary',
      code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'CAREGAP', display: 'Care Gaps' }] },
      patient: report.subject,
      identifiedPeriod: report.period,
      evidence: [{ detail: [{ reference: `MeasureReport/${report.id}` }] }],
    });
  }
  return issues;
}

/** hasCareGap says whether the patient of `report` has an open gap in any group of the measure. */
export function hasCareGap(prepared: PreparedMeasure, report: IndividualReport): boolean {
  return careGaps(prepared, report).length > 0;
}
