/**
 * Prefetch templates derived from the data a rule group's CQL reads: every ELM `Retrieve`
 * ({@link https://cql.hl7.org/elm.html}) of the libraries and their includes becomes at most one
 * template per FHIR resource type, limited to the CDS Hooks 2.0 recommended query subset
 * ({@link https://cds-hooks.hl7.org/2.0/#prefetch-query-restrictions}): an instance read of the
 * Patient and type-level searches by patient reference, optionally narrowed by a token `:in`
 * value-set filter. Anything else (Medication, Practitioner, ...) is left to the FHIR fallback.
 */

import { compare, isRecord } from './json.ts';

const FHIR_NAMESPACE = '{http://hl7.org/fhir}';

/** PATIENT_TOKEN is the prefetch token for the patient in context. */
export const PATIENT_TOKEN = '{{context.patientId}}';

/** PATIENT_TEMPLATE is the one spelling of the patient read Cairn ever emits. */
export const PATIENT_TEMPLATE = `Patient/${PATIENT_TOKEN}`;

/**
 * R4 search parameters that link a resource type to the patient
 * ({@link https://hl7.org/fhir/R4/searchparameter-registry.html}). `patient` wherever R4 defines it;
 * `subject` for the two types whose only patient link is `subject`. Types not listed here (Medication,
 * Practitioner, Organization, Location, Substance, ...) are outside the patient compartment.
 */
export const PATIENT_SEARCH_PARAM: Readonly<Record<string, 'patient' | 'subject'>> = Object.freeze({
  Account: 'patient',
  AdverseEvent: 'subject',
  AllergyIntolerance: 'patient',
  Appointment: 'patient',
  BodyStructure: 'patient',
  CarePlan: 'patient',
  CareTeam: 'patient',
  Claim: 'patient',
  ClinicalImpression: 'patient',
  Communication: 'patient',
  CommunicationRequest: 'patient',
  Composition: 'patient',
  Condition: 'patient',
  Consent: 'patient',
  Coverage: 'patient',
  DetectedIssue: 'patient',
  Device: 'patient',
  DeviceRequest: 'patient',
  DeviceUseStatement: 'patient',
  DiagnosticReport: 'patient',
  DocumentReference: 'patient',
  Encounter: 'patient',
  EpisodeOfCare: 'patient',
  ExplanationOfBenefit: 'patient',
  FamilyMemberHistory: 'patient',
  Flag: 'patient',
  Goal: 'patient',
  ImagingStudy: 'patient',
  Immunization: 'patient',
  ImmunizationEvaluation: 'patient',
  ImmunizationRecommendation: 'patient',
  List: 'patient',
  Media: 'patient',
  MedicationAdministration: 'patient',
  MedicationDispense: 'patient',
  MedicationRequest: 'patient',
  MedicationStatement: 'patient',
  NutritionOrder: 'patient',
  Observation: 'patient',
  Procedure: 'patient',
  QuestionnaireResponse: 'patient',
  RelatedPerson: 'patient',
  RiskAssessment: 'patient',
  ServiceRequest: 'patient',
  Specimen: 'patient',
  SupplyRequest: 'subject',
  Task: 'patient',
  VisionPrescription: 'patient',
});

/**
 * Types whose R4 `code` search parameter searches exactly the element CQL filters on (`code`), so a
 * `code:in=<value set>` filter returns what the retrieve would keep. MedicationRequest is not here:
 * its `code` searches only `medicationCodeableConcept`, never a referenced Medication.
 */
const CODE_SEARCHABLE = new Set(['AllergyIntolerance', 'Condition', 'DiagnosticReport', 'Observation', 'Procedure', 'ServiceRequest']);

/** A FHIR resource type the CQL reads that no prefetch template can ask for, and why. */
export interface NotPrefetchable {
  readonly dataType: string;
  readonly reason: string;
}

/** PrefetchPlan is what derivePrefetchPlan found: the templates, and what they cannot cover. */
export interface PrefetchPlan {
  /** Prefetch key -> template, keys sorted. */
  readonly templates: Readonly<Record<string, string>>;
  /** Template key -> the FHIR resource type it returns. */
  readonly resourceTypes: Readonly<Record<string, string>>;
  /** Retrieved types left to the FHIR fallback (sorted by dataType). */
  readonly notPrefetchable: readonly NotPrefetchable[];
}

export interface DeriveOptions {
  /**
   * Narrow a search with `code:in=<value set url>` when every retrieve of that type filters `code`
   * by value sets. In the recommended subset, but many CDS Clients do not support `:in`; a client that
   * rejects the query sends nothing, so this is off by default.
   */
  readonly valueSetFilters?: boolean;
}

interface RetrieveUse {
  /** Value-set canonical URLs, or undefined when the retrieve is unfiltered or filtered otherwise. */
  readonly valueSets: readonly string[] | undefined;
}

