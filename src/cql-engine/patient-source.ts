import type { DataProvider, PatientObject, RecordObject, RetrieveDetails } from 'cql-execution';
import { CairnError } from '../domain/errors.ts';
import type { FhirClassInfo, FhirModel, FhirResource } from './fhir-model.ts';

/**
 * Cairn's FHIR R4 patient data layer for cql-execution: the `DataProvider` / `PatientObject`
 * seams of `cql-patient.interfaces.ts`, fed from one patient's resources.
 *
 * Why not cql-exec-fhir's PatientSource: it re-parses the model info per instance, scans the whole
 * bundle on every retrieve, and its records make CQL de-duplication (`toDistinctList` ->
 * `toNormalizedKey`, run by every query without a return clause and every Union) walk every getter
 * of every resource recursively — about 90% of evaluation time. Here resources are indexed by type
 * once per patient, records are built once per patient and class, and a record whose
 * `resourceType/id` is unique in the patient's data carries a cheap identity key (see
 * {@link identityKeyed}).
 */

/** A FHIR Bundle as far as this layer reads it (`entry[].resource`, top level only, like cql-exec-fhir). */
export interface FhirBundle {
  readonly resourceType: 'Bundle';
  readonly entry?: readonly { readonly resource?: FhirResource }[];
}

/** One patient's data: a Bundle or a plain array of resources; the first Patient resource is the patient. */
export type PatientData = FhirBundle | readonly FhirResource[];

/** Options shared by every patient this layer builds. */
export interface PatientSourceOptions {
  /**
   * Trust `meta.profile`: a retrieve that names a profile (ELM `templateId`) other than the base
   * resource's StructureDefinition only returns resources whose `meta.profile` lists it. Same
   * meaning as cql-exec-fhir's `requireProfileTagging`. Default false: match by resource type, which
   * is what QI-Core content needs for data that carries no profiles.
   */
  readonly requireProfileTagging?: boolean;
}

const BASE_PROFILE = 'http://hl7.org/fhir/StructureDefinition/';

/** Marks identity keys so they can never equal a structural key (those are keyed by field names). */
const IDENTITY_MARK = 'cairn:fhir-resource-identity';
const IDENTITY = Symbol('cairn.fhirResourceIdentity');

interface IdentityKeyed {
  readonly [IDENTITY]: readonly string[];
}

function identityEntries(this: IdentityKeyed): Iterator<string> {
  return this[IDENTITY][Symbol.iterator]();
}

/**
 * identityKeyed gives a record a cheap distinctness key. cql-execution 3.3.2 computes distinctness
 * with `toNormalizedKey`, whose fallback for model objects is `immutable.Seq(record)`: for a plain
 * object that enumerates every own getter (each building further wrapped objects), but for an
 * iterable it takes the iterated values instead. So the record gets a non-enumerable
 * `Symbol.iterator` yielding `[mark, resourceType, id]`; `__instance` (the type hierarchy) is still
 * added by cql-execution. Enumerable properties, `equals`, `get` etc. are untouched, and nothing
 * else in cql-execution iterates records. Callers only attach it when `resourceType/id` is unique
 * within the patient's data, where it gives the same answer as the structural key (which includes
 * `id`).
 */
function identityKeyed(record: RecordObject, resourceType: string, id: string): RecordObject {
  Object.defineProperties(record, {
    [IDENTITY]: { value: Object.freeze([IDENTITY_MARK, resourceType, id]) },
    [Symbol.iterator]: { value: identityEntries },
  });
  return record;
}

function isResource(value: unknown): value is FhirResource {
  return typeof value === 'object' && value !== null && typeof (value as { resourceType?: unknown }).resourceType === 'string';
}

