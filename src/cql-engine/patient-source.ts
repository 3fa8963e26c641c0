import { Code, ValueSet, type DataProvider, type PatientObject, type RecordObject, type RetrieveDetails } from 'cql-execution';
import { CairnError } from '../domain/errors.ts';
import { codesBySystem } from './terminology.ts';
import type { FhirClassInfo, FhirModel, FhirResource } from './fhir-model.ts';

/**
 * Cairn's FHIR R4 patient data layer for cql-execution: the `DataProvider` / `PatientObject`
 * seams of `cql-patient.interfaces.ts`, fed from one patient's resources.
 *
 * Why not cql-exec-fhir's PatientSource: it re-parses the model info per instance, scans the whole
 * bundle on every retrieve, and its records make CQL de-duplication (`toDistinctList` ->
 * `toNormalizedKey`, run by every query without a return clause and every Union) walk every getter
 * of every resource recursively — about 90% of evaluation time. Here resources are indexed by type
 * once per patient and records are built once per patient and class; de-duplication keys records
 * by type and id (distinct.ts).
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
  /** Records per class, built when first retrieved (a code-filtered retrieve builds only its candidates). */
  readonly #records = new Map<FhirClassInfo, (RecordObject | undefined)[]>();
  readonly #codeIndexes = new Map<string, CodeIndex>();

  constructor(model: FhirModel, data: PatientData, options: PatientSourceOptions = {}) {
    this.#model = model;
    this.#options = options;
    const resources = resourcesOf(data);
    const patientType = model.resourceTypeOf(model.patientClass);
    let patient: FhirResource | undefined;
    for (const resource of resources) {
      if (!isResource(resource)) continue;
      let list = this.#byType.get(resource.resourceType);
      if (list === undefined) this.#byType.set(resource.resourceType, (list = []));
      list.push(resource);
      if (patient === undefined && resource.resourceType === patientType) patient = resource;
    }
    if (patient === undefined) {
      throw new CairnError('INPUT_INVALID', `Patient data has no ${patientType} resource`, { context: { resources: resources.length } });
    }
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
    if (!requireProfileTagging || profile === `${BASE_PROFILE}${resourceType}`) {
      const candidates = this.#codeCandidates(resourceType, retrieveDetails);
      if (candidates !== undefined) return candidates.map((i) => this.#recordAt(classInfo, resourceType, i));
      return this.#recordsOf(classInfo, resourceType);
    }
    // Narrowed by code first, like the untagged path: only candidates are built and checked.
    const resources = this.#byType.get(resourceType) ?? [];
    const candidates = this.#codeCandidates(resourceType, retrieveDetails) ?? resources.map((_, i) => i);
    const tagged = candidates.filter((i) => resources[i]?.meta?.profile?.includes(profile ?? '') === true).map((i) => this.#recordAt(classInfo, resourceType, i));
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

  /** Every record of one type read as one class, in data order (a fresh array of the same records each time). */
  #recordsOf(classInfo: FhirClassInfo, resourceType: string): RecordObject[] {
    const count = this.#byType.get(resourceType)?.length ?? 0;
    const records: RecordObject[] = new Array<RecordObject>(count);
    for (let i = 0; i < count; i++) records[i] = this.#recordAt(classInfo, resourceType, i);
    return records;
  }

  /** The record of the i-th resource of a type read as one class: built on first use, then the same object for this patient. */
  #recordAt(classInfo: FhirClassInfo, resourceType: string, i: number): RecordObject {
    let records = this.#records.get(classInfo);
    if (records === undefined) this.#records.set(classInfo, (records = []));
    let record = records[i];
    if (record === undefined) {
      const resource = (this.#byType.get(resourceType) as FhirResource[])[i] as FhirResource;
      record = this.#model.wrap(resource, classInfo);
      records[i] = record;
    }
    return record;
  }

  /**
   * #codeCandidates narrows a code-filtered retrieve (`[MedicationRequest: "Opioid Analgesics"]`)
   * to the resources that can match, by an index of the codings in their JSON, so a retrieve costs
   * O(matches) instead of wrapping and converting every resource of the type. cql-execution 3.3.2's
   * Retrieve applies its own code filter to whatever `findRecords` returns (lib/elm/external.js), so
   * this only has to return a superset of the matches, in data order: a resource whose code element
   * has any shape other than Coding/CodeableConcept objects with string `system`/`code` is always a
   * candidate. Undefined means "no narrowing" (no codes, a dotted code path, or codes that are not
   * plain CQL Codes).
   */
  #codeCandidates(resourceType: string, details: RetrieveDetails | undefined): number[] | undefined {
    const codeProperty = details?.codeProperty;
    if (details?.codes == null || typeof codeProperty !== 'string' || codeProperty === '' || codeProperty.includes('.')) return undefined;
    const wanted = wantedCodes(details.codes);
    if (wanted === null) return undefined;
    const key = `${resourceType}\u0000${codeProperty}`;
    let index = this.#codeIndexes.get(key);
    if (index === undefined) this.#codeIndexes.set(key, (index = buildCodeIndex(this.#byType.get(resourceType) ?? [], codeProperty)));
    const hits = new Set<number>(index.always);
    for (const [system, positionsByCode] of index.bySystem) {
      const codes = wanted.get(system);
      if (codes === undefined) continue;
      // Walk the smaller side: a patient's few codings, or a short code list.
      if (positionsByCode.size <= codes.size) {
        for (const [code, positions] of positionsByCode) if (codes.has(code)) for (const i of positions) hits.add(i);
      } else {
        for (const code of codes) for (const i of positionsByCode.get(code) ?? []) hits.add(i);
      }
    }
    return [...hits].sort((a, b) => a - b);
  }
}