/**
 * derivePrefetchPlan walks the `Retrieve` nodes of the given ELM documents (pass a library and
 * everything it includes; see {@link withIncludes}) and returns one deterministic template per
 * prefetchable resource type: `patient` -> `Patient/{{context.patientId}}`, `observations` ->
 * `Observation?patient={{context.patientId}}`, and so on. Non-ELM input is ignored.
 */
export function derivePrefetchPlan(elm: readonly unknown[], options: DeriveOptions = {}): PrefetchPlan {
  const index = indexLibraries(elm);
  const uses = new Map<string, RetrieveUse[]>();
  const otherModels = new Set<string>();
  for (const doc of index.docs) {
    walk(doc.library, (node) => {
      if (node.type !== 'Retrieve' || typeof node.dataType !== 'string') return;
      if (!node.dataType.startsWith(FHIR_NAMESPACE)) {
        otherModels.add(node.dataType);
        return;
      }
      const type = node.dataType.slice(FHIR_NAMESPACE.length);
      const list = uses.get(type) ?? [];
      list.push({ valueSets: valueSetFilter(node, doc, index) });
      uses.set(type, list);
    });
  }

  const templates: Record<string, string> = {};
  const resourceTypes: Record<string, string> = {};
  const notPrefetchable: NotPrefetchable[] = [...otherModels].map((dataType) => ({ dataType, reason: 'not a FHIR R4 type; only {http://hl7.org/fhir} retrieves are prefetched' }));
  for (const [type, list] of uses) {
    const key = templateKey(type);
    if (type === 'Patient') {
      templates[key] = PATIENT_TEMPLATE;
      resourceTypes[key] = type;
      continue;
    }
    const param = PATIENT_SEARCH_PARAM[type];
    if (!param) {
      notPrefetchable.push({ dataType: `${FHIR_NAMESPACE}${type}`, reason: notPrefetchableReason(type) });
      continue;
    }
    templates[key] = `${type}?${param}=${PATIENT_TOKEN}${codeFilter(type, list, options)}`;
    resourceTypes[key] = type;
  }
  return {
    templates: sortedRecord(templates),
    resourceTypes: sortedRecord(resourceTypes),
    notPrefetchable: notPrefetchable.sort((a, b) => compare(a.dataType, b.dataType)),
  };
}

/** derivePrefetchTemplates is {@link derivePrefetchPlan}'s templates: key -> template, keys sorted. */
export function derivePrefetchTemplates(elm: readonly unknown[], options: DeriveOptions = {}): Record<string, string> {
  return { ...derivePrefetchPlan(elm, options).templates };
}

/**
 * withIncludes returns the root ELM documents plus every library they include, transitively,
 * resolved by name and version among `pool`; each document once, roots first. Includes missing
 * from the pool are skipped (loading knowledge already reports them).
 */
export function withIncludes(roots: readonly unknown[], pool: readonly unknown[]): unknown[] {
  const byId = new Map<string, unknown>();
  for (const doc of pool) {
    const id = identifierOf(doc);
    if (id) byId.set(libraryId(id.name, id.version), doc);
  }
  const seen = new Set<unknown>();
  const out: unknown[] = [];
  const visit = (doc: unknown): void => {
    if (seen.has(doc) || !identifierOf(doc)) return;
    seen.add(doc);
    out.push(doc);
    for (const include of includesOf(doc)) {
      const target = byId.get(libraryId(include.path, include.version)) ?? (include.version === undefined ? findByName(byId, include.path) : undefined);
      if (target) visit(target);
    }
  };
  roots.forEach(visit);
  return out;
}

/** templateKey is the stable prefetch key for a resource type: `patient`, `medicationRequests`, `allergyIntolerances`. */
export function templateKey(type: string): string {
  if (type === 'Patient') return 'patient';
  const camel = type.charAt(0).toLowerCase() + type.slice(1);
  if (/[^aeiou]y$/.test(camel)) return `${camel.slice(0, -1)}ies`;
  if (/(s|x|ch|sh)$/.test(camel)) return `${camel}es`;
  return `${camel}s`;
}

/** resourceTypeOfTemplate reads the resource type a template asks for (`Observation?...`, `Patient/...`), if it names one. */
export function resourceTypeOfTemplate(template: string): string | undefined {
  const match = /^([A-Z][A-Za-z]+)(?:[/?]|$)/.exec(template.trim());
  return match?.[1];
}

// ---------------------------------------------------------------------------------------------

type ElmNode = Record<string, unknown>;

interface ElmDoc {
  readonly name: string;
  readonly version: string | undefined;
  readonly library: ElmNode;
}

interface LibraryIndex {
  readonly docs: readonly ElmDoc[];
  readonly byId: ReadonlyMap<string, ElmDoc>;
}

function indexLibraries(elm: readonly unknown[]): LibraryIndex {
  const byId = new Map<string, ElmDoc>();
  for (const doc of elm) {
    const id = identifierOf(doc);
    if (!id) continue;
    const key = libraryId(id.name, id.version);
    if (!byId.has(key)) byId.set(key, { ...id, library: (doc as { library: ElmNode }).library });
  }
  const docs = [...byId.values()].sort((a, b) => compare(libraryId(a.name, a.version), libraryId(b.name, b.version)));
  return { docs, byId };
}