function resourcesOf(data: PatientData): readonly FhirResource[] {
  if (Array.isArray(data)) return data as readonly FhirResource[];
  const bundle = data as FhirBundle;
  if (bundle.resourceType !== 'Bundle' || !Array.isArray(bundle.entry)) {
    throw new CairnError('INPUT_INVALID', 'Patient data must be an array of FHIR resources or a Bundle with entry[]', {
      context: { resourceType: (bundle as { resourceType?: unknown }).resourceType },
    });
  }
  return bundle.entry.map((e) => e.resource).filter(isResource);
}

/**
 * FhirPatient is one patient's data, indexed by resource type once; `findRecords` costs
 * O(records of the requested type). Reusable across libraries and evaluations for that patient.
 */
export class FhirPatient implements PatientObject {
  readonly #model: FhirModel;
  readonly #options: PatientSourceOptions;
  readonly #record: RecordObject;
  readonly #byType = new Map<string, FhirResource[]>();
  readonly #unique = new Set<FhirResource>();
  readonly #records = new Map<FhirClassInfo, readonly RecordObject[]>();

  constructor(model: FhirModel, data: PatientData, options: PatientSourceOptions = {}) {
    this.#model = model;
    this.#options = options;
    const resources = resourcesOf(data);
    const patientType = model.resourceTypeOf(model.patientClass);
    const seen = new Map<string, FhirResource | null>();
    let patient: FhirResource | undefined;
    for (const resource of resources) {
      if (!isResource(resource)) continue;
      let list = this.#byType.get(resource.resourceType);
      if (list === undefined) this.#byType.set(resource.resourceType, (list = []));
      list.push(resource);
      if (patient === undefined && resource.resourceType === patientType) patient = resource;
      if (typeof resource.id === 'string' && resource.id !== '') {
        const key = `${resource.resourceType}/${resource.id}`;
        seen.set(key, seen.has(key) ? null : resource);
      }
    }
    if (patient === undefined) {
      throw new CairnError('INPUT_INVALID', `Patient data has no ${patientType} resource`, { context: { resources: resources.length } });
    }
    for (const resource of seen.values()) if (resource !== null) this.#unique.add(resource);
    this.#record = model.wrap(patient, model.patientClass);
  }

  get(field: string): unknown {
    return this.#record.get(field);
  }

  getId(): string | undefined {
    return this.#record.getId() as string | undefined;
  }

  getCode(field: string): unknown {
    return this.#record.getCode(field);
  }

  getDate(field: string): unknown {
    return this.#record.getDate(field);
  }

  getDateOrInterval(field: string): unknown {
    return this.#record.getDateOrInterval(field);
  }

  _is(typeSpecifier: Parameters<NonNullable<RecordObject['_is']>>[0]): boolean {
    return this.#record._is?.(typeSpecifier) ?? false;
  }

  _typeHierarchy(): ReturnType<NonNullable<RecordObject['_typeHierarchy']>> {
    return this.#record._typeHierarchy?.() ?? [];
  }

  /** findRecords answers a retrieve the way cql-exec-fhir 2.2.0's `Patient.findRecords` does, from the index. */
  findRecords(profile: string | null, retrieveDetails?: RetrieveDetails): RecordObject[] {
    const requireProfileTagging = this.#options.requireProfileTagging === true;
    if (requireProfileTagging && retrieveDetails === undefined) {
      throw new CairnError('EVALUATION_FAILED', 'requireProfileTagging needs retrieve details from cql-execution');
    }
    const datatype = retrieveDetails?.datatype ?? profile;
    const classInfo = datatype == null ? undefined : this.#model.classFor(datatype);
    if (classInfo === undefined) return [];
    const resourceType = this.#model.resourceTypeOf(classInfo);
    const records = this.#recordsOf(classInfo, resourceType);
    if (!requireProfileTagging || profile === `${BASE_PROFILE}${resourceType}`) return records.slice();
    const tagged = records.filter((_, i) => this.#byType.get(resourceType)?.[i]?.meta?.profile?.includes(profile ?? '') === true);
    if (resourceType === this.#model.resourceTypeOf(this.#model.patientClass) && tagged.length === 0) {
      throw new CairnError('EVALUATION_FAILED', `Patient record with meta.profile matching ${profile ?? ''} was not found`, {
        context: { profile },
      });
    }
    return tagged;
  }

  findRecord(profile: string | null, retrieveDetails?: RetrieveDetails): RecordObject | undefined {
    return this.findRecords(profile, retrieveDetails)[0];
  }

  /** Records of one type read as one class, built on first use and reused for this patient. */
  #recordsOf(classInfo: FhirClassInfo, resourceType: string): readonly RecordObject[] {
    let records = this.#records.get(classInfo);
    if (records === undefined) {
      records = (this.#byType.get(resourceType) ?? []).map((resource) => {
        const record = this.#model.wrap(resource, classInfo);
        return this.#unique.has(resource) && typeof resource.id === 'string' ? identityKeyed(record, resourceType, resource.id) : record;
      });
      this.#records.set(classInfo, records);
    }
    return records;
  }
}

