import { FHIRWrapper } from 'cql-exec-fhir';
import { Code, Date as CqlDate, DateTime as CqlDateTime, Interval, type RecordObject } from 'cql-execution';
import { equals as cqlEquals, equivalent as cqlEquivalent } from 'cql-execution/lib/util/comparison.js';
import { CairnError } from '../domain/errors.ts';

/**
 * The FHIR R4 (4.0.1) model as cql-exec-fhir understands it, parsed once. cql-exec-fhir's
 * `PatientSource.FHIRv401()` and `FHIRWrapper.FHIRv401()` re-parse the 760 KB model-info XML on
 * every call (~56 ms); Cairn builds one `FhirModel` at startup and passes it to every patient
 * source, so per-request cost is only indexing the patient's resources.
 *
 * Records are cql-exec-fhir's own `FHIRObject` instances (same constructor, same class info as
 * its `Patient.findRecords`), so property access, code and date conversion and type tests behave
 * exactly as with cql-exec-fhir.
 */

/** The part of cql-exec-fhir's parsed `ClassInfo` we rely on. */
export interface FhirClassInfo {
  readonly name: string;
  findElement(name: string, allowExplicitChoice?: boolean): unknown;
}

/** The part of cql-exec-fhir's parsed `ModelInfo` we rely on. */
interface FhirModelInfo {
  readonly version: string;
  readonly patientClassName: string;
  readonly patientClassIdentifier?: string;
  findClass(name: string): FhirClassInfo | undefined;
}

/** A FHIR resource as JSON: only `resourceType` is known at this edge. */
export interface FhirResource {
  readonly resourceType: string;
  readonly id?: string;
  readonly meta?: { readonly profile?: readonly string[] };
  readonly [field: string]: unknown;
}

type TypeHierarchy = NonNullable<ReturnType<NonNullable<RecordObject['_typeHierarchy']>>>;
type TypeSpecifier = TypeHierarchy[number];

/** cql-exec-fhir's FHIRObject as seen from here. */
interface FhirObject extends RecordObject {
  getTypeInfo(): FhirClassInfo | null | undefined;
  _typeHierarchy(): TypeHierarchy;
  _is(typeSpecifier: TypeSpecifier): boolean;
}

/**
 * RECORD_ELEMENTS names, on every record this model builds, the element names of its class: the
 * enumerable getters cql-exec-fhir's FHIRObject defines on each instance, which CQL equality and
 * de-duplication compare. Records here keep those getters on a per-class prototype instead (see
 * {@link fastFhirObjectClass}), so whatever compares records reads the names from here.
 */
export const RECORD_ELEMENTS = Symbol('cairn.recordElements');

/** Where a record built by {@link fastFhirObjectClass} keeps its JSON (read through `_json`). */
const RECORD_JSON = Symbol('cairn.recordJson');

/**
 * MalformedFhirDataError: an element CQL reads has JSON of a shape the FHIR R4 model does not
 * allow (a list that is not an array, a single element that is one, a complex element that is not
 * an object, a primitive of the wrong JSON type, a date or time that does not parse). Reading it
 * as absent would quietly change what a rule finds (a missed warning), so the read fails. The
 * message names the resource (`Observation/egfr-1`) and the element's JSON path, never its value.
 */
export class MalformedFhirDataError extends CairnError {
  /** `ResourceType/id` of the resource holding the element (`?` for what is unknown). */
  readonly resource: string;
  /** The element's JSON path within the resource, e.g. `valueQuantity.value`. */
  readonly elementPath: string;

  constructor(resource: string, elementPath: string, expected: string) {
    super('EVALUATION_FAILED', `Malformed FHIR data: ${resource} ${elementPath} is not ${expected}, as FHIR R4 requires`, { context: { resource, elementPath, expected } });
    this.name = 'MalformedFhirDataError';
    this.resource = resource;
    this.elementPath = elementPath;
  }
}

/** Where a record remembers the values read from it (field -> value; see `memoised`). */
const RECORD_MEMO = Symbol('cairn.recordMemo');
interface Memoising {
  [RECORD_MEMO]?: Record<string, unknown>;
}

/**
 * recordElementNames lists the elements CQL compares on a record (any object with
 * `_typeHierarchy`, as cql-execution recognises model objects): from {@link RECORD_ELEMENTS}, or
 * the own enumerable non-function keys of a record cql-exec-fhir built itself.
 */
export function recordElementNames(record: object): readonly string[] {
  const names = (record as { readonly [RECORD_ELEMENTS]?: readonly string[] })[RECORD_ELEMENTS];
  if (names !== undefined) return names;
  const values = record as Readonly<Record<string, unknown>>;
  return Object.keys(record).filter((key) => typeof values[key] !== 'function');
}

/**
 * compareElements is cql-execution 3.3.2's `compareObjects` (util/comparison.js) for two records:
 * the same class, the same element names, and every element equal by `compare` (both null counts
 * as equal; a null answer makes the whole answer null unless some element differs).
 */
function compareElements(a: object, b: unknown, compare: (x: unknown, y: unknown) => boolean | null): boolean | null {
  if (typeof b !== 'object' || b === null || !(b instanceof a.constructor) || !(a instanceof (b as object).constructor)) return false;
  const aNames = [...recordElementNames(a)].sort();
  const bNames = [...recordElementNames(b)].sort();
  if (aNames.length !== bNames.length || aNames.some((name, i) => name !== bNames[i])) return false;
  const aValues = a as Readonly<Record<string, unknown>>;
  const bValues = b as Readonly<Record<string, unknown>>;
  let sawNull = false;
  for (const name of aNames) {
    const x = aValues[name];
    const y = bValues[name];
    if (x == null && y == null) continue;
    const same = compare(x, y);
    if (same === null) sawNull = true;
    else if (!same) return false;
  }
  return sawNull ? null : true;
}

/** What a reading straight from JSON answers when the JSON is not plain enough: read it the general way. */
export const NOT_PLAIN = Symbol('cairn.notPlain');

