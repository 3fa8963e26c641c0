import { describe, expect, it } from 'vitest';
import { careGaps, gapStatus } from '../../src/measures/care-gaps.ts';
import { parseMeasure, splitLibraryCanonical, type GroupDefinition, type PopulationCode } from '../../src/measures/definition.ts';
import { populationCode, type IndividualReport } from '../../src/measures/measure-report.ts';
import { resolvePeriod } from '../../src/measures/period.ts';
import { applyProportion, proportionScore, type MemberKey } from '../../src/measures/populations.ts';
import type { PreparedMeasure } from '../../src/measures/prepare.ts';
import { summarize } from '../../src/measures/summarize.ts';

const POP = 'http://terminology.hl7.org/CodeSystem/measure-population';
const population = (code: string, expression: string = code): unknown => ({ code: { coding: [{ system: POP, code }] }, criteria: { language: 'text/cql-identifier', expression } });

function measure(overrides: Record<string, unknown> = {}, group: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'Measure',
    id: 'm1',
    url: 'http://cairn.health/fhir/Measure/m1',
    version: '1.0.0',
    library: ['http://cairn.health/fhir/Library/M1Logic|1.0.0'],
    scoring: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/measure-scoring', code: 'proportion' }] },
    effectivePeriod: { start: '2025-01-01', end: '2025-12-31' },
    group: [{ id: 'g1', population: ['initial-population', 'denominator', 'denominator-exclusion', 'numerator'].map((c) => population(c)), ...group }],
    ...overrides,
  };
}

describe('parseMeasure', () => {
  it('reads library[0] as name and version, the canonical, and defaults', () => {
    const d = parseMeasure(measure());
    expect(d.library).toEqual({ canonical: 'http://cairn.health/fhir/Library/M1Logic|1.0.0', name: 'M1Logic', version: '1.0.0' });
    expect(d.canonical).toBe('http://cairn.health/fhir/Measure/m1|1.0.0');
    expect(d.groups[0]).toMatchObject({ id: 'g1', scoring: 'proportion', populationBasis: 'boolean', improvementNotation: 'increase' });
    expect(Object.isFrozen(d.groups[0])).toBe(true);
    expect(splitLibraryCanonical('https://madie.cms.gov/Library/CMS104FHIRSTKDCAntithrombotic')).toEqual({ name: 'CMS104FHIRSTKDCAntithrombotic', version: undefined });
  });

  it('takes scoring, basis and improvement notation from the cqfm group extensions', () => {
    const ext = (url: string, value: Record<string, unknown>): unknown => ({ url: `http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/${url}`, ...value });
    const d = parseMeasure(measure({ scoring: undefined }, {
      extension: [
        ext('cqfm-scoring', { valueCodeableConcept: { coding: [{ code: 'proportion' }] } }),
        ext('cqfm-populationBasis', { valueCode: 'Encounter' }),
        ext('cqfm-improvementNotation', { valueCodeableConcept: { coding: [{ code: 'decrease', display: 'increase' }] } }),
      ],
    }));
    expect(d.groups[0]).toMatchObject({ scoring: 'proportion', populationBasis: 'Encounter', improvementNotation: 'decrease' });
    expect(d.warnings.join('\n')).toContain("coded 'decrease' but displayed 'increase'");
    expect(parseMeasure(measure(), 'm', { improvementNotation: 'decrease' }).groups[0]?.improvementNotation).toBe('decrease');
  });

  const rejected: readonly { name: string; input: Record<string, unknown>; path: string; message: RegExp }[] = [
    { name: 'ratio scoring', input: measure({ scoring: { coding: [{ code: 'ratio' }] } }), path: '$.scoring', message: /scoring 'ratio' is not supported/ },
    { name: 'no library', input: measure({ library: [] }), path: '$.library', message: /library\[0\]/ },
    { name: 'empty population expression', input: measure({}, { population: [population('initial-population', ''), population('denominator'), population('numerator')] }), path: '$.group[0].population[0].criteria.expression', message: /names no CQL define/ },
    { name: 'proportion without numerator', input: measure({}, { population: [population('initial-population'), population('denominator')] }), path: '$.group[0].population', message: /needs a denominator and a numerator/ },
    { name: 'unknown population code', input: measure({}, { population: [population('initial-population'), population('measure-observation')] }), path: '$.group[0].population[1].code', message: /measure-observation/ },
  ];
  for (const { name, input, path, message } of rejected) {
    it(`rejects ${name} with INPUT_INVALID at ${path}`, () => {
      let caught: unknown;
      try {
        parseMeasure(input, 'm.json');
      } catch (error) {
        caught = error;
      }
      expect(caught).toMatchObject({ code: 'INPUT_INVALID' });
      expect((caught as { problems: { path: string; message: string }[] }).problems).toEqual(expect.arrayContaining([expect.objectContaining({ path, message: expect.stringMatching(message) })]));
    });
  }

  it('keeps a stratifier with empty criteria (CMS165) as a warning, not an error', () => {
    const d = parseMeasure(measure({}, { stratifier: [{ id: 's1', criteria: { language: 'text/cql-identifier' } }, { id: 's2', criteria: { expression: 'Age 18-40' } }] }));
    expect(d.groups[0]?.stratifiers).toEqual([{ id: 's1', description: undefined, expression: undefined }, { id: 's2', description: undefined, expression: 'Age 18-40' }]);
    expect(d.warnings).toEqual([expect.stringContaining('stratifier s1 has no criteria.expression')]);
  });
});