/** indexPatient builds the patient object for one patient's data; throws INPUT_INVALID without a Patient. */
export function indexPatient(model: FhirModel, data: PatientData, options: PatientSourceOptions = {}): FhirPatient {
  return new FhirPatient(model, data, options);
}

/** Serves patients from a synchronous iterable, indexing each only when it becomes current. */
class IterablePatientSource implements DataProvider {
  readonly #next: () => FhirPatient | undefined;
  #current: FhirPatient | undefined;
  #started = false;

  constructor(model: FhirModel, patients: Iterable<PatientData>, options: PatientSourceOptions) {
    const iterator = patients[Symbol.iterator]();
    this.#next = () => {
      const step = iterator.next();
      return step.done === true ? undefined : indexPatient(model, step.value, options);
    };
  }

  currentPatient(): FhirPatient | undefined {
    if (!this.#started) {
      this.#started = true;
      this.#current = this.#next();
    }
    return this.#current;
  }

  nextPatient(): FhirPatient | undefined {
    if (!this.#started) this.currentPatient();
    this.#current = this.#current === undefined ? undefined : this.#next();
    return this.#current;
  }
}

/** Serves patients from an async iterable (e.g. a warehouse stream); cql-execution awaits both calls. */
class AsyncPatientSource implements DataProvider {
  readonly #iterator: AsyncIterator<PatientData>;
  readonly #model: FhirModel;
  readonly #options: PatientSourceOptions;
  #current: Promise<FhirPatient | undefined> | undefined;

  constructor(model: FhirModel, patients: AsyncIterable<PatientData>, options: PatientSourceOptions) {
    this.#iterator = patients[Symbol.asyncIterator]();
    this.#model = model;
    this.#options = options;
  }

  async #pull(): Promise<FhirPatient | undefined> {
    const step = await this.#iterator.next();
    return step.done === true ? undefined : indexPatient(this.#model, step.value, this.#options);
  }

  currentPatient(): Promise<FhirPatient | undefined> {
    this.#current ??= this.#pull();
    return this.#current;
  }

  nextPatient(): Promise<FhirPatient | undefined> {
    const previous = this.currentPatient();
    this.#current = previous.then((patient) => (patient === undefined ? undefined : this.#pull()));
    return this.#current;
  }
}

/**
 * createPatientSource is a cql-execution `DataProvider` over many patients in sequence (each item is
 * one patient's Bundle or resources), indexing one patient at a time; async iterables give an
 * async provider. The model is shared, never re-parsed.
 */
export function createPatientSource(
  model: FhirModel,
  patients: Iterable<PatientData> | AsyncIterable<PatientData>,
  options: PatientSourceOptions = {},
): DataProvider {
  const frozen = Object.freeze({ ...options });
  if (Symbol.asyncIterator in patients) return new AsyncPatientSource(model, patients, frozen);
  return new IterablePatientSource(model, patients, frozen);
}