/**
 * A record's method (records this model builds have it): `record[PRIMITIVE_VALUE](field)` is the
 * JSON value of the FHIR primitive element `field` (`status`, `id`, `gender`...) when FHIRHelpers'
 * accessors (`ToString(value FHIR.string): value.value` and kin) would hand that value out as it is
 * (a Boolean, Integer, String or Decimal value, no primitive extension, not null): the answer of
 * `ToString(record.field)` without building the element. NOT_PLAIN otherwise.
 */
export const PRIMITIVE_VALUE = Symbol('cairn.primitiveValue');

/**
 * A record's method: `record[ELEMENT_IS](field, spec)` is `record.field is spec` for a FHIR named
 * type (`M.medication is FHIR.Reference`) answered from which form of the element the JSON holds,
 * without building the element; NOT_PLAIN where that is not certain (no value, a list, a System
 * type, an abstract resource type), for the general path.
 */
export const ELEMENT_IS = Symbol('cairn.elementIs');

/**
 * plainCoding is a Coding's JSON when its four primitives (code, system, version, display) can be
 * read as the JSON values: an object without their primitive extensions (`_code`...), which could
 * carry a `value` of their own, whose four primitives are strings where present. Undefined
 * otherwise (a malformed one included: the general path then reads it, and fails on it).
 */
export function plainCoding(json: unknown): Readonly<Record<string, unknown>> | undefined {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
  const c = json as Record<string, unknown>;
  if (c._code != null || c._system != null || c._version != null || c._display != null) return undefined;
  // A primitive that is not a string is malformed: the general path reads it, and says so.
  return notString(c.code) || notString(c.system) || notString(c.version) || notString(c.display) ? undefined : c;
}

function notString(value: unknown): boolean {
  return value != null && typeof value !== 'string';
}

/** System types cql-exec-fhir reads as the JSON value itself. */
const PLAIN_SYSTEM_TYPES: ReadonlySet<string> = new Set(['Boolean', 'Integer', 'String', 'Decimal']);
/** How ELM names System types (`{urn:hl7-org:elm-types:r1}String`). */
const SYSTEM_TYPE_PREFIX = '{urn:hl7-org:elm-types:r1}';

/** Abstract classes a resource-valued element can be declared as. */
const ABSTRACT_RESOURCES: ReadonlySet<string> = new Set(['Resource', 'DomainResource']);

/** A class name without the model prefix cql-exec-fhir's class infos may or may not carry. */
function unqualified(className: string): string {
  return className.replace(/^FHIR\./, '');
}

type FhirObjectConstructor = new (json: unknown, classInfo: FhirClassInfo, modelInfo: FhirModelInfo) => FhirObject;

/** FhirModel is a parsed FHIR model info shared by every patient source; build it once per process. */
export interface FhirModel {
  /** FHIR version of the model info, e.g. `4.0.1`. */
  readonly version: string;
  /** The class info a retrieve's datatype, profile or class name resolves to (memoised). */
  classFor(datatypeOrProfile: string): FhirClassInfo | undefined;
  /** The FHIR resource type a class info stands for (`FHIR.Observation` and `Observation` -> `Observation`). */
  resourceTypeOf(classInfo: FhirClassInfo): string;
  /** The class info of the model's patient class. */
  readonly patientClass: FhirClassInfo;
  /** wrap makes the cql-exec-fhir record for `resource` read as `classInfo`. */
  wrap(resource: FhirResource, classInfo: FhirClassInfo): RecordObject;
  /**
   * isRecord says whether `value` is a record (or element) built by this model's `wrap`. Such
   * values never change: the wrapped JSON is only read, and cql-execution never writes to them.
   */
  isRecord(value: unknown): boolean;
}

interface WrapperInternals {
  readonly _modelInfo?: unknown;
}

function isModelInfo(value: unknown): value is FhirModelInfo {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<Record<keyof FhirModelInfo, unknown>>;
  return typeof candidate.findClass === 'function' && typeof candidate.version === 'string' && typeof candidate.patientClassName === 'string';
}

/**
 * loadFhirR4Model parses cql-exec-fhir's FHIR 4.0.1 model info (~56 ms). Call it once at startup and
 * share the result; it is immutable apart from an internal lookup memo.
 */
export function loadFhirR4Model(): FhirModel {
  const wrapper = FHIRWrapper.FHIRv401();
  // cql-exec-fhir 2.2.0 keeps the parsed model on the wrapper and does not export the record class;
  // both are pinned in package.json, and this check fails loudly if an upgrade moves them.
  const modelInfo = (wrapper as unknown as WrapperInternals)._modelInfo;
  if (!isModelInfo(modelInfo)) {
    throw new Error('cql-exec-fhir: FHIRWrapper no longer exposes its parsed model info; fhir-model.ts needs updating');
  }
  const FhirObjectBase = (wrapper.wrap({ resourceType: 'Basic' }) as object).constructor as FhirObjectConstructor;
  const { FastFhirObject, build } = fastFhirObjectClass(FhirObjectBase, modelInfo);

  const patientClass = modelInfo.findClass(modelInfo.patientClassIdentifier ?? modelInfo.patientClassName);
  if (patientClass === undefined) throw new Error(`FHIR model info has no patient class ${modelInfo.patientClassName}`);

  const classes = new Map<string, FhirClassInfo | undefined>();
  const resourceTypes = new WeakMap<FhirClassInfo, string>();

  return Object.freeze({
    version: modelInfo.version,
    patientClass,
    classFor(datatypeOrProfile: string): FhirClassInfo | undefined {
      if (!classes.has(datatypeOrProfile)) classes.set(datatypeOrProfile, modelInfo.findClass(datatypeOrProfile));
      return classes.get(datatypeOrProfile);
    },
    resourceTypeOf(classInfo: FhirClassInfo): string {
      let resourceType = resourceTypes.get(classInfo);
      if (resourceType === undefined) {
        // Same derivation as cql-exec-fhir's Patient.findRecords.
        resourceType = classInfo.name.replace(/^FHIR\./, '');
        resourceTypes.set(classInfo, resourceType);
      }
      return resourceType;
    },
    wrap(resource: FhirResource, classInfo: FhirClassInfo): RecordObject {
      return build(resource, classInfo);
    },
    isRecord(value: unknown): boolean {
      return value instanceof FastFhirObject;
    },
  });
}

