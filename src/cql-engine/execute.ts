import { DateTime, Executor, Library, Repository, type DataProvider, type TerminologyProvider } from 'cql-execution';
import { z } from 'zod';
import { CairnError, type Problem } from '../domain/errors.ts';
import type { FhirModel } from './fhir-model.ts';
import { bindOverloads, type OverloadBinding } from './overloads.ts';
import { FhirPatient, indexPatient, type PatientData, type PatientSourceOptions } from './patient-source.ts';

/** The part of an ELM JSON library we read before handing it to cql-execution. */
const ElmLibraryJson = z.looseObject({
  library: z.looseObject({
    identifier: z.looseObject({ id: z.string().min(1), version: z.string().optional() }),
    includes: z.looseObject({
      def: z.array(z.looseObject({ localIdentifier: z.string(), path: z.string(), version: z.string().optional() })).optional(),
    }).optional(),
  }),
});
type ElmLibraryJson = z.infer<typeof ElmLibraryJson>;

/** A library ready to run: cql-execution's Library with includes resolved, plus the data model it reads. */
export interface PreparedLibrary {
  readonly name: string;
  readonly version: string | undefined;
  readonly library: Library;
  readonly model: FhirModel;
  /** Function references bound to their overload at prepare time, and how many remember results (see overloads.ts). */
  readonly overloads: OverloadBinding;
}

/** Define name -> value for one patient, as cql-execution produced it (records, CQL datatypes, ...). */
export type DefineResults = Readonly<Record<string, unknown>>;

/** Per-evaluation inputs; time is an input, never read from the clock. */
export interface ExecuteOptions {
  /** CQL `Now()`: an ISO 8601 date-time (keep the offset) or a JS Date (read as UTC). */
  readonly executionDateTime: string | Date;
  readonly parameters?: Readonly<Record<string, unknown>>;
  readonly codeService?: TerminologyProvider;
  readonly patientSource?: PatientSourceOptions;
}

function parseElm(json: unknown, role: string): ElmLibraryJson {
  const parsed = ElmLibraryJson.safeParse(json);
  if (!parsed.success) {
    throw new CairnError('INPUT_INVALID', `${role} is not an ELM JSON library`, {
      problems: parsed.error.issues.map((issue) => ({ code: 'INPUT_INVALID', message: issue.message, path: `$.${issue.path.join('.')}` })),
    });
  }
  return parsed.data;
}

function describe(elm: ElmLibraryJson): string {
  const { id, version } = elm.library.identifier;
  return version === undefined ? id : `${id} ${version}`;
}

/** Every include of `root` (transitively) that has no library with that name and version. */
function unresolvedIncludes(root: ElmLibraryJson, all: readonly ElmLibraryJson[]): Problem[] {
  const problems: Problem[] = [];
  const visited = new Set<ElmLibraryJson>();
  const visit = (elm: ElmLibraryJson): void => {
    if (visited.has(elm)) return;
    visited.add(elm);
    for (const include of elm.library.includes?.def ?? []) {
      const target = all.find((candidate) => {
        const { id, version } = candidate.library.identifier;
        return (include.path === id || include.path.endsWith(`/${id}`)) && (include.version === undefined || include.version === version);
      });
      if (target === undefined) {
        problems.push({
          code: 'CQL_INCLUDE',
          message: `${describe(elm)} includes ${include.path}${include.version === undefined ? '' : ` version '${include.version}'`}, which is not loaded`,
        });
      } else {
        visit(target);
      }
    }
  };
  visit(root);
  return problems;
}

/**
 * prepareLibrary builds cql-execution's Library (and its includes) once; call it once per knowledge
 * version, never per request or patient. Fails with CQL_INCLUDE listing every include that does
 * not resolve. Function references are bound to the overload the translator chose here, once,
 * instead of cql-execution testing every overload's types on every call.
 */
export function prepareLibrary(elmMain: unknown, elmIncludes: readonly unknown[], model: FhirModel): PreparedLibrary {
  const main = parseElm(elmMain, 'The main library');
  const includes = elmIncludes.map((elm, i) => parseElm(elm, `Included library #${i + 1}`));
  const problems = unresolvedIncludes(main, includes);
  if (problems.length > 0) {
    throw new CairnError('CQL_INCLUDE', `${describe(main)} has includes that do not resolve`, { problems });
  }
  const repository = new Repository(Object.fromEntries(includes.map((elm, i) => [String(i), elm])));
  const library = new Library(main, repository);
  const overloads = bindOverloads(library, { isImmutable: model.isRecord });
  return Object.freeze({ name: main.library.identifier.id, version: main.library.identifier.version, library, model, overloads });
}

function toCqlDateTime(value: string | Date): DateTime {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new CairnError('INPUT_INVALID', 'executionDateTime is an invalid Date');
    return DateTime.fromJSDate(value, 0);
  }
  const parsed = DateTime.parse(value);
  if (parsed == null) throw new CairnError('INPUT_INVALID', `executionDateTime '${value}' is not an ISO 8601 date-time`);
  return parsed;
}

/** A DataProvider serving exactly one patient. */
function singlePatient(patient: FhirPatient): DataProvider {
  let current: FhirPatient | undefined = patient;
  return {
    currentPatient: () => current,
    nextPatient: () => (current = undefined),
  };
}

/**
 * executeLibrary evaluates every Patient-context define of a prepared library for one patient
 * (raw data, or a {@link FhirPatient} already indexed to run several libraries over it). Errors
 * from cql-execution become EVALUATION_FAILED naming the library (and define, when known).
 */
export async function executeLibrary(prepared: PreparedLibrary, patientData: PatientData | FhirPatient, options: ExecuteOptions): Promise<DefineResults> {
  const patient = patientData instanceof FhirPatient ? patientData : indexPatient(prepared.model, patientData, options.patientSource);
  const executionDateTime = toCqlDateTime(options.executionDateTime);
  const executor = new Executor(prepared.library, options.codeService, options.parameters === undefined ? undefined : { ...options.parameters });
  try {
    const results = await executor.exec_patient_context(singlePatient(patient), executionDateTime);
    return Object.freeze({ ...(Object.values(results.patientResults)[0] ?? {}) }) as DefineResults;
  } catch (error) {
    const annotated = error as { expressionName?: unknown; localId?: unknown; locator?: unknown };
    throw new CairnError('EVALUATION_FAILED', `Evaluating ${prepared.name} failed: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
      context: {
        library: prepared.name,
        version: prepared.version,
        define: annotated.expressionName,
        localId: annotated.localId,
        locator: annotated.locator,
        patientId: patient.getId(),
      },
    });
  }
}
