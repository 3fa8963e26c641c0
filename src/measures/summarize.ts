import { CairnError } from '../domain/errors.ts';
import { deterministicUuid, stableStringify } from '../evaluate/ids.ts';
import type { GroupDefinition, PopulationCode } from './definition.ts';
import {
  EXT_SUPPLEMENTAL_DATA,
  groupExtensions,
  improvementNotationConcept,
  populationCode,
  populationCodeOf,
  type CodeableConcept,
  type Coding,
  type ContainedResource,
  type Extension,
  type IndividualReport,
  type MeasureReport,
  type ReportGroup,
  type ReportPopulation,
  type ReportStratifier,
  sdeObservationId,
} from './measure-report.ts';
import { proportionScore, type PopulationCounts } from './populations.ts';
import type { PreparedMeasure } from './prepare.ts';

/** Which population report to build from individual reports. */
export type PopulationReportType = 'summary' | 'subject-list';

export interface SummarizeOptions {
  readonly type?: PopulationReportType;
  /** The measurement period; required when there may be no reports, checked against every report otherwise. */
  readonly period?: { readonly start: string; readonly end: string };
}

type Counts = Partial<Record<PopulationCode, number>>;

interface StratumTotals {
  readonly value: CodeableConcept;
  readonly counts: Counts;
}

interface GroupTotals {
  readonly counts: Counts;
  /** Patients (subject references) with a non-zero count, per population. */
  readonly subjects: Map<PopulationCode, Set<string>>;
  /** stratifier id -> stratum key -> totals. */
  readonly strata: Map<string, Map<string, StratumTotals>>;
}

function add(into: Counts, populations: readonly ReportPopulation[], group: GroupDefinition): void {
  for (const population of populations) {
    const code = populationCodeOf(population);
    if (group.populations.some((p) => p.code === code)) into[code as PopulationCode] = (into[code as PopulationCode] ?? 0) + population.count;
  }
}

function reportPopulations(group: GroupDefinition, counts: PopulationCounts, subjectResults?: (code: PopulationCode) => string): ReportPopulation[] {
  return group.populations.map((p) => ({
    ...(p.id === undefined ? {} : { id: p.id }),
    code: populationCode(p.code),
    count: counts[p.code] ?? 0,
    ...(subjectResults === undefined ? {} : { subjectResults: { reference: `#${subjectResults(p.code)}` } }),
  }));
}

function score(group: GroupDefinition, counts: PopulationCounts): { measureScore?: { value: number } } {
  const value = proportionScore(group, counts);
  return value === undefined ? {} : { measureScore: { value } };
}

/** An incremental summary of one measure: add individual reports one at a time (memory grows only with subject ids). */
export interface MeasureSummarizer {
  add(report: IndividualReport): void;
  /** finish builds the population report of everything added so far. */
  finish(type?: PopulationReportType): MeasureReport;
  /** state is everything added so far as plain data (structured-cloneable): for summaries built on several threads. */
  state(): SummaryState;
  /** merge adds a state exported by a summarizer of the same measure (and period); the result is as if its reports were added here. */
  merge(state: SummaryState): void;
}

/** A summarizer's totals as plain data (see {@link MeasureSummarizer.state}). */
export interface SummaryState {
  readonly measure: string;
  readonly period: { readonly start: string; readonly end: string } | undefined;
  readonly subjects: readonly string[];
  readonly groups: readonly {
    readonly id: string;
    readonly counts: Counts;
    readonly subjects: readonly (readonly [PopulationCode, readonly string[]])[];
    readonly strata: readonly (readonly [string, readonly (readonly [string, StratumTotals])[]])[];
  }[];
  readonly sde: readonly (readonly [string, readonly (readonly [string, { readonly coding: Coding | undefined; readonly text: string | undefined; readonly count: number }])[]])[];
}