/** The parts of cql-exec-fhir's type specifiers (load.js) that reading an element looks at. */
interface TypeSpec {
  readonly isNamed?: boolean;
  readonly isList?: boolean;
  readonly isInterval?: boolean;
  readonly isChoice?: boolean;
  readonly namespace?: string;
  readonly name?: string;
  readonly fqn?: string;
  readonly elementType?: TypeSpec;
  readonly pointType?: TypeSpec;
  readonly choices?: readonly TypeSpec[];
}

/** The parts of cql-exec-fhir's ClassElement and ClassInfo that reading an element looks at. */
interface ElementInfo {
  readonly name: string;
  readonly typeSpecifier: TypeSpec;
}
interface ClassInternals {
  readonly elements: readonly ElementInfo[];
  readonly baseTypeSpecifier?: TypeSpec | null;
}

/** Lets a subclass's constructor put private fields on an object made elsewhere (a record made by `Object.create`). */
class Stamp {
  constructor(target: object) {
    return target as Stamp;
  }
}

/**
 * Where an element's record came from: the record it was read from (none for a resource read on
 * its own) and the JSON property (`medicationCodeableConcept`, `coding`...), for naming the
 * element in a {@link MalformedFhirDataError}. Kept in private fields, which reflection does not
 * see: cql-execution's `toNormalizedKey` (through immutable's `Seq`) walks a record's own symbol
 * keys, and a parent link there would lead back to the child through the parent's memo, forever.
 */
class Lineage extends Stamp {
  readonly #parent: FhirObject | undefined;
  readonly #property: string | undefined;

  private constructor(target: object, parent: FhirObject | undefined, property: string | undefined) {
    super(target);
    this.#parent = parent;
    this.#property = property;
  }

  /** stamp gives a record (made once, never stamped before) its lineage. */
  static stamp(record: object, parent: FhirObject | undefined, property: string | undefined): void {
    new Lineage(record, parent, property);
  }

  static parentOf(record: object): FhirObject | undefined {
    return #parent in record ? (record as Lineage).#parent : undefined;
  }

  static propertyOf(record: object): string | undefined {
    return #property in record ? (record as Lineage).#property : undefined;
  }
}

/**
 * The JSON an element's value must be by the FHIR R4 model: an object (a complex type), a string,
 * number or boolean (a primitive, by its System type), an array of those (a list), or anything
 * (`any`: no single answer, as for a choice none of whose forms is present).
 */
type Shape = 'any' | 'object' | 'string' | 'number' | 'boolean' | { readonly item: Shape };

const SHAPE_NAMES: Readonly<Record<string, string>> = { object: 'an object', string: 'a string', number: 'a number', boolean: 'a boolean' };

/** What {@link fastFhirObjectClass} makes: the record class, and its constructor without cql-exec-fhir's per-instance cost. */
interface FastFhirObjectKit {
  readonly FastFhirObject: FhirObjectConstructor;
  /** build makes a record of `json` read as `typeInfo`, equal in every observable way to `new FHIRObject(json, typeInfo, modelInfo)`. */
  build(json: unknown, typeInfo: FhirClassInfo | null | undefined, parent?: FhirObject, property?: string): FhirObject;
}

/**
 * fastFhirObjectClass derives from cql-exec-fhir's FHIRObject, changing cost but not answers:
 *
 * - records are built without FHIRObject's constructor, which walks the class hierarchy and
 *   defines one new getter closure per element on every instance (~40 for a MedicationRequest).
 *   Defining ~40 accessors on each object still cost ~14 µs a record, so here the element getters
 *   live on one prototype per class and a record is that prototype plus its JSON (~0.05 µs).
 *   cql-execution reads elements the same way (`record[name]`, then `record.get(name)`); what
 *   enumerated the own getters is answered from the class's element list instead:
 *   `equals`/`equivalent` (cql-execution calls them when present) compare element by element
 *   exactly as its `deepCompareKeysAndValues` did, and de-duplication (distinct.ts) reads
 *   {@link RECORD_ELEMENTS}.
 * - `get` reads FHIR-typed elements itself (same steps as cql-exec-fhir 2.2.0's `FHIRObject.get`,
 *   `getPropertyFromJSON` and `toFHIRObject`) so the elements it returns are built the same cheap
 *   way, and Boolean, Integer, String and Decimal values as the JSON value (as cql-exec-fhir's
 *   `toSystemObject` does); dates and times and explicit choice names still go through
 *   cql-exec-fhir's `get`. Element lookups by name are memoised per class.
 * - `getCode` (a code-filtered retrieve calls it per candidate) reads CodeableConcept and Coding
 *   JSON straight into CQL Codes, as cql-exec-fhir's `toCode` would make them from the elements.
 * - `_typeHierarchy()` is computed once per class info and shared (frozen), and `_is` looks the
 *   name up in a set built from it. cql-exec-fhir rebuilds
 *   it (walking parent classes by name) on every call, and cql-execution calls it for every
 *   candidate overload of every function call: resolving one FHIRHelpers `ToString` call tries each
 *   of its ~250 overloads.
 * - values returned by `get` are of this class, so elements read from a record get the same
 *   treatment (and equality, which compares constructors, sees one class throughout).
 * - a path whose root is not an element of the type returns undefined without cql-exec-fhir's
 *   console.error (it returns undefined too); e.g. the translator's `medication.reference` path
 *   for choice-typed code paths hits this for every CodeableConcept-valued MedicationRequest.
 *   Dotted paths are walked one step at a time for the same reason, with cql-exec-fhir's outcomes:
 *   null stays null/undefined, a list or System value in the middle gives undefined.
 * - an element whose JSON contradicts the model where it is read (a list that is not an array, a
 *   single element that is one, a complex element that is not an object, a primitive whose JSON
 *   type is not its System type's, a date or time that does not parse) throws a
 *   {@link MalformedFhirDataError}, where cql-exec-fhir reads it as absent or as it is: a rule
 *   then fails loudly instead of quietly finding nothing. Only what is read is checked, when it is
 *   read (`read`, and the JSON-only readings, which leave a malformed element to `read` or check it
 *   themselves); records remember where they were read from (a private {@link Lineage}) to name it.
 *
 * One deliberate difference in answers: a resource held in an element declared as the abstract
 * `FHIR.Resource` or `FHIR.DomainResource` (`contained`, `Bundle.entry.resource`, ...) is read as
 * the class its own `resourceType` names. cql-exec-fhir reads it as the declared class, so
 * `R is FHIR.Medication` is false for a contained Medication and a `#id` medicationReference
 * resolves to nothing.
 */