/** Codes by system, then code (either may be absent): looked up without making a key string per coding. */
type CodesBySystem<T> = Map<string | undefined, T>;

/**
 * A retrieve's codes (a value set, or a list of CQL Codes) by system, or null when one is not a
 * plain Code with string code and system: computed once per codes object, since a value set lives
 * as long as its knowledge set and large ones have thousands of codes.
 */
const wantedCache = new WeakMap<object, CodesBySystem<ReadonlySet<string | undefined>> | null>();

function wantedCodes(codes: unknown): CodesBySystem<ReadonlySet<string | undefined>> | null {
  if (typeof codes !== 'object' || codes === null) return null;
  let wanted = wantedCache.get(codes);
  if (wanted === undefined) {
    const list: unknown = codes instanceof ValueSet ? codes.codes : codes;
    const plain = Array.isArray(list) && list.every((c) => c instanceof Code && typeof c.code === 'string' && (c.system === undefined || typeof c.system === 'string'));
    wanted = plain ? codesBySystem(list as readonly Code[]) : null;
    wantedCache.set(codes, wanted);
  }
  return wanted;
}

/** Resources (by position within their type) per coding system and code, and those whose codes cannot be read from JSON. */
interface CodeIndex {
  readonly bySystem: CodesBySystem<Map<string | undefined, number[]>>;
  readonly always: readonly number[];
}

/**
 * buildCodeIndex reads the codings of `codeProperty` from each resource's JSON: the element itself
 * and its choice forms (`medication` -> `medicationCodeableConcept`, ...), each a Coding, a
 * CodeableConcept or a list of them. Anything it cannot read that way (a string, a primitive
 * extension, a non-string system or code) puts the resource in `always`.
 */
function buildCodeIndex(resources: readonly FhirResource[], codeProperty: string): CodeIndex {
  // Module-level helpers and one accumulator: no closures made per resource in this hot loop.
  const into: CodingsRead = { bySystem: new Map(), position: 0, readable: true };
  const always: number[] = [];
  for (let i = 0; i < resources.length; i++) {
    into.position = i;
    into.readable = true;
    const resource = resources[i] as Record<string, unknown>;
    for (const key in resource) {
      if (namesElement(key, 0, codeProperty)) collectCodings(resource[key], into);
      else if (key.charCodeAt(0) === UNDERSCORE && namesElement(key, 1, codeProperty)) into.readable = false;
    }
    if (!into.readable) always.push(i);
  }
  return { bySystem: into.bySystem, always };
}

/** The index being built, the position of the resource being read, and whether all of its code element could be read. */
interface CodingsRead {
  readonly bySystem: CodesBySystem<Map<string | undefined, number[]>>;
  position: number;
  readable: boolean;
}

const UNDERSCORE = 0x5f;

/**
 * namesElement: `key` from `offset` on is `codeProperty` or one of its choice forms
 * (`medication`, `medicationCodeableConcept`: the property, then a capital); no substring made.
 */
function namesElement(key: string, offset: number, codeProperty: string): boolean {
  if (!key.startsWith(codeProperty, offset)) return false;
  const end = offset + codeProperty.length;
  if (key.length === end) return true;
  const next = key.charCodeAt(end);
  return next >= 0x41 && next <= 0x5a;
}

/** addCoding files the resource under the coding's system and code (a position may be filed twice: lookups collect positions in a set). */
function addCoding(coding: Record<string, unknown>, into: CodingsRead): void {
  const { system, code } = coding;
  if ('_system' in coding || '_code' in coding || (system !== undefined && typeof system !== 'string') || (code !== undefined && typeof code !== 'string')) {
    into.readable = false;
    return;
  }
  let byCode = into.bySystem.get(system);
  if (byCode === undefined) into.bySystem.set(system, (byCode = new Map()));
  const positions = byCode.get(code);
  if (positions === undefined) byCode.set(code, [into.position]);
  else if (positions[positions.length - 1] !== into.position) positions.push(into.position);
}

function collectCodings(value: unknown, into: CodingsRead): void {
  if (value == null) return;
  if (Array.isArray(value)) {
    for (const item of value) collectCodings(item, into);
  } else if (typeof value === 'object') {
    const element = value as Record<string, unknown>;
    if ('coding' in element) {
      if (Array.isArray(element.coding)) {
        for (const c of element.coding) {
          if (typeof c === 'object' && c !== null && !Array.isArray(c)) addCoding(c as Record<string, unknown>, into);
          else into.readable = c == null && into.readable;
        }
      } else if (element.coding != null) {
        into.readable = false;
      }
    }
    if ('code' in element || 'system' in element || '_code' in element || '_system' in element) addCoding(element, into);
  } else {
    into.readable = false;
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
