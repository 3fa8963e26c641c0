/**
 * `cairn measure`: evaluate a FHIR Measure over patients from files and write a Bundle of
 * MeasureReports (individual, summary or subject-list), optionally with DEQM care-gap issues.
 */
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { loadFhirR4Model, type FhirModel } from '../cql-engine/fhir-model.ts';
import type { PatientData } from '../cql-engine/patient-source.ts';
import { ValueSetIndex, type ValueSetExpansion } from '../cql-engine/terminology.ts';
import { CairnError, type Problem } from '../domain/errors.ts';
import { deterministicUuid } from '../evaluate/ids.ts';
import { parseValueSetFile } from '../knowledge/value-sets.ts';
import { careGaps, type CareGapIssue } from '../measures/care-gaps.ts';
import { evaluateMeasurePatient, measurementPeriod } from '../measures/evaluate.ts';
import type { IndividualReport, MeasureReport } from '../measures/measure-report.ts';
import { readPatients } from '../measures/patient-files.ts';
import { prepareMeasure, type MeasureLibrary, type PreparedMeasure } from '../measures/prepare.ts';
import { summarize } from '../measures/summarize.ts';

export type ReportKind = 'individual' | 'summary' | 'subject-list';

/** The options of `cairn measure`, as commander parses them. */
export interface MeasureFlags {
  readonly measure: string;
  readonly libraryDir: string;
  readonly valuesets: string;
  readonly patients: readonly string[];
  readonly periodStart?: string;
  readonly periodEnd?: string;
  readonly report?: string;
  readonly out?: string;
  readonly careGaps?: boolean;
  readonly trustMetaProfile?: boolean;
}

/** A FHIR Bundle of type collection holding the reports (and care-gap issues). */
export interface ReportBundle {
  readonly resourceType: 'Bundle';
  readonly id: string;
  readonly type: 'collection';
  readonly entry: readonly { readonly fullUrl: string; readonly resource: MeasureReport | CareGapIssue }[];
}

export interface MeasureRunResult {
  readonly bundle: ReportBundle;
  readonly patients: number;
  /** Per-patient failures: the run continues without them. */
  readonly errors: readonly { readonly patient: string; readonly message: string }[];
  readonly warnings: readonly string[];
}

async function readJsonFile(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch (error) {
    throw new CairnError('INPUT_INVALID', `Could not read JSON from ${file}: ${(error as Error).message}`);
  }
}

async function jsonFiles(fileOrDir: string): Promise<string[]> {
  const info = await stat(fileOrDir).catch(() => undefined);
  if (info === undefined) throw new CairnError('INPUT_INVALID', `${fileOrDir} does not exist`);
  if (info.isFile()) return [fileOrDir];
  return (await readdir(fileOrDir)).filter((n) => n.endsWith('.json')).sort().map((n) => path.join(fileOrDir, n));
}

interface LibraryResource {
  readonly resourceType?: unknown;
  readonly content?: readonly { readonly contentType?: string; readonly data?: string }[];
}

/** The ELM of a file: plain ELM JSON, or a FHIR Library whose content carries base64 `application/elm+json`. */
function elmOf(json: unknown): unknown {
  const library = json as LibraryResource;
  if (library?.resourceType !== 'Library') return json;
  const elm = library.content?.find((c) => c.contentType === 'application/elm+json' && c.data !== undefined);
  return elm?.data === undefined ? undefined : (JSON.parse(Buffer.from(elm.data, 'base64').toString('utf8')) as unknown);
}

/** loadLibraries reads every `.json` of a folder as ELM (or a FHIR Library carrying ELM). */
export async function loadLibraries(dir: string): Promise<MeasureLibrary[]> {
  const libraries: MeasureLibrary[] = [];
  for (const file of await jsonFiles(dir)) {
    const elm = elmOf(await readJsonFile(file));
    if (elm !== undefined) libraries.push({ elm });
  }
  return libraries;
}

/** loadValueSets reads a ValueSet, a Bundle of them, or a folder of such files into one index; every bad file is reported. */
export async function loadValueSets(fileOrDir: string): Promise<ValueSetIndex> {
  const expansions: ValueSetExpansion[] = [];
  const problems: Problem[] = [];
  for (const file of await jsonFiles(fileOrDir)) {
    const parsed = parseValueSetFile(file, await readJsonFile(file));
    expansions.push(...parsed.expansions);
    problems.push(...parsed.problems);
  }
  if (problems.length > 0) throw new CairnError('VALUESET_INVALID', `${fileOrDir} has value sets Cairn cannot use`, { problems });
  return new ValueSetIndex(expansions);
}

function reportKind(value: string | undefined): ReportKind {
  const kind = value ?? 'individual';
  if (kind !== 'individual' && kind !== 'summary' && kind !== 'subject-list') {
    throw new CairnError('INPUT_INVALID', `--report must be individual, summary or subject-list, not '${kind}'`);
  }
  return kind;
}

function patientLabel(data: PatientData, index: number): string {
  const resources = Array.isArray(data) ? data : (data as { entry?: { resource?: { resourceType?: string; id?: string } }[] }).entry?.map((e) => e.resource) ?? [];
  const patient = resources.find((r) => r?.resourceType === 'Patient');
  return patient?.id ?? `#${index + 1}`;
}