describe('proportion semantics', () => {
  const group = (codes: readonly PopulationCode[]): GroupDefinition => ({
    id: 'g', scoring: 'proportion', populationBasis: 'Encounter', improvementNotation: 'increase', stratifiers: [],
    populations: codes.map((code) => ({ id: undefined, code, expression: code })),
  });
  const all: PopulationCode[] = ['initial-population', 'denominator', 'denominator-exclusion', 'numerator', 'numerator-exclusion', 'denominator-exception'];
  const set = (...keys: MemberKey[]): Set<MemberKey> => new Set(keys);
  const cases: readonly { name: string; raw: Partial<Record<PopulationCode, Set<MemberKey>>>; want: Record<string, number> }[] = [
    { name: 'denominator is cut to the initial population', raw: { 'initial-population': set('a'), denominator: set('a', 'b'), numerator: set('a', 'b') }, want: { 'initial-population': 1, denominator: 1, numerator: 1 } },
    { name: 'excluded episodes leave the numerator and exceptions', raw: { 'initial-population': set('a', 'b'), denominator: set('a', 'b'), 'denominator-exclusion': set('a'), numerator: set('a'), 'denominator-exception': set('a') }, want: { 'denominator-exclusion': 1, numerator: 0, 'denominator-exception': 0 } },
    { name: 'an exception only counts outside the numerator', raw: { 'initial-population': set('a', 'b'), denominator: set('a', 'b'), numerator: set('a'), 'denominator-exception': set('a', 'b') }, want: { numerator: 1, 'denominator-exception': 1 } },
    { name: 'numerator exclusions are within the numerator', raw: { 'initial-population': set('a', 'b'), denominator: set('a', 'b'), numerator: set('a'), 'numerator-exclusion': set('a', 'b') }, want: { numerator: 1, 'numerator-exclusion': 1 } },
  ];
  for (const { name, raw, want } of cases) {
    it(name, () => {
      const membership = applyProportion(group(all), raw);
      const counts = Object.fromEntries(Object.entries(membership).map(([k, v]) => [k, v.size]));
      expect(counts).toMatchObject(want);
    });
  }

  it('scores (numerator - numex) / (denominator - exclusions - exceptions), undefined without a scored denominator', () => {
    expect(proportionScore(group(all), { denominator: 4, 'denominator-exclusion': 1, 'denominator-exception': 1, numerator: 1, 'numerator-exclusion': 0 })).toBe(0.5);
    expect(proportionScore(group(all), { denominator: 1, 'denominator-exclusion': 1 })).toBeUndefined();
  });
});

describe('measurement period', () => {
  it('reads dates as whole days in UTC and keeps explicit offsets', () => {
    expect(resolvePeriod(undefined, { start: '2026-01-01', end: '2026-12-31' }, 'm')).toMatchObject({ start: '2026-01-01T00:00:00.000+00:00', end: '2026-12-31T23:59:59.999+00:00' });
    expect(resolvePeriod({ start: '2025-03-01T08:00:00-05:00', end: '2025-03-31' }, { start: undefined, end: undefined }, 'm')).toMatchObject({ start: '2025-03-01T08:00:00.000-05:00' });
    expect(() => resolvePeriod(undefined, { start: undefined, end: undefined }, 'm')).toThrow(expect.objectContaining({ code: 'INPUT_INVALID' }));
    expect(() => resolvePeriod({ start: '2025-02-30', end: '2025-03-01' }, { start: undefined, end: undefined }, 'm')).toThrow(/not a valid date/);
    expect(() => resolvePeriod({ start: '2025-12-31', end: '2025-01-01' }, { start: undefined, end: undefined }, 'm')).toThrow(/starts/);
  });
});