/** createSummarizer starts an incremental {@link summarize}; the nightly batch feeds it patient by patient. */
export function createSummarizer(prepared: PreparedMeasure, options: Omit<SummarizeOptions, 'type'> = {}): MeasureSummarizer {
  const { definition } = prepared;
  const totals = new Map<string, GroupTotals>(definition.groups.map((g) => [g.id, { counts: {}, subjects: new Map(), strata: new Map() }]));
  const sde = new Map<string, Map<string, { coding: Coding | undefined; text: string | undefined; count: number }>>();
  const subjects: string[] = [];
  let period: { start: string; end: string } | undefined = options.period === undefined ? undefined : { start: options.period.start, end: options.period.end };


  const addReport = (report: IndividualReport): void => {
      if (report.measure !== definition.canonical) {
        throw new CairnError('INPUT_INVALID', `An individual report of ${report.measure} cannot be summarized into ${definition.canonical}`, { context: { report: report.id } });
      }
      period ??= report.period;
      if (report.period.start !== period.start || report.period.end !== period.end) {
        throw new CairnError('INPUT_INVALID', `Individual reports cover different periods (${period.start}..${period.end} and ${report.period.start}..${report.period.end})`);
      }
      const subject = report.subject.reference;
      subjects.push(subject);
      for (const reportGroup of report.group) {
        const group = definition.groups.find((g) => g.id === reportGroup.id);
        const total = totals.get(reportGroup.id);
        if (group === undefined || total === undefined) continue;
        add(total.counts, reportGroup.population, group);
        for (const population of reportGroup.population) {
          const code = populationCodeOf(population) as PopulationCode;
          if (population.count <= 0) continue;
          let set = total.subjects.get(code);
          if (set === undefined) total.subjects.set(code, (set = new Set()));
          set.add(subject);
        }
        for (const stratifier of reportGroup.stratifier ?? []) {
          let byValue = total.strata.get(stratifier.id);
          if (byValue === undefined) total.strata.set(stratifier.id, (byValue = new Map()));
          for (const stratum of stratifier.stratum) {
            const key = stableStringify(stratum.value);
            let stratumTotals = byValue.get(key);
            if (stratumTotals === undefined) byValue.set(key, (stratumTotals = { value: stratum.value, counts: {} }));
            add(stratumTotals.counts, stratum.population, group);
          }
        }
      }
      for (const resource of report.contained ?? []) {
        if (resource.resourceType !== 'Observation' || !resource.id.startsWith('sde-')) continue;
        const value = resource.valueCodeableConcept as CodeableConcept | undefined;
        let byCode = sde.get(resource.id);
        if (byCode === undefined) sde.set(resource.id, (byCode = new Map()));
        const entries: { coding: Coding | undefined; text: string | undefined }[] = value?.coding?.length ? value.coding.map((coding) => ({ coding, text: undefined })) : [{ coding: undefined, text: value?.text }];
        for (const entry of entries) {
          const key = stableStringify(entry);
          const existing = byCode.get(key);
          if (existing === undefined) byCode.set(key, { ...entry, count: 1 });
          else existing.count += 1;
        }
      }
  };

  const finish = (type: PopulationReportType = 'summary'): MeasureReport => {
    if (period === undefined) throw new CairnError('INPUT_INVALID', `No individual reports and no period to summarize ${definition.canonical} over`);
    const effectivePeriod = period;
    const id = deterministicUuid('MeasureReport', type, definition.canonical, effectivePeriod.start, effectivePeriod.end, [...subjects].sort().join('\n'));
    const contained: ContainedResource[] = [];
    const groups: ReportGroup[] = definition.groups.map((group) => {
      const total = totals.get(group.id) as GroupTotals;
      const listId = (code: PopulationCode): string => {
        const listIdentifier = `list-${contained.length + 1}`;
        const members = [...(total.subjects.get(code) ?? [])].sort();
        contained.push({ resourceType: 'List', id: listIdentifier, status: 'current', mode: 'snapshot', title: `${group.id} ${code}`, entry: members.map((reference) => ({ item: { reference } })) });
        return listIdentifier;
      };
      const stratifiers: ReportStratifier[] = group.stratifiers.map((s) => ({
        id: s.id,
        code: [{ text: s.expression ?? s.id }],
        stratum: [...(total.strata.get(s.id)?.values() ?? [])]
          .sort((a, b) => stableStringify(a.value).localeCompare(stableStringify(b.value)))
          .map((stratum) => ({ value: stratum.value, population: reportPopulations(group, stratum.counts), ...score(group, stratum.counts) })),
      }));
      return {
        id: group.id,
        extension: groupExtensions(group),
        population: reportPopulations(group, total.counts, type === 'subject-list' ? listId : undefined),
        ...score(group, total.counts),
        ...(stratifiers.length === 0 ? {} : { stratifier: stratifiers }),
      };
    });

    const extension: Extension[] = [];
    for (const [observationId, byCode] of [...sde.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      const sdeDefinition = definition.supplementalData.find((d) => sdeObservationId(d) === observationId);
      [...byCode.values()]
        .sort((a, b) => stableStringify(a).localeCompare(stableStringify(b)))
        .forEach((entry, i) => {
          const resource: ContainedResource = {
            resourceType: 'Observation',
            id: `${observationId}-${i + 1}`,
            status: 'final',
            code: { text: sdeDefinition?.expression ?? observationId },
            valueCodeableConcept: entry.coding === undefined ? { text: entry.text } : { coding: [entry.coding] },
            component: [{ code: { text: 'count' }, valueInteger: entry.count }],
          };
          contained.push(resource);
          extension.push({ url: EXT_SUPPLEMENTAL_DATA, valueReference: { reference: `#${resource.id}` } });
        });
    }

    const first = definition.groups[0];
    return {
      resourceType: 'MeasureReport',
      id,
      ...(contained.length === 0 ? {} : { contained }),
      ...(extension.length === 0 ? {} : { extension }),
      status: 'complete',
      type,
      measure: definition.canonical,
      period: effectivePeriod,
      ...(first === undefined ? {} : { improvementNotation: improvementNotationConcept(first.improvementNotation) }),
      group: groups,
    };
  };
  const addCounts = (into: Counts, from: Counts): void => {
    for (const [code, count] of Object.entries(from) as [PopulationCode, number][]) into[code] = (into[code] ?? 0) + count;
  };

  const state = (): SummaryState => ({
    measure: definition.canonical,
    period,
    subjects: [...subjects],
    groups: [...totals.entries()].map(([id, total]) => ({
      id,
      counts: { ...total.counts },
      subjects: [...total.subjects.entries()].map(([code, set]) => [code, [...set]] as const),
      strata: [...total.strata.entries()].map(([stratifier, byValue]) => [stratifier, [...byValue.entries()]] as const),
    })),
    sde: [...sde.entries()].map(([id, byCode]) => [id, [...byCode.entries()]] as const),
  });

  const merge = (other: SummaryState): void => {
    if (other.measure !== definition.canonical) {
      throw new CairnError('INPUT_INVALID', `A summary of ${other.measure} cannot be merged into ${definition.canonical}`);
    }
    if (other.period !== undefined) {
      period ??= { start: other.period.start, end: other.period.end };
      if (other.period.start !== period.start || other.period.end !== period.end) {
        throw new CairnError('INPUT_INVALID', `Summaries cover different periods (${period.start}..${period.end} and ${other.period.start}..${other.period.end})`);
      }
    }
    subjects.push(...other.subjects);
    for (const group of other.groups) {
      const total = totals.get(group.id);
      if (total === undefined) continue;
      addCounts(total.counts, group.counts);
      for (const [code, members] of group.subjects) {
        let set = total.subjects.get(code);
        if (set === undefined) total.subjects.set(code, (set = new Set()));
        for (const member of members) set.add(member);
      }
      for (const [stratifier, entries] of group.strata) {
        let byValue = total.strata.get(stratifier);
        if (byValue === undefined) total.strata.set(stratifier, (byValue = new Map()));
        for (const [key, stratum] of entries) {
          let stratumTotals = byValue.get(key);
          if (stratumTotals === undefined) byValue.set(key, (stratumTotals = { value: stratum.value, counts: {} }));
          addCounts(stratumTotals.counts, stratum.counts);
        }
      }
    }
    for (const [id, entries] of other.sde) {
      let byCode = sde.get(id);
      if (byCode === undefined) sde.set(id, (byCode = new Map()));
      for (const [key, entry] of entries) {
        const existing = byCode.get(key);
        if (existing === undefined) byCode.set(key, { coding: entry.coding, text: entry.text, count: entry.count });
        else existing.count += entry.count;
      }
    }
  };

  return { add: addReport, finish, state, merge };
}

/**
 * summarize aggregates individual reports of one measure and period into a `summary` report
 * (counts and score per group and stratum, supplemental data counts) or a `subject-list` report
 * (the same, with each group population pointing at a contained List of its patients). The id is
 * derived from the measure, period and the set of subjects, so the same inputs give the same
 * report. Reports of another measure or period are rejected with INPUT_INVALID.
 */
export function summarize(prepared: PreparedMeasure, reports: Iterable<IndividualReport>, options: SummarizeOptions = {}): MeasureReport {
  const summarizer = createSummarizer(prepared, options);
  for (const report of reports) summarizer.add(report);
  return summarizer.finish(options.type ?? 'summary');
}
