import { DateTime, Library, PatientContext, Repository, type TerminologyProvider } from 'cql-execution';
import { z } from 'zod';
import { CairnError, type Problem } from '../domain/errors.ts';
import type { FhirModel } from './fhir-model.ts';
import { installFastDistinct } from './distinct.ts';
import { installFastDates } from './fast-dates.ts';
import { installLeanExecute } from './lean-execute.ts';
import { installShortCircuitLogic } from './short-circuit.ts';
import { bindOverloads, type OverloadBinding } from './overloads.ts';
import { compileSync, type SyncCompilation } from './sync-execute.ts';
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
  /** Subtrees that run synchronously (see sync-execute.ts); undefined when prepared with `synchronous: false`. */
  readonly synchronous: SyncCompilation | undefined;
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
 * LibraryRepository builds each library once: every include of it, from any library prepared
 * with this repository, is the same object. cql-execution's Repository builds a new copy per
 * include, so FHIRHelpers existed once per library including it, each copy with its own bindings
 * and (in a {@link PatientSession}) its own context. Share one repository among the libraries of
 * one knowledge set.
 */
export class LibraryRepository extends Repository {
  readonly #built = new Map<string, Library | undefined>();

  constructor(elms: readonly unknown[]) {
    super(Object.fromEntries(elms.map((elm, i) => [String(i), elm])));
  }

  override resolve(path: string, version?: string): Library | undefined {
    const key = `${path}|${version ?? ''}`;
    if (!this.#built.has(key)) this.#built.set(key, super.resolve(path, version) as Library | undefined);
    return this.#built.get(key);
  }
}

export interface PrepareLibraryOptions {
  readonly repository?: LibraryRepository;
  /**
   * Run supported ELM subtrees synchronously (default; see sync-execute.ts); false keeps
   * cql-execution's evaluation, for comparison. It applies to the libraries this call builds: an
   * include already built through a shared `repository` stays as it was prepared first.
   */
  readonly synchronous?: boolean;
}

/**
 * prepareLibrary builds cql-execution's Library (and its includes) once; call it once per knowledge
 * version, never per request or patient. Fails with CQL_INCLUDE listing every include that does
 * not resolve. Function references are bound to the overload the translator chose here, once,
 * instead of cql-execution testing every overload's types on every call.
 */
export function prepareLibrary(elmMain: unknown, elmIncludes: readonly unknown[], model: FhirModel, options: PrepareLibraryOptions = {}): PreparedLibrary {
  const main = parseElm(elmMain, 'The main library');
  const includes = elmIncludes.map((elm, i) => parseElm(elm, `Included library #${i + 1}`));
  const problems = unresolvedIncludes(main, includes);
  if (problems.length > 0) {
    throw new CairnError('CQL_INCLUDE', `${describe(main)} has includes that do not resolve`, { problems });
  }
  const repository = options.repository ?? new LibraryRepository(includes);
  const library = new Library(main, repository);
  const overloads = bindOverloads(library, { isImmutable: model.isRecord });
  // After binding: bound function calls are part of the synchronous subtrees (see sync-execute.ts).
  const synchronous = options.synchronous === false ? undefined : compileSync(library);
  return Object.freeze({ name: main.library.identifier.id, version: main.library.identifier.version, library, model, overloads, synchronous });
}

// Every library this engine runs de-duplicates lists the fast way (same results; see distinct.ts).
installFastDistinct();
// FHIR dates parse, and ages in years count, without Luxon for the usual cases (same results; see fast-dates.ts).
installFastDates();
// `and` / `or` stop at the first operand that decides them (same results; see short-circuit.ts).
installShortCircuitLogic();
// Nodes no longer record their results for clause coverage, which nothing here reads (see lean-execute.ts).
installLeanExecute();

function toCqlDateTime(value: string | Date): DateTime {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new CairnError('INPUT_INVALID', 'executionDateTime is an invalid Date');
    return DateTime.fromJSDate(value, 0);
  }
  const parsed = DateTime.parse(value);
  if (parsed == null) throw new CairnError('INPUT_INVALID', `executionDateTime '${value}' is not an ISO 8601 date-time`);
  return parsed;
}

/**
 * A patient context whose included libraries are shared across every library run in one session:
 * cql-execution gives each main library its own context per include, so a define of a library
 * several rules include (CairnCommon's "Medication Requests By Reference") ran once per rule
 * library. Shared by name and version, which name one library within a knowledge set; the session
 * fixes the patient, instant, parameters and terminology, so a shared result is the one each
 * library would have computed.
 */