describe('summaries and care gaps from individual reports', () => {
  const definition = parseMeasure(measure({}, { stratifier: [{ id: 's1', criteria: { expression: 'Strat' } }] }));
  const inverse = parseMeasure(measure(), 'm', { improvementNotation: 'decrease' });
  const prepared = (d = definition): PreparedMeasure => ({ definition: d }) as unknown as PreparedMeasure;
  const individual = (patient: string, counts: [number, number, number, number], stratum = true): IndividualReport => {
    const population = (['initial-population', 'denominator', 'denominator-exclusion', 'numerator'] as const).map((code, i) => ({ code: populationCode(code), count: counts[i] ?? 0 }));
    return {
      resourceType: 'MeasureReport', id: `r-${patient}`, status: 'complete', type: 'individual', measure: definition.canonical,
      subject: { reference: `Patient/${patient}` }, period: { start: '2025-01-01T00:00:00.000+00:00', end: '2025-12-31T23:59:59.999+00:00' },
      group: [{ id: 'g1', population, stratifier: [{ id: 's1', stratum: stratum ? [{ value: { text: 'true' }, population }] : [] }] }],
      contained: [{ resourceType: 'Observation', id: 'sde-sex', valueCodeableConcept: { coding: [{ system: 'http://hl7.org/fhir/administrative-gender', code: patient === 'p3' ? 'male' : 'female' }] } }],
    };
  };
  const reports = [individual('p1', [1, 1, 0, 1]), individual('p2', [1, 1, 0, 0], false), individual('p3', [1, 1, 1, 0]), individual('p4', [0, 0, 0, 0], false)];

  it('sums counts per group and stratum, scores them, and counts supplemental data', () => {
    const summary = summarize(prepared(), reports);
    expect(summary.type).toBe('summary');
    const counts = summary.group[0]?.population.map((p) => p.count);
    expect(counts).toEqual([3, 3, 1, 1]);
    expect(summary.group[0]?.measureScore?.value).toBe(0.5);
    expect(summary.group[0]?.stratifier?.[0]?.stratum[0]?.population.map((p) => p.count)).toEqual([2, 2, 1, 1]);
    expect(summary.contained?.map((r) => [r.id, (r.component as { valueInteger: number }[])[0]?.valueInteger])).toEqual([['sde-sex-1', 3], ['sde-sex-2', 1]]);
  });

  it('subject-list points each population at a contained List of its patients', () => {
    const list = summarize(prepared(), reports, { type: 'subject-list' });
    const numerator = list.group[0]?.population.find((p) => p.code.coding?.[0]?.code === 'numerator');
    const contained = list.contained?.find((r) => `#${r.id}` === numerator?.subjectResults?.reference);
    expect(contained).toMatchObject({ resourceType: 'List', entry: [{ item: { reference: 'Patient/p1' } }] });
  });

  it('is deterministic and independent of report order', () => {
    expect(summarize(prepared(), [...reports].reverse())).toEqual(summarize(prepared(), reports));
    expect(() => summarize(prepared(), [])).toThrow(expect.objectContaining({ code: 'INPUT_INVALID' }));
  });

  it('finds gaps: in the scored denominator and not in the numerator, or the reverse for inverse measures', () => {
    const group = definition.groups[0] as GroupDefinition;
    const statuses = reports.map((r) => gapStatus(group, r.group[0] as never));
    expect(statuses).toEqual(['closed-gap', 'open-gap', undefined, undefined]);
    const inverseGroup = inverse.groups[0] as GroupDefinition;
    expect(reports.map((r) => gapStatus(inverseGroup, r.group[0] as never))).toEqual(['open-gap', 'closed-gap', undefined, undefined]);
    const [issue] = careGaps(prepared(), reports[1] as IndividualReport);
    expect(issue).toMatchObject({
      resourceType: 'DetectedIssue',
      status: 'preliminary',
      code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'CAREGAP' }] },
      patient: { reference: 'Patient/p2' },
      evidence: [{ detail: [{ reference: 'MeasureReport/r-p2' }] }],
      modifierExtension: [{ valueCodeableConcept: { coding: [{ code: 'open-gap' }] } }],
    });
    expect(careGaps(prepared(), reports[0] as IndividualReport)).toEqual([]);
    expect(careGaps(prepared(), reports[0] as IndividualReport, { includeClosed: true })).toHaveLength(1);
  });
});