function fastFhirObjectClass(Base: FhirObjectConstructor, modelInfo: FhirModelInfo): FastFhirObjectKit {
  interface TypeFacts {
    readonly hierarchy: TypeHierarchy;
    readonly names: ReadonlySet<string>;
  }
  const cache = new WeakMap<FhirClassInfo, TypeFacts>();
  const elementsByName = new WeakMap<FhirClassInfo, Map<string, ElementInfo | undefined>>();
  const accessors = new WeakMap<FhirClassInfo, PropertyDescriptorMap>();
  const prototypes = new WeakMap<FhirClassInfo, object>();
  const getters = new Map<string, (this: FhirObject) => unknown>();
  const primitive = new WeakMap<TypeSpec, boolean>();
  const baseHierarchy = Base.prototype._typeHierarchy as (this: FhirObject) => TypeHierarchy;
  const baseIs = Base.prototype._is as (this: FhirObject, typeSpecifier: TypeSpecifier) => boolean;
  const baseGet = Base.prototype.get as (this: FhirObject, field: string) => unknown;
  const baseGetCode = (Base.prototype as { getCode(this: FhirObject, field: string): unknown }).getCode;

  class FastFhirObject extends Base {
    /** The wrapped JSON, for cql-exec-fhir's own methods; objects FHIRObject built keep it as an own property. */
    get _json(): unknown {
      return (this as unknown as { readonly [RECORD_JSON]: unknown })[RECORD_JSON];
    }

    /** CQL `=` on records: cql-execution's structural comparison, over the class's elements. */
    equals(other: unknown): boolean | null {
      return compareElements(this, other, cqlEquals);
    }

    /** CQL `~` on records, likewise. */
    equivalent(other: unknown): boolean | null {
      return compareElements(this, other, cqlEquivalent);
    }

    override get(field: string): unknown {
      const typeInfo = this.getTypeInfo();
      if (typeInfo == null) return adopt(baseGet.call(this, field), this, field);
      const known = (this as Memoising)[RECORD_MEMO];
      if (known !== undefined && field in known) return handOut(known[field]);
      const dot = field.indexOf('.');
      const root = dot < 0 ? field : field.slice(0, dot);
      if (elementOf(typeInfo, root) === undefined) return undefined;
      if (dot < 0) return memoised(this, field);
      const head = this.get(root);
      if (head == null) return head;
      return head instanceof FastFhirObject ? head.get(field.slice(dot + 1)) : undefined;
    }

    /** cql-exec-fhir's getCode (the element as a CQL Code, or Codes), built straight from the JSON where that gives the same Codes. */
    override getCode(field: string): unknown {
      const codes = codesFromJson(this, field);
      return codes === NOT_PLAIN ? baseGetCode.call(this, field) : codes;
    }

    override _typeHierarchy(): TypeHierarchy {
      const typeInfo = this.getTypeInfo();
      return typeInfo == null ? baseHierarchy.call(this) : typeFacts(this, typeInfo).hierarchy;
    }

    [PRIMITIVE_VALUE](field: string): unknown {
      return primitiveValue(this, field);
    }

    [ELEMENT_IS](field: string, typeSpecifier: TypeSpecifier): boolean | typeof NOT_PLAIN {
      return elementIs(this, field, typeSpecifier);
    }

    override _is(typeSpecifier: TypeSpecifier): boolean {
      const typeInfo = this.getTypeInfo();
      if (typeInfo == null) return baseIs.call(this, typeSpecifier);
      // Same test as cql-exec-fhir's _is (every hierarchy entry is a NamedTypeSpecifier), by lookup.
      return typeSpecifier.type === 'NamedTypeSpecifier' && typeFacts(this, typeInfo).names.has(typeSpecifier.name);
    }
  }

  /** modelInfo.findClass, remembered per name (reading an element looks its type up every time). */
  const classesByName = new Map<string, FhirClassInfo | undefined>();
  function findClass(name: string): FhirClassInfo | undefined {
    if (!classesByName.has(name)) classesByName.set(name, modelInfo.findClass(name));
    return classesByName.get(name);
  }

  /** build: see {@link FastFhirObjectKit}. Without a class info, FHIRObject's own constructor (it logs, as before). */
  function build(json: unknown, typeInfo: FhirClassInfo | null | undefined, parent?: FhirObject, property?: string): FhirObject {
    if (typeInfo == null) return Object.setPrototypeOf(new Base(json, typeInfo as unknown as FhirClassInfo, modelInfo), FastFhirObject.prototype) as FhirObject;
    const object = Object.create(prototypeOf(typeInfo)) as FhirObject & { [RECORD_JSON]: unknown };
    object[RECORD_JSON] = json;
    Lineage.stamp(object, parent, property);
    return object;
  }

  /** The prototype of records of one class: its element getters, class info and element names. */
  function prototypeOf(typeInfo: FhirClassInfo): object {
    let prototype = prototypes.get(typeInfo);
    if (prototype === undefined) {
      const names = Object.keys(accessorsOf(typeInfo));
      prototype = Object.create(FastFhirObject.prototype, {
        ...accessorsOf(typeInfo),
        _typeInfo: { value: typeInfo },
        _modelInfo: { value: modelInfo },
        [RECORD_ELEMENTS]: { value: Object.freeze(names) },
      }) as object;
      prototypes.set(typeInfo, prototype);
    }
    return prototype;
  }

  /** The element getters FHIRObject's constructor defines on each instance, in its order (own elements, then each base class's). */
  function accessorsOf(typeInfo: FhirClassInfo): PropertyDescriptorMap {
    let descriptors = accessors.get(typeInfo);
    if (descriptors === undefined) {
      const names = new Set<string>();
      for (let current: FhirClassInfo | undefined = typeInfo; current != null;) {
        const internals = current as unknown as ClassInternals;
        for (const element of internals.elements) names.add(element.name);
        current = internals.baseTypeSpecifier == null ? undefined : modelInfo.findClass(internals.baseTypeSpecifier.fqn ?? '');
      }
      descriptors = {};
      for (const name of names) descriptors[name] = { get: getterFor(name) };
      accessors.set(typeInfo, descriptors);
    }
    return descriptors;
  }

  function getterFor(name: string): (this: FhirObject) => unknown {
    let getter = getters.get(name);
    if (getter === undefined) {
      getter = function (this: FhirObject): unknown {
        return this.get(name);
      };
      getters.set(name, getter);
    }
    return getter;
  }

  function elementOf(typeInfo: FhirClassInfo, name: string): ElementInfo | undefined {
    let elements = elementsByName.get(typeInfo);
    if (elements === undefined) elementsByName.set(typeInfo, (elements = new Map()));
    if (!elements.has(name)) elements.set(name, typeInfo.findElement(name, true) as ElementInfo | undefined);
    return elements.get(name);
  }

  function typeFacts(object: FhirObject, typeInfo: FhirClassInfo): TypeFacts {
    let facts = cache.get(typeInfo);
    if (facts === undefined) {
      const computed = baseHierarchy.call(object);
      // Frozen so a caller that tried to mutate the shared array would fail loudly, not corrupt it.
      const hierarchy = Object.freeze(computed.map((entry) => Object.freeze({ ...entry }))) as unknown as TypeHierarchy;
      const names = new Set(computed.filter((entry) => entry.type === 'NamedTypeSpecifier').map((entry) => (entry as { name: string }).name));
      if (names.size !== computed.length) throw new Error('cql-exec-fhir type hierarchy has non-named entries; fhir-model.ts needs updating');
      facts = { hierarchy, names };
      cache.set(typeInfo, facts);
    }
    return facts;
  }

  /**
   * read is FHIRObject.get for a one-step path to an element of the object's class. Elements of a
   * FHIR type are read here (and built with {@link build}); anything else is left to cql-exec-fhir.
   */
  function read(object: FastFhirObject, field: string): unknown {
    const json = (object as unknown as { readonly _json: unknown })._json as Record<string, unknown> | null | undefined;
    const element = elementOf(object.getTypeInfo() as FhirClassInfo, field);
    if (json == null || element === undefined) return adopt(baseGet.call(object, field), object, field);
    if (field !== element.name && element.typeSpecifier.isChoice === true) {
      // An explicit choice name (`medicationCodeableConcept`): cql-exec-fhir reads it, once its JSON is known to fit.
      const explicit = formsOf(element).choices.find((choice) => choice.property === field);
      if (explicit !== undefined) check(object, field, json[field], explicit.shape);
      return adopt(baseGet.call(object, field), object, field);
    }
    const form = presentForm(json, element);
    const { property, extension, spec } = form;
    const value = json[property];
    if (spec.namespace === 'System') {
      // cql-exec-fhir's toSystemObject hands these over as the JSON value (cql-execution 3.3.2 has
      // no Decimal class); dates and times are parsed there (and memoised by the caller).
      if (PLAIN_SYSTEM_TYPES.has(spec.name ?? '')) {
        check(object, property, value, form.shape);
        return value;
      }
      return systemValue(object, field, property, value, form.shape, spec);
    }
    if (spec.isNamed !== true && spec.isList !== true) return adopt(baseGet.call(object, field), object, field);
    check(object, property, value, form.shape);
    const data = propertyFromJson(json, property, extension, spec);
    return data == null ? data : toFhirObject(data, spec, object, property);
  }

  /** A Date, DateTime or Time value, parsed by cql-exec-fhir: a string that does not parse is malformed, not absent. */
  function systemValue(object: FastFhirObject, field: string, property: string, value: unknown, shape: Shape, spec: TypeSpec): unknown {
    if (value == null) return adopt(baseGet.call(object, field), object, field);
    check(object, property, value, shape);
    let parsed: unknown;
    try {
      parsed = baseGet.call(object, field);
    } catch {
      parsed = null; // cql-exec-fhir's Time conversion fails on a string DateTime.parse does not take
    }
    if (parsed == null) throw malformed(object, property, `a valid FHIR ${spec.name === 'Date' ? 'date' : spec.name === 'Time' ? 'time' : 'dateTime'}`);
    return parsed;
  }

  /** check throws {@link MalformedFhirDataError} unless the JSON `value` of `property` has the element's shape (null and absent always do). */
  function check(object: FastFhirObject, property: string, value: unknown, shape: Shape): void {
    if (value == null || shape === 'any') return;
    if (typeof shape === 'string') {
      if (!fits(value, shape)) throw malformed(object, property, SHAPE_NAMES[shape] ?? shape);
      return;
    }
    if (!Array.isArray(value)) throw malformed(object, property, 'an array');
    const item = shape.item;
    if (typeof item !== 'string' || item === 'any') return;
    for (let i = 0; i < value.length; i++) {
      const entry: unknown = value[i];
      if (entry != null && !fits(entry, item)) throw malformed(object, `${property}[${i}]`, SHAPE_NAMES[item] ?? item);
    }
  }

  function fits(value: unknown, shape: 'object' | 'string' | 'number' | 'boolean'): boolean {
    return shape === 'object' ? typeof value === 'object' && !Array.isArray(value) : typeof value === shape;
  }

  /** The error for `property` of `object`: the resource it belongs to and the JSON path to it, from the records' lineage. */
  function malformed(object: FhirObject, property: string, expected: string): MalformedFhirDataError {
    let current = object;
    // A primitive's value sits in the JSON at the primitive's own property (`valueQuantity.value`, not `.value.value`).
    const segments = property === 'value' && /^(FHIR\.)?[a-z]/.test(current.getTypeInfo()?.name ?? '') ? [] : [property];
    for (let parent = Lineage.parentOf(current); parent !== undefined; parent = Lineage.parentOf(current)) {
      segments.unshift(Lineage.propertyOf(current) ?? '?');
      current = parent;
    }
    const root = (current as unknown as { readonly _json?: { readonly resourceType?: unknown; readonly id?: unknown } })._json;
    const resourceType = typeof root?.resourceType === 'string' ? root.resourceType : unqualified(current.getTypeInfo()?.name ?? '?');
    const id = typeof root?.id === 'string' ? root.id : '?';
    return new MalformedFhirDataError(`${resourceType}/${id}`, segments.join('.'), expected);
  }

  /** The JSON shape a type specifier's values must have (remembered per specifier). */
  const shapes = new WeakMap<TypeSpec, Shape>();
  function shapeOf(spec: TypeSpec | undefined): Shape {
    if (spec === undefined) return 'any';
    let shape = shapes.get(spec);
    if (shape === undefined) {
      shape = computeShape(spec);
      shapes.set(spec, shape);
    }
    return shape;
  }

  function computeShape(spec: TypeSpec): Shape {
    if (spec.isList === true) return { item: shapeOf(spec.elementType) };
    if (spec.isChoice === true || spec.isNamed !== true) return 'any';
    if (spec.namespace === 'System') return systemShape(spec.name);
    if (!isFhirPrimitive(spec)) return namedClassOf(spec).classInfo === undefined ? 'any' : 'object';
    const value = primitiveClassValue(spec)?.typeSpecifier;
    return value?.namespace === 'System' ? systemShape(value.name) : 'any';
  }

  function systemShape(name: string | undefined): Shape {
    switch (name) {
      case 'Boolean':
        return 'boolean';
      case 'Integer':
      case 'Decimal':
        return 'number';
      case 'String':
      case 'Date':
      case 'DateTime':
      case 'Time':
        return 'string';
      default:
        return 'any';
    }
  }

  /**
   * namedElement is the object's JSON and the element `field` names, when the object has both and
   * `field` is the element's own name (not an explicit choice name): where the JSON-only readings
   * below start. Undefined: leave the reading to the general path.
   */
  function namedElement(object: FastFhirObject, field: string): { readonly json: Record<string, unknown>; readonly element: ElementInfo } | undefined {
    const typeInfo = object.getTypeInfo();
    const json = (object as unknown as { readonly _json: unknown })._json as Record<string, unknown> | null | undefined;
    if (typeInfo == null || json == null || typeof json !== 'object') return undefined;
    const element = elementOf(typeInfo as FhirClassInfo, field);
    return element === undefined || field !== element.name ? undefined : { json, element };
  }

  /** Elements that are FHIR primitives with a plain System value: their JSON property and extension names (null: not such an element). */
  const primitiveForms = new WeakMap<ElementInfo, { readonly property: string; readonly extension: string; readonly type: string } | null>();

  /** See {@link PRIMITIVE_VALUE}: what `read` then FHIRHelpers' `.value` accessor give, read from the JSON alone. */
  function primitiveValue(object: FastFhirObject, field: string): unknown {
    const found = namedElement(object, field);
    if (found === undefined) return NOT_PLAIN;
    const { json, element } = found;
    let form = primitiveForms.get(element);
    if (form === undefined) {
      const spec = element.typeSpecifier;
      const valueElement = spec.isNamed === true && spec.isChoice !== true && isFhirPrimitive(spec) ? primitiveClassValue(spec) : undefined;
      const plain = valueElement !== undefined && valueElement.typeSpecifier.namespace === 'System' && PLAIN_SYSTEM_TYPES.has(valueElement.typeSpecifier.name ?? '');
      form = plain ? { property: element.name, extension: `_${element.name}`, type: valueElement.typeSpecifier.name === 'Boolean' ? 'boolean' : valueElement.typeSpecifier.name === 'String' ? 'string' : 'number' } : null;
      primitiveForms.set(element, form);
    }
    if (form === null || json[form.extension] != null) return NOT_PLAIN;
    const value = json[form.property];
    if (value == null) return NOT_PLAIN;
    if (typeof value !== form.type) throw malformed(object, form.property, SHAPE_NAMES[form.type] ?? form.type);
    return value;
  }

  /** See {@link ELEMENT_IS}: the class `read` would build the element as, and that class's `_is`. */
  function elementIs(object: FastFhirObject, field: string, typeSpecifier: TypeSpecifier): boolean | typeof NOT_PLAIN {
    if (typeSpecifier.type !== 'NamedTypeSpecifier' || typeSpecifier.name.startsWith(SYSTEM_TYPE_PREFIX)) return NOT_PLAIN;
    const found = namedElement(object, field);
    if (found === undefined) return NOT_PLAIN;
    const { json, element } = found;
    const form = presentForm(json, element);
    const { property, extension, spec } = form;
    const value = json[property];
    check(object, property, value, form.shape);
    // No value (or only a primitive's extension on a complex type): what read gives is left to it.
    if (value == null && (json[extension] == null || !isFhirPrimitive(spec))) return NOT_PLAIN;
    if (spec.isNamed !== true || spec.isList === true || spec.namespace === 'System') return NOT_PLAIN;
    const { classInfo, abstract } = namedClassOf(spec);
    if (classInfo === undefined || abstract) return NOT_PLAIN;
    const facts = cache.get(classInfo) ?? typeFacts(build(value, classInfo), classInfo);
    return facts.names.has(typeSpecifier.name);
  }

  /** The `value` element of a named FHIR primitive type's class. */
  function primitiveClassValue(spec: TypeSpec): ElementInfo | undefined {
    const { classInfo } = namedClassOf(spec);
    return classInfo === undefined ? undefined : elementOf(classInfo, 'value');
  }

  /** One JSON form an element can take: its property name, that of its primitive extension, its type. */
  interface ElementForm {
    readonly property: string;
    readonly extension: string;
    readonly spec: TypeSpec;
    /** The JSON shape its value must have. */
    readonly shape: Shape;
  }
  const forms = new WeakMap<ElementInfo, { readonly plain: ElementForm; readonly choices: readonly ElementForm[] }>();

  /**
   * presentForm is how cql-exec-fhir finds an element in the JSON: a choice element as its first
   * choice present (`medicationCodeableConcept`, then `medicationReference`), by value or
   * extension; otherwise (and when no choice is present) under its own name. The names are built
   * once per element: a key made afresh for every read costs a string-table lookup.
   */
  function presentForm(json: Record<string, unknown>, element: ElementInfo): ElementForm {
    const known = formsOf(element);
    for (const choice of known.choices) if (json[choice.property] != null || json[choice.extension] != null) return choice;
    return known.plain;
  }

  /** Every JSON form of an element: under its own name, and (a choice) under each choice's name. */
  function formsOf(element: ElementInfo): { readonly plain: ElementForm; readonly choices: readonly ElementForm[] } {
    let known = forms.get(element);
    if (known === undefined) {
      const spec = element.typeSpecifier;
      const choices = spec.isChoice !== true ? [] : (spec.choices ?? []).filter((choice) => choice.isNamed === true).map((choice): ElementForm => {
        const choiceName = choice.name === 'SimpleQuantity' ? 'Quantity' : choice.name ?? '';
        const property = `${element.name}${choiceName.charAt(0).toUpperCase()}${choiceName.slice(1)}`;
        return { property, extension: `_${property}`, spec: choice, shape: shapeOf(choice) };
      });
      known = { plain: { property: element.name, extension: `_${element.name}`, spec, shape: shapeOf(spec) }, choices };
      forms.set(element, known);
    }
    return known;
  }

  /**
   * codesFromJson is cql-exec-fhir's `getCode` (its `get` then `toCode`) for a one-step path to a
   * CodeableConcept or Coding element (or a list of them), without building the element objects
   * it reads the codes through: a Coding becomes `new Code(code, system, version, display)` of its
   * JSON values, a CodeableConcept its codings' Codes (one Code alone, else a list; its `coding`
   * when that is null or absent), null and absent stay as they are. NOT_PLAIN for anything else
   * (other types, explicit choice names, primitive extensions on a coding, shapes that are not
   * objects and arrays where FHIR says so), which cql-exec-fhir then reads itself.
   */
  function codesFromJson(object: FastFhirObject, field: string): unknown {
    const found = namedElement(object, field);
    if (found === undefined) return NOT_PLAIN;
    const { json, element } = found;
    const { property, extension, spec } = presentForm(json, element);
    // No choice present: cql-exec-fhir reads null or undefined as it is (anything else: its way).
    if (spec.isChoice === true) return json[property] == null && json[extension] == null ? json[property] : NOT_PLAIN;
    const list = spec.isList === true;
    const kind = codeKindOf(list ? spec.elementType : spec);
    if (kind === undefined) return NOT_PLAIN;
    const value = json[property];
    if (json[extension] != null) return NOT_PLAIN;
    if (value == null) return value;
    if (!list) return kind === 'Coding' ? codeOfCoding(value) : codesOfConcept(value);
    if (!Array.isArray(value)) return NOT_PLAIN;
    const codes: unknown[] = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const code = item == null ? item : kind === 'Coding' ? codeOfCoding(item) : codesOfConcept(item);
      if (code === NOT_PLAIN) return NOT_PLAIN;
      codes[i] = code;
    }
    return codes;
  }

  /** toCode of a CodeableConcept's JSON. */
  function codesOfConcept(concept: unknown): unknown {
    if (typeof concept !== 'object' || concept === null || Array.isArray(concept)) return NOT_PLAIN;
    const { coding } = concept as { readonly coding?: unknown };
    if (coding == null) return coding;
    if (!Array.isArray(coding)) return NOT_PLAIN;
    const codes: unknown[] = new Array<unknown>(coding.length);
    for (let i = 0; i < coding.length; i++) {
      const item: unknown = coding[i];
      const code = item == null ? item : codeOfCoding(item);
      if (code === NOT_PLAIN) return NOT_PLAIN;
      codes[i] = code;
    }
    return codes.length === 1 ? codes[0] : codes;
  }

  /** toCode of a Coding's JSON: its four primitives as they are (a primitive extension: NOT_PLAIN). */
  function codeOfCoding(coding: unknown): unknown {
    const c = plainCoding(coding);
    return c === undefined ? NOT_PLAIN : new Code(c.code as string, c.system as string, c.version as string, c.display as string);
  }

  /** Whether a type specifier names FHIR.CodeableConcept or FHIR.Coding (remembered per specifier). */
  const codeKinds = new WeakMap<TypeSpec, 'CodeableConcept' | 'Coding' | null>();
  function codeKindOf(spec: TypeSpec | undefined): 'CodeableConcept' | 'Coding' | undefined {
    if (spec === undefined) return undefined;
    let kind = codeKinds.get(spec);
    if (kind === undefined) {
      const className = spec.isNamed === true ? unqualified(namedClassOf(spec).classInfo?.name ?? '') : '';
      kind = className === 'CodeableConcept' || className === 'Coding' ? className : null;
      codeKinds.set(spec, kind);
    }
    return kind ?? undefined;
  }

  /** cql-exec-fhir's getPropertyFromJSON: a primitive's value and its `_property` extension merged into one object. */
  function propertyFromJson(json: Record<string, unknown>, property: string, extension: string, spec: TypeSpec): unknown {
    const value = json[property];
    const extra = json[extension];
    if (value == null && extra == null) return value;
    if (!isFhirPrimitive(spec)) return value;
    if (spec.isList !== true) {
      // One value: the general path below without its one-element lists (a primitive read is hot).
      const merged: Record<string, unknown> = {};
      if (typeof value !== 'undefined') merged.value = value;
      if (extra != null) Object.assign(merged, extra);
      return merged;
    }
    const values: unknown[] = Array.isArray(value) ? [...(value as unknown[])] : [value];
    const extras: unknown[] = Array.isArray(extra) ? [...(extra as unknown[])] : [extra];
    while (values.length > extras.length) extras.push(undefined);
    while (extras.length > values.length) values.push(undefined);
    return values.map((item, i) => {
      const more = extras[i];
      if (item == null && more == null) return item;
      const merged: Record<string, unknown> = {};
      if (typeof item !== 'undefined') merged.value = item;
      if (more != null) Object.assign(merged, more);
      return merged;
    });
  }

  /** cql-exec-fhir's isFHIRPrimitiveOrListOfFHIRPrimitives, remembered per type specifier. */
  function isFhirPrimitive(spec: TypeSpec): boolean {
    let answer = primitive.get(spec);
    if (answer === undefined) {
      answer = false;
      if (spec.isNamed === true) {
        const name = spec.name ?? '';
        if (spec.namespace === 'FHIR' && name.charAt(0).toLowerCase() === name.charAt(0)) {
          answer = true;
        } else {
          const typeInfo = modelInfo.findClass(spec.fqn ?? '') as (FhirClassInfo & ClassInternals) | undefined;
          if (typeInfo?.baseTypeSpecifier?.fqn === 'FHIR.Element' && typeInfo.elements.length === 1) {
            const value = typeInfo.findElement('value') as ElementInfo | undefined;
            answer = value?.typeSpecifier.fqn === 'System.String';
          }
        }
      } else if (spec.isList === true && spec.elementType !== undefined) {
        answer = isFhirPrimitive(spec.elementType);
      }
      primitive.set(spec, answer);
    }
    return answer;
  }

  /** The class a named type specifier reads as, and whether it is an abstract resource class (see asOwnResourceType). */
  const namedClasses = new WeakMap<TypeSpec, { readonly classInfo: FhirClassInfo | undefined; readonly abstract: boolean }>();
  function namedClassOf(spec: TypeSpec): { readonly classInfo: FhirClassInfo | undefined; readonly abstract: boolean } {
    let named = namedClasses.get(spec);
    if (named === undefined) {
      const classInfo = findClass(spec.fqn ?? '');
      named = { classInfo, abstract: classInfo !== undefined && ABSTRACT_RESOURCES.has(unqualified(classInfo.name)) };
      namedClasses.set(spec, named);
    }
    return named;
  }

  /** cql-exec-fhir's toFHIRObject (no path suffix: dotted paths are walked by `get`). */
  function toFhirObject(data: unknown, spec: TypeSpec, parent: FhirObject, property: string): unknown {
    if (data == null) return data;
    if (spec.isNamed === true) {
      const { classInfo, abstract } = namedClassOf(spec);
      const object = build(data, classInfo, parent, property);
      return abstract ? asOwnResourceType(object) : object;
    }
    if (spec.isList === true) return (data as unknown[]).map((item) => toFhirObject(item, spec.elementType as TypeSpec, parent, property));
    if (spec.isInterval === true) {
      const { low, high, lowClosed, highClosed } = data as { low: unknown; high: unknown; lowClosed?: boolean; highClosed?: boolean };
      return new Interval(toFhirObject(low, spec.pointType as TypeSpec, parent, property), toFhirObject(high, spec.pointType as TypeSpec, parent, property), lowClosed, highClosed);
    }
    return undefined;
  }

  /**
   * Values read from a record are remembered per (object, field): the wrapped JSON never changes
   * and cql-execution never writes to model objects, so element objects and primitives (string,
   * number, boolean, null, undefined) can be handed out again. Lists are copied on the way out
   * (cql-execution sorts some lists in place). CQL Date and DateTime values are remembered but
   * only ever handed out as copies, since cql-execution adjusts some in place: cql-exec-fhir parses
   * each one by trying several luxon formats (~10% of evaluation time), and `copy()` rebuilds the
   * same fields, offset included. Anything else (e.g. an Interval) is read afresh each time.
   */
  function memoised(object: FastFhirObject, field: string): unknown {
    const fields = ((object as Memoising)[RECORD_MEMO] ??= Object.create(null) as Record<string, unknown>);
    if (field in fields) return handOut(fields[field]);
    const value = read(object, field);
    if (value instanceof FastFhirObject || isPrimitive(value) || (Array.isArray(value) && value.every((item) => item instanceof FastFhirObject))) {
      fields[field] = Array.isArray(value) ? value.slice() : value;
    } else if (isDateOrDateTime(value)) {
      fields[field] = value;
      return value.copy();
    }
    return value;
  }

  function isPrimitive(value: unknown): boolean {
    return value == null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
  }

  function handOut(known: unknown): unknown {
    if (Array.isArray(known)) return known.slice();
    return isDateOrDateTime(known) ? known.copy() : known;
  }

  /** A CQL Date or DateTime (cql-execution 3.3.2 also represents Time as a DateTime). */
  function isDateOrDateTime(value: unknown): value is CqlDate | CqlDateTime {
    return value instanceof CqlDate || value instanceof CqlDateTime;
  }

  /** adopt switches values cql-exec-fhir built to this class (in place: `get` returns fresh objects and arrays). */
  function adopt(value: unknown, parent: FhirObject, property: string): unknown {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) value[i] = adopt(value[i], parent, property);
    } else if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Base.prototype) {
      Object.setPrototypeOf(value, FastFhirObject.prototype);
      Lineage.stamp(value, parent, property);
      return asOwnResourceType(value as FhirObject);
    }
    return value;
  }

  /** A resource read as an abstract resource class, re-read as the class its `resourceType` names (see above). */
  function asOwnResourceType(object: FhirObject): FhirObject {
    const declared = object.getTypeInfo();
    if (declared == null || !ABSTRACT_RESOURCES.has(unqualified(declared.name))) return object;
    const resourceType = (object as unknown as { readonly _json?: { readonly resourceType?: unknown } })._json?.resourceType;
    if (typeof resourceType !== 'string') return object;
    const own = findClass(resourceType);
    if (own === undefined || unqualified(own.name) !== resourceType) return object;
    const retyped = build((object as unknown as { readonly _json: unknown })._json, own, Lineage.parentOf(object), Lineage.propertyOf(object));
    // Only ever narrow: the own class must derive from the declared one.
    return retyped._is({ type: 'NamedTypeSpecifier', name: `{http://hl7.org/fhir}${unqualified(declared.name)}` } as TypeSpecifier) ? retyped : object;
  }

  return { FastFhirObject, build };
}