class SessionContext extends PatientContext {
  readonly #state: PatientSessionState;

  constructor(library: Library, session: PatientSessionState) {
    super(library, session.patient, session.codeService, session.parameters, session.executionDateTime);
    this.#state = session;
  }

  override getLibraryContext(alias: string): unknown {
    const contexts = this.library_context as Record<string, SessionContext | undefined>;
    let context = contexts[alias];
    if (context === undefined) {
      const library = this.get(alias) as Library | null | undefined;
      if (library == null) return super.getLibraryContext(alias);
      const key = libraryKey(library);
      const shared = this.#state.contexts;
      context = shared.get(key);
      if (context === undefined) {
        // A library that reads no parameter and not the clock gives every session of the patient the same results.
        const across = this.#state.acrossSessions;
        const acrossKey = across !== undefined && sessionInvariant(library) ? `${key}|${this.#state.executionDateTime.timezoneOffset ?? ''}` : undefined;
        context = acrossKey === undefined ? undefined : across?.get(this.#state.codeService, acrossKey);
        if (context === undefined) {
          context = new SessionContext(library, { ...this.#state, parameters: this.parameters, executionDateTime: this.executionDateTime as DateTime });
          if (acrossKey !== undefined) across?.set(this.#state.codeService, acrossKey, context);
        }
        shared.set(key, context);
      }
      contexts[alias] = context;
    }
    return context;
  }
}

interface PatientSessionState {
  readonly patient: FhirPatient;
  readonly codeService: TerminologyProvider | undefined;
  readonly parameters: Record<string, unknown> | undefined;
  readonly executionDateTime: DateTime;
  /** Library name|version -> its context, for every library run or included so far. */
  readonly contexts: Map<string, SessionContext>;
  /** Contexts of session-invariant libraries, shared with the patient's other sessions (see {@link PatientLibraryContexts}). */
  readonly acrossSessions: PatientLibraryContexts | undefined;
}

/** ELM node types whose value depends on the session's instant. */
const CLOCK_NODES: ReadonlySet<string> = new Set(['Now', 'Today', 'TimeOfDay']);
const invariance = new WeakMap<Library, boolean>();

function readsClock(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(readsClock);
  if (typeof node !== 'object' || node === null) return false;
  const record = node as Record<string, unknown>;
  if (typeof record.type === 'string' && CLOCK_NODES.has(record.type)) return true;
  for (const key in record) if (key !== 'annotation' && readsClock(record[key])) return true;
  return false;
}

/**
 * sessionInvariant: the library and everything it includes declare no parameter and never read
 * the clock (Now, Today, TimeOfDay), so for one patient, terminology and time zone its defines
 * have the same values in every session (SupplementalDataElements, QICoreCommon, FHIRHelpers).
 */
function sessionInvariant(library: Library): boolean {
  let known = invariance.get(library);
  if (known === undefined) {
    invariance.set(library, false); // include cycles: assume not while deciding
    const source = library.source as { library?: { statements?: unknown } };
    known =
      Object.keys(library.parameters as object).length === 0 &&
      !readsClock(source.library?.statements) &&
      Object.values(library.includes as Record<string, Library | undefined>).every((included) => included !== undefined && sessionInvariant(included));
    invariance.set(library, known);
  }
  return known;
}

/**
 * PatientLibraryContexts lets several sessions of one patient (e.g. measures with different
 * measurement periods) share the contexts of session-invariant libraries, so their defines run
 * once for the patient rather than once per session. One per patient, never across patients;
 * pass it to each {@link PatientSession} of that patient.
 */
export class PatientLibraryContexts {
  readonly #byTerminology = new Map<TerminologyProvider | undefined, Map<string, SessionContext>>();

  /** @internal */
  get(codeService: TerminologyProvider | undefined, key: string): SessionContext | undefined {
    return this.#byTerminology.get(codeService)?.get(key);
  }

  /** @internal */
  set(codeService: TerminologyProvider | undefined, key: string, context: SessionContext): void {
    let contexts = this.#byTerminology.get(codeService);
    if (contexts === undefined) this.#byTerminology.set(codeService, (contexts = new Map()));
    contexts.set(key, context);
  }
}

function libraryKey(library: Library): string {
  const identifier = (library.source as ElmLibraryJson).library.identifier;
  return `${identifier.id}|${identifier.version ?? ''}`;
}

/**
 * PatientSession runs several prepared libraries over one patient at one instant: each define of
 * each library (included ones too) runs at most once per session. Open one per patient
 * evaluation with {@link openPatientSession}; all its libraries must come from one knowledge set.
 */
export class PatientSession {
  readonly #state: PatientSessionState;

  /** `acrossSessions`: share session-invariant libraries with the patient's other sessions (see {@link PatientLibraryContexts}). */
  constructor(patient: FhirPatient, options: ExecuteOptions, acrossSessions?: PatientLibraryContexts) {
    this.#state = {
      patient,
      codeService: options.codeService,
      parameters: options.parameters === undefined ? undefined : { ...options.parameters },
      executionDateTime: toCqlDateTime(options.executionDateTime),
      contexts: new Map(),
      acrossSessions,
    };
  }

  get patient(): FhirPatient {
    return this.#state.patient;
  }

  /** execute evaluates every Patient-context define of `prepared`; errors as in {@link executeLibrary}. */
  async execute(prepared: PreparedLibrary): Promise<DefineResults> {
    const context = this.#contextFor(prepared);
    const computed = context.context_values as Record<string, unknown>;
    const results: Record<string, unknown> = {};
    try {
      for (const [name, expression] of Object.entries(prepared.library.expressions as Record<string, ExpressionDefLike>)) {
        // A define another one referenced is computed already (as in `evaluate`).
        if (expression.context === 'Patient') results[name] = computed[name] !== undefined ? computed[name] : await expression.execute(context);
      }
    } catch (error) {
      throw this.#failed(prepared, error);
    }
    return Object.freeze(results);
  }

  /**
   * evaluate returns only the named defines of `prepared` (and runs only what they reference): a
   * define already computed in this session, by an earlier call or as a reference, is not run
   * again. Unknown names give undefined. Errors as in {@link executeLibrary}.
   */
  async evaluate(prepared: PreparedLibrary, names: readonly string[]): Promise<DefineResults> {
    const context = this.#contextFor(prepared);
    const computed = context.context_values as Record<string, unknown>;
    const expressions = prepared.library.expressions as Record<string, ExpressionDefLike | undefined>;
    const results: Record<string, unknown> = {};
    try {
      for (const name of names) {
        const expression = expressions[name];
        results[name] = computed[name] !== undefined || expression === undefined ? computed[name] : await expression.execute(context);
      }
    } catch (error) {
      throw this.#failed(prepared, error);
    }
    return Object.freeze(results);
  }

  #contextFor(prepared: PreparedLibrary): SessionContext {
    const key = libraryKey(prepared.library);
    let context = this.#state.contexts.get(key);
    if (context === undefined) {
      context = new SessionContext(prepared.library, this.#state);
      this.#state.contexts.set(key, context);
    }
    return context;
  }

  #failed(prepared: PreparedLibrary, error: unknown): CairnError {
    const annotated = error as { expressionName?: unknown; localId?: unknown; locator?: unknown };
    return new CairnError('EVALUATION_FAILED', `Evaluating ${prepared.name} failed: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
      context: {
        library: prepared.name,
        version: prepared.version,
        define: annotated.expressionName,
        localId: annotated.localId,
        locator: annotated.locator,
        patientId: this.#state.patient.getId(),
      },
    });
  }
}

/** The part of cql-execution's ExpressionDef the session runs. */
interface ExpressionDefLike {
  readonly context: string;
  execute(context: PatientContext): Promise<unknown>;
}

/** openPatientSession indexes `patientData` (unless already indexed) for running libraries over it at one instant. */
export function openPatientSession(model: FhirModel, patientData: PatientData | FhirPatient, options: ExecuteOptions): PatientSession {
  const patient = patientData instanceof FhirPatient ? patientData : indexPatient(model, patientData, options.patientSource);
  return new PatientSession(patient, options);
}

/**
 * executeLibrary evaluates every Patient-context define of a prepared library for one patient
 * (raw data, or a {@link FhirPatient} already indexed). Errors from cql-execution become
 * EVALUATION_FAILED naming the library (and define, when known). To run several libraries over
 * one patient, use a {@link PatientSession}: shared includes then run once.
 */
export async function executeLibrary(prepared: PreparedLibrary, patientData: PatientData | FhirPatient, options: ExecuteOptions): Promise<DefineResults> {
  return openPatientSession(prepared.model, patientData, options).execute(prepared);
}