function identifierOf(doc: unknown): { name: string; version: string | undefined } | undefined {
  const library = isRecord(doc) ? doc.library : undefined;
  const identifier = isRecord(library) ? library.identifier : undefined;
  if (!isRecord(identifier) || typeof identifier.id !== 'string') return undefined;
  return { name: identifier.id, version: typeof identifier.version === 'string' ? identifier.version : undefined };
}

function includesOf(doc: unknown): { localIdentifier: string | undefined; path: string; version: string | undefined }[] {
  const library = isRecord(doc) ? doc.library : undefined;
  const includes = isRecord(library) && isRecord(library.includes) ? library.includes.def : undefined;
  if (!Array.isArray(includes)) return [];
  return includes.flatMap((def: unknown) =>
    isRecord(def) && typeof def.path === 'string'
      ? [{ localIdentifier: typeof def.localIdentifier === 'string' ? def.localIdentifier : undefined, path: def.path, version: typeof def.version === 'string' ? def.version : undefined }]
      : [],
  );
}

function findByName<T>(byId: ReadonlyMap<string, T>, name: string): T | undefined {
  const keys = [...byId.keys()].filter((key) => key.startsWith(`${name}|`)).sort((a, b) => compare(b, a));
  return keys[0] === undefined ? undefined : byId.get(keys[0]);
}

function libraryId(name: string, version: string | undefined): string {
  return `${name}|${version ?? ''}`;
}

/** walk visits every object node under `root` once, skipping annotations (they repeat the source). */
function walk(root: unknown, visit: (node: ElmNode) => void): void {
  const seen = new Set<unknown>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || typeof node !== 'object' || seen.has(node)) continue;
    seen.add(node);
    if (Array.isArray(node)) {
      for (const item of node) stack.push(item);
      continue;
    }
    const record = node as ElmNode;
    visit(record);
    for (const [field, value] of Object.entries(record)) if (field !== 'annotation') stack.push(value);
  }
}

/** The value-set URLs a retrieve filters `code` by, or undefined when it cannot be expressed as `code:in`. */
function valueSetFilter(node: ElmNode, doc: ElmDoc, index: LibraryIndex): readonly string[] | undefined {
  if (node.codes === undefined || (node.codeProperty !== undefined && node.codeProperty !== 'code')) return undefined;
  if (node.codeComparator !== undefined && node.codeComparator !== 'in') return undefined;
  const refs = isRecord(node.codes) && node.codes.type === 'ValueSetRef' ? [node.codes] : undefined;
  if (!refs) return undefined;
  const urls: string[] = [];
  for (const ref of refs) {
    const url = resolveValueSet(ref, doc, index);
    if (!url) return undefined;
    urls.push(url);
  }
  return urls;
}

function resolveValueSet(ref: ElmNode, doc: ElmDoc, index: LibraryIndex): string | undefined {
  if (typeof ref.name !== 'string') return undefined;
  let owner: ElmDoc | undefined = doc;
  if (typeof ref.libraryName === 'string') {
    const include = includesOf({ library: doc.library }).find((i) => i.localIdentifier === ref.libraryName);
    owner = include ? (index.byId.get(libraryId(include.path, include.version)) ?? findByName(index.byId, include.path)) : undefined;
  }
  const defs = owner && isRecord(owner.library.valueSets) ? owner.library.valueSets.def : undefined;
  if (!Array.isArray(defs)) return undefined;
  const def: unknown = defs.find((d: unknown) => isRecord(d) && d.name === ref.name);
  return isRecord(def) && typeof def.id === 'string' ? def.id : undefined;
}

function codeFilter(type: string, uses: readonly RetrieveUse[], options: DeriveOptions): string {
  if (!options.valueSetFilters || !CODE_SEARCHABLE.has(type)) return '';
  const urls = new Set<string>();
  for (const use of uses) {
    // One unfiltered retrieve of the type needs every resource of it: no filter is safe then.
    if (!use.valueSets) return '';
    use.valueSets.forEach((url) => urls.add(url));
  }
  return `&code:in=${[...urls].sort(compare).map(encodeQueryValue).join(',')}`;
}

/** encodeQueryValue percent-encodes a query value, keeping `:` and `/` (legal in a query) so URLs stay readable. */
function encodeQueryValue(value: string): string {
  return encodeURIComponent(value).replace(/%3A/gi, ':').replace(/%2F/gi, '/');
}

function notPrefetchableReason(type: string): string {
  if (type === 'Medication') {
    return 'not in the patient compartment, and _include (MedicationRequest:medication) is outside the CDS Hooks recommended query subset; referenced Medications are read from fhirServer by id';
  }
  return 'has no R4 search parameter linking it to the patient; left to the FHIR fallback';
}

function sortedRecord<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => compare(a, b)));
}