/**
 * evaluateMeasureFiles runs one prepared measure over patients (per-patient errors are collected,
 * not thrown) and bundles the requested report kind; ids derive from the inputs.
 */
export async function evaluateMeasureFiles(
  prepared: PreparedMeasure,
  patients: AsyncIterable<PatientData> | Iterable<PatientData>,
  options: { readonly report: ReportKind; readonly period?: { start?: string; end?: string }; readonly careGaps?: boolean; readonly trustMetaProfile?: boolean },
): Promise<MeasureRunResult> {
  const period = measurementPeriod(prepared, options.period);
  const individuals: IndividualReport[] = [];
  const errors: { patient: string; message: string }[] = [];
  let index = 0;
  for await (const data of patients) {
    try {
      individuals.push(await evaluateMeasurePatient(prepared, data, { period, patientSource: { requireProfileTagging: options.trustMetaProfile === true } }));
    } catch (error) {
      errors.push({ patient: patientLabel(data, index), message: error instanceof Error ? error.message : String(error) });
    }
    index++;
  }
  const resources: (MeasureReport | CareGapIssue)[] =
    options.report === 'individual' ? [...individuals] : [summarize(prepared, individuals, { type: options.report, period })];
  if (options.careGaps === true) for (const report of individuals) resources.push(...careGaps(prepared, report));
  const bundle: ReportBundle = {
    resourceType: 'Bundle',
    id: deterministicUuid('Bundle', ...resources.map((r) => r.id)),
    type: 'collection',
    entry: resources.map((resource) => ({ fullUrl: `urn:uuid:${resource.id}`, resource })),
  };
  return { bundle, patients: index, errors, warnings: prepared.definition.warnings };
}

/** runMeasure loads the measure, its libraries and value sets from files and evaluates the patients (what `cairn measure` does, minus output). */
export async function runMeasure(flags: MeasureFlags, model: FhirModel = loadFhirR4Model()): Promise<MeasureRunResult> {
  const report = reportKind(flags.report);
  if ((flags.periodStart === undefined) !== (flags.periodEnd === undefined)) {
    throw new CairnError('INPUT_INVALID', 'Give both --period-start and --period-end, or neither (the Measure effectivePeriod is used)');
  }
  if (flags.patients.length === 0) throw new CairnError('INPUT_INVALID', 'Give at least one --patients file or folder');
  const [measureJson, libraries, valueSets] = await Promise.all([readJsonFile(flags.measure), loadLibraries(flags.libraryDir), loadValueSets(flags.valuesets)]);
  const prepared = prepareMeasure(measureJson, libraries, valueSets, model, { file: flags.measure });
  return evaluateMeasureFiles(prepared, readPatients(flags.patients), {
    report,
    ...(flags.periodStart === undefined ? {} : { period: { start: flags.periodStart, end: flags.periodEnd } }),
    careGaps: flags.careGaps === true,
    trustMetaProfile: flags.trustMetaProfile === true,
  });
}

/** registerMeasureCommand adds `cairn measure`. */
export function registerMeasureCommand(program: Command): void {
  program
    .command('measure')
    .description('Evaluate a FHIR R4 Measure (proportion or cohort) over patients from Bundles or NDJSON folders and write a Bundle of MeasureReports.')
    .requiredOption('--measure <file>', 'the FHIR Measure resource (JSON)')
    .requiredOption('--library-dir <dir>', 'folder of ELM JSON libraries (or FHIR Library resources carrying ELM); library[0] of the Measure names the main one')
    .requiredOption('--valuesets <fileOrDir>', 'expanded ValueSets: a ValueSet, a Bundle of them, or a folder of such files')
    .requiredOption('--patients <paths...>', 'patient Bundles (files or folders of .json) and/or Bulk Data NDJSON folders')
    .option('--period-start <date>', 'measurement period start (date or dateTime; default: Measure.effectivePeriod)')
    .option('--period-end <date>', 'measurement period end (date or dateTime)')
    .option('--report <type>', 'individual | summary | subject-list', 'individual')
    .option('--care-gaps', 'add a DEQM DetectedIssue for every open care gap')
    .option('--trust-meta-profile', 'a retrieve of a profile only returns resources whose meta.profile lists it (QI-Core negation profiles need it)')
    .option('--out <file>', 'write the Bundle here instead of stdout')
    .action(async (flags: MeasureFlags) => {
      const result = await runMeasure(flags);
      for (const warning of result.warnings) console.error(`warning: ${warning}`);
      for (const error of result.errors) console.error(`error: patient ${error.patient}: ${error.message}`);
      const text = `${JSON.stringify(result.bundle, null, 2)}\n`;
      if (flags.out === undefined) process.stdout.write(text);
      else await writeFile(flags.out, text);
      console.error(`${result.patients} patient(s), ${result.errors.length} failed, ${result.bundle.entry.length} resource(s)${flags.out === undefined ? '' : ` written to ${flags.out}`}`);
      if (result.errors.length > 0) process.exitCode = 1;
    });
}
