/**
 * Assembling one patient's data for a CDS Hooks call: the request's prefetch first, then what is
 * missing from the CDS Client's FHIR server (parallel, bounded by a time budget), then what is still
 * missing from the local analytical copy, then the hook context's own resources on top.
 */
import type { FhirResource } from '../../cql-engine/fhir-model.ts';
import { FHIR_ID } from '../../domain/fhir-id.ts';
import { MEDICATION_REFERENCE_HOLDERS } from '../../domain/medication.ts';
import { fetchQuery, followPages, parseFhirBase, type FetchOutcome, type FetchRecord, type FhirConnection } from './fhir-fetch.ts';
import { compare, isRecord, isResource } from './json.ts';
import { otherPatient } from '../../domain/patient-reference.ts';
import { readPrefetch, type MissingPrefetch, type MissingReason } from './read.ts';
import { resourceTypeOfTemplate } from './templates.ts';
import { normalizePatientId, resolvePrefetchTemplates } from './tokens.ts';

/** DEFAULT_BUDGET_MS bounds the whole assembly; CDS Services should answer in about 500 ms to 1 s. */
export const DEFAULT_BUDGET_MS = 1500;
/** DEFAULT_MAX_PAGES bounds how many searchset pages are read per prefetch key. */
export const DEFAULT_MAX_PAGES = 10;
/** With a local source, the FHIR phase stops at this share of the budget so the local copy gets the rest. */
const FHIR_SHARE_WITH_LOCAL = 0.8;

/**
 * LocalSource reads a patient's resources of the given types from the local analytical copy (DuckDB).
 * It returns the Patient whenever the copy holds the patient (that is how the copy tells "no data"
 * from "never heard of them"), and for `Medication` the Medications the patient's records reference
 * and those named in `medicationIds` (a draft order's drug, which no stored record may name yet).
 * It may return more than asked; it should honour `signal`.
 */
export type LocalSource = (patientId: string, resourceTypes: readonly string[], options: { readonly signal: AbortSignal; readonly medicationIds?: readonly string[] }) => Promise<readonly FhirResource[]>;

/** Where a satisfied key's data came from. */
export type DataSource = 'prefetch' | 'fhir' | 'local';

export interface AssembleInput {
  /** The service's prefetch templates (key -> template), e.g. from derivePrefetchTemplates. */
  readonly templates: Readonly<Record<string, string>>;
  /** The hook context: tokens come from it, and its resources (draftOrders, appointments) win over fetched ones. */
  readonly context: Readonly<Record<string, unknown>>;
  /** The request's `prefetch` object, read tolerantly. */
  readonly prefetch?: unknown;
  readonly fhirServer?: string;
  readonly fhirAuthorization?: { readonly access_token?: string } | null;
  readonly localSource?: LocalSource;
  /** Total time budget in ms (default {@link DEFAULT_BUDGET_MS}). */
  readonly budgetMs?: number;
  /** Searchset pages read per key, first page included (default {@link DEFAULT_MAX_PAGES}). */
  readonly maxPages?: number;
  /**
   * Referenced resources of these types must be in the data (only `Medication` is known: CairnCommon.cql
   * resolves `medicationReference`): those missing are read by id from the FHIR server, then the local
   * copy, and the ones still missing come back in `unresolved`.
   */
  readonly followReferences?: readonly 'Medication'[];
  /** Aborts everything, e.g. when the client disconnects. */
  readonly signal?: AbortSignal;
  readonly fetch?: typeof fetch;
  /** Monotonic clock in ms, for timing only (default performance.now). */
  readonly now?: () => number;
}

/** A reference (`Medication/<id>`) that no resource in the data resolves, and why it could not be obtained. */
export interface UnresolvedReference {
  readonly reference: string;
  readonly reason: MissingReason;
  readonly detail?: string;
}

/** A searchset whose later pages could not be read: its key has partial data. */
export interface IncompletePrefetch {
  readonly key: string;
  readonly url: string;
  readonly reason: string;
}

export interface AssembledPatientData {
  /** The context patient's id (bare), when the context has one. */
  readonly patientId: string | undefined;
  /** De-duplicated by type/id: context resources, then prefetch, then FHIR server, then local copy. */
  readonly resources: readonly FhirResource[];
  /** Template keys still unsatisfied, with their templates: what a 412 answer names. */
  readonly missing: readonly MissingPrefetch[];
  /** Keys with data whose later searchset pages could not be read. */
  readonly incomplete: readonly IncompletePrefetch[];
  /** References `followReferences` asked for that no source could give. */
  readonly unresolved: readonly UnresolvedReference[];
  /** Satisfied key -> where its data came from. */
  readonly satisfiedBy: Readonly<Record<string, DataSource>>;
  /** Every HTTP request made to the FHIR server. */
  readonly fetched: readonly FetchRecord[];
  readonly warnings: readonly string[];
  readonly timing: { readonly totalMs: number; readonly budgetMs: number; readonly localMs?: number; readonly budgetExceeded: boolean };
}

/**
 * assemblePatientData gathers a patient's data for one hook call from the prefetch, the FHIR server
 * (`fhirServer` with the `fhirAuthorization` bearer token) and a local source, within `budgetMs`.
 * It never throws for bad prefetch, server errors or timeouts: unsatisfied keys come back in
 * `missing` (a prefetch value or server answer holding anything of another patient included),
 * partial searches in `incomplete`, references not obtained in `unresolved` ({@link shortfallOf}
 * sums them up). Context resources about another patient are refused earlier, with the request.
 */
export async function assemblePatientData(input: AssembleInput): Promise<AssembledPatientData> {
  const now = input.now ?? (() => performance.now());
  const started = now();
  const budgetMs = Math.max(0, input.budgetMs ?? DEFAULT_BUDGET_MS);
  const patientId = normalizePatientId(input.context.patientId);
  const warnings: string[] = [];
  const log: FetchRecord[] = [];

  const { queries, unresolved } = resolvePrefetchTemplates(input.templates, input.context);
  const reading = readPrefetch(input.templates, input.prefetch, patientId === undefined ? {} : { patientId });
  warnings.push(...reading.warnings);

  const state = new KeyState(input.templates);
  for (const key of reading.satisfied) state.satisfy(key, 'prefetch', reading.byKey[key] ?? []);
  const unresolvedByKey = new Map(unresolved.map((u) => [u.key, u]));
  for (const miss of reading.missing) {
    const u = unresolvedByKey.get(miss.key);
    // A template the context cannot resolve can be fetched by nobody: say so rather than "absent".
    if (u && miss.reason === 'absent') state.miss(miss.key, 'unresolved-token', `no value in the hook context for ${u.tokens.join(', ')}`);
    else state.miss(miss.key, miss.reason, miss.detail);
  }

  const base = input.fhirServer === undefined ? undefined : parseFhirBase(input.fhirServer);
  if (input.fhirServer !== undefined && !base) warnings.push(`fhirServer "${String(input.fhirServer)}" is not an absolute http(s) URL; not used`);
  const fromContext = contextResources(input.context);
  const follow = input.followReferences?.includes('Medication') === true;
  /** Ids of the referenced Medications the data gathered so far does not hold (none when not following). */
  const medicationIdsWanted = (): string[] => (follow ? unresolvedMedications([...fromContext, ...state.resourcesInOrder()]).flatMap((reference) => idOf(reference) ?? []) : []);
  // Why referenced Medications still missing are: refined as the FHIR server and the local copy are asked.
  let medicationGap: Gap = base ? { reason: 'absent', detail: 'referenced only by data from the local copy' } : { reason: 'no-fhir-server', detail: 'not in the request, and no usable fhirServer' };
  const deadline = budgetMs * (input.localSource ? FHIR_SHARE_WITH_LOCAL : 1);
  // The FHIR phase's timer and signal exist only when there is a server to ask (most calls have all they need).
  const fhirPhase = base ? phaseSignal(input.signal, Math.max(0, deadline - (now() - started))) : undefined;
  try {
    if (base && fhirPhase) {
      const connection: FhirConnection = {
        base,
        accessToken: typeof input.fhirAuthorization?.access_token === 'string' ? input.fhirAuthorization.access_token : undefined,
        fetch: input.fetch ?? fetch,
        signal: fhirPhase.signal,
        maxPages: Math.max(1, input.maxPages ?? DEFAULT_MAX_PAGES),
        now,
        log,
      };
      await fetchMissing(connection, state, queries, reading.pending, patientId);
      const ids = medicationIdsWanted();
      if (ids.length > 0) medicationGap = await fetchReferencedMedications(connection, state, ids);
    } else {
      for (const { key, url } of reading.pending) state.incomplete(key, url, 'searchset has a next page and no usable fhirServer to read it from');
      for (const key of state.missingKeys()) if (queries[key] !== undefined) state.note(key, 'no-fhir-server');
    }
  } finally {
    fhirPhase?.dispose();
  }

  let localMs: number | undefined;
  if (input.localSource && patientId) {
    const localStarted = now();
    const medications = follow ? { needed: medicationIdsWanted() } : undefined;
    const note = await fillFromLocal(input.localSource, patientId, state, medications, Math.max(0, budgetMs - (localStarted - started)), input.signal, warnings);
    if (note) medicationGap = { ...medicationGap, detail: `${medicationGap.detail}; ${note}` };
    localMs = Math.round(now() - localStarted);
  }

  const resources = mergeResources(fromContext, state.resourcesInOrder());
  const totalMs = Math.round(now() - started);
  return {
    patientId,
    resources,
    missing: state.missingList(),
    incomplete: state.incompleteList(),
    unresolved: follow ? unresolvedMedications(resources).map((reference) => ({ reference, ...(idOf(reference) ? medicationGap : NOT_AN_ID) })) : [],
    satisfiedBy: state.sources(),
    fetched: log,
    warnings,
    timing: { totalMs, budgetMs, ...(localMs === undefined ? {} : { localMs }), budgetExceeded: totalMs > budgetMs },
  };
}

/** mergeResources de-duplicates by type/id, earlier lists winning; resources without an id are all kept. */
export function mergeResources(...lists: readonly (readonly FhirResource[])[]): FhirResource[] {
  // Ids seen per type: no "type/id" string made per resource.
  const seen = new Map<string, Set<string>>();
  const out: FhirResource[] = [];
  for (const list of lists) {
    for (const resource of list) {
      if (typeof resource.id === 'string' && resource.id) {
        let ids = seen.get(resource.resourceType);
        if (ids === undefined) seen.set(resource.resourceType, (ids = new Set()));
        if (ids.has(resource.id)) continue;
        ids.add(resource.id);
      }
      out.push(resource);
    }
  }
  return out;
}

/** contextResources returns the resources of the Bundles in a hook context (draftOrders, appointments...). */
export function contextResources(context: Readonly<Record<string, unknown>>): FhirResource[] {
  const out: FhirResource[] = [];
  for (const field of Object.keys(context).sort(compare)) {
    const value = context[field];
    if (!isRecord(value) || value.resourceType !== 'Bundle' || !Array.isArray(value.entry)) continue;
    for (const entry of value.entry) if (isRecord(entry) && isResource(entry.resource)) out.push(entry.resource);
  }
  return out;
}

/** A prefetch key a 412 answer names: not obtained (its MissingReason), or obtained only in part. */
export interface ShortKey {
  readonly key: string;
  readonly template: string;
  readonly reason: MissingReason | 'incomplete';
}

/** What keeps assembled data from being evaluated: the body of a 412 answer. */
export interface Shortfall {
  readonly missing: readonly ShortKey[];
  readonly unresolved: readonly UnresolvedReference[];
  /** One sentence per key or reference, with why. */
  readonly detail: string;
}

/**
 * shortfallOf says what keeps `data` from being evaluated as complete and as the context patient's
 * (missing keys, those holding another patient's resources included; searchsets still incomplete;
 * references not obtained), or undefined when nothing does. Partial data is never evaluated as if
 * complete: a missed page may hold the order a warning is about. Both service-call paths ask it, so
 * they agree on when data may be evaluated; `templates` names incomplete keys' templates.
 */
export function shortfallOf(data: AssembledPatientData, templates: Readonly<Record<string, string>>): Shortfall | undefined {
  if (data.missing.length === 0 && data.incomplete.length === 0 && data.unresolved.length === 0) return undefined;
  const partial = data.incomplete.map((i) => ({ key: i.key, template: templates[i.key] ?? '', reason: 'incomplete' as const, detail: i.reason }));
  const keys = [...data.missing, ...partial].sort((a, b) => compare(a.key, b.key));
  const sentences = [
    ...keys.map((k) => `prefetch "${k.key}" (${k.template}) ${k.reason === 'incomplete' ? 'incomplete' : 'not obtained'}: ${k.detail ?? k.reason}`),
    ...data.unresolved.map((u) => `${u.reference} not obtained: ${u.detail ?? u.reason}`),
  ];
  return { missing: keys.map(({ key, template, reason }) => ({ key, template, reason })), unresolved: data.unresolved, detail: sentences.join('; ') };
}

// ---------------------------------------------------------------------------------------------

async function fetchMissing(connection: FhirConnection, state: KeyState, queries: Readonly<Record<string, string>>, pending: readonly { key: string; url: string }[], patientId: string | undefined): Promise<void> {
  // A prefetch OperationOutcome means the client already tried and failed: the spec sends it so the
  // service does not repeat the query (CDS Hooks 2.0 §Prefetch Template). The local copy may still fill it.
  const searches = state.missingKeys().flatMap((key) => {
    const query = state.reason(key) === 'operation-outcome' ? undefined : queries[key];
    return query === undefined ? [] : [{ key, run: () => fetchQuery(connection, key, query) }];
  });
  const follows = pending.map(({ key, url }) => ({ key, run: () => followPages(connection, key, [], url, 1) }));
  const settled = await Promise.all([...searches, ...follows].map(async ({ key, run }) => ({ key, outcome: await run() })));
  const followed = new Set(follows.map((f) => f.key));
  for (const { key, outcome } of settled) applyOutcome(state, key, outcome, followed.has(key), patientId);
}

function applyOutcome(state: KeyState, key: string, outcome: FetchOutcome, isFollow: boolean, patientId: string | undefined): void {
  if (!outcome.ok) {
    // A failed first page leaves the key missing; a follow-up failure only makes prefetched data partial.
    if (isFollow) state.incomplete(key, '', outcome.detail);
    else state.miss(key, outcome.timeout ? 'timeout' : 'fetch-failed', outcome.detail);
    return;
  }
  // A server that answers with anything of another patient is not believed, as a prefetch holding it is not.
  const other = patientId === undefined ? undefined : otherPatient(outcome.resources, patientId);
  if (other !== undefined) {
    if (isFollow) state.incomplete(key, '', `a next page ${other}`);
    else state.miss(key, 'other-patient', `the fhirServer's answer ${other}`);
    return;
  }
  if (isFollow) state.add(key, outcome.resources);
  else state.satisfy(key, 'fhir', outcome.resources);
  if (outcome.incomplete) state.incomplete(key, outcome.incomplete.url, outcome.incomplete.reason);
}

/** Why referenced resources not in the data are not there. */
interface Gap {
  readonly reason: MissingReason;
  readonly detail: string;
}

const MEDICATION_HOLDERS = new Set(MEDICATION_REFERENCE_HOLDERS);
/** Why a `Medication/<id>` reference whose id is not a FHIR id is not read: it is never put in a query. */
const NOT_AN_ID: Gap = { reason: 'invalid', detail: 'not a FHIR resource id' };
/** Why the local copy gave nothing for a patient it does not hold. */
const LOCAL_UNKNOWN = 'the local copy has no record of the patient';

/**
 * unresolvedMedications lists, sorted, the `Medication/<id>` references of medication resources that no
 * Medication among `resources` resolves. CQL matches the reference against `'Medication/' + id`, so a
 * contained (`#id`) reference resolves within its resource and an absolute URL never does.
 */
function unresolvedMedications(resources: readonly FhirResource[]): string[] {
  const held = new Set<string>();
  const wanted = new Set<string>();
  for (const resource of resources) {
    if (resource.resourceType === 'Medication' && typeof resource.id === 'string') held.add(`Medication/${resource.id}`);
    else if (MEDICATION_HOLDERS.has(resource.resourceType) && isRecord(resource.medicationReference)) {
      const reference = resource.medicationReference.reference;
      if (typeof reference === 'string' && reference.startsWith('Medication/')) wanted.add(reference);
    }
  }
  return [...wanted].filter((reference) => !held.has(reference)).sort(compare);
}

/** idOf returns the id of a `Medication/<id>` reference when it is a FHIR id. */
function idOf(reference: string): string | undefined {
  const id = reference.slice('Medication/'.length);
  return FHIR_ID.test(id) ? id : undefined;
}

/** fetchReferencedMedications reads Medications with one `Medication?_id=` search (in the recommended subset) and says why any not found are missing. */
async function fetchReferencedMedications(connection: FhirConnection, state: KeyState, ids: readonly string[]): Promise<Gap> {
  const outcome = await fetchQuery(connection, 'Medication', `Medication?_id=${ids.join(',')}`);
  if (!outcome.ok) return { reason: outcome.timeout ? 'timeout' : 'fetch-failed', detail: outcome.detail };
  state.addExtra(outcome.resources.filter((r) => r.resourceType === 'Medication'));
  return { reason: 'absent', detail: outcome.incomplete ? `not on the fhirServer pages read (${outcome.incomplete.reason})` : 'not on the fhirServer' };
}

/**
 * fillFromLocal fills missing and partial keys from the local copy, when it holds the patient, and
 * adds the Medications it gives when `medications` is given (asked for alongside keys, for the
 * orders these may bring, and on their own when some are `needed`). It returns why Medications
 * still missing are not in the local copy (undefined when it was not asked or failed).
 */
async function fillFromLocal(source: LocalSource, patientId: string, state: KeyState, medications: { readonly needed: readonly string[] } | undefined, budgetMs: number, outer: AbortSignal | undefined, warnings: string[]): Promise<string | undefined> {
  const keys = [...new Set([...state.missingKeys(), ...state.incompleteList().map((i) => i.key)])].filter((key) => state.resourceType(key));
  const keyTypes = keys.map((key) => state.resourceType(key) ?? '');
  const needed = medications?.needed ?? [];
  if (keyTypes.length === 0 && needed.length === 0) return undefined;
  const types = [...new Set([...keyTypes, ...(medications ? ['Medication'] : [])])].sort(compare);
  const phase = phaseSignal(outer, budgetMs);
  try {
    const resources = await Promise.race([
      source(patientId, types, { signal: phase.signal, ...(needed.length > 0 ? { medicationIds: needed } : {}) }),
      new Promise<never>((_, reject) => phase.signal.addEventListener('abort', () => reject(new Error('time budget spent')), { once: true })),
    ]);
    const valid = Array.isArray(resources) ? resources.filter(isResource) : [];
    // An empty answer about a patient the copy has never heard of is not "no data": those keys stay missing.
    if (!valid.some((r) => r.resourceType === 'Patient' && r.id === patientId)) {
      for (const key of keys) state.annotate(key, LOCAL_UNKNOWN);
      return LOCAL_UNKNOWN;
    }
    for (const key of keys) state.fillLocal(key, valid.filter((r) => r.resourceType === state.resourceType(key)));
    if (medications) state.addExtra(valid.filter((r) => r.resourceType === 'Medication'));
    return 'not in the local copy';
  } catch (error) {
    warnings.push(`local source failed for ${types.join(', ')}: ${error instanceof Error ? error.message : String(error)}`);
    return undefined;
  } finally {
    phase.dispose();
  }
}

/** phaseSignal aborts after `ms` or when `outer` aborts; dispose() clears the timer. */
function phaseSignal(outer: AbortSignal | undefined, ms: number): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error('time budget spent')), ms);
  const onOuter = (): void => controller.abort(outer?.reason);
  if (outer?.aborted) controller.abort(outer.reason);
  else outer?.addEventListener('abort', onOuter, { once: true });
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuter);
    },
  };
}

/** Per-key bookkeeping: which keys are satisfied, from where, with what; which are missing or partial. */
class KeyState {
  private readonly templates: Readonly<Record<string, string>>;
  private readonly data = new Map<string, FhirResource[]>();
  private readonly source = new Map<string, DataSource>();
  private readonly missing = new Map<string, { reason: MissingReason; detail?: string }>();
  private readonly partial = new Map<string, IncompletePrefetch>();
  private readonly extra: FhirResource[] = [];

  constructor(templates: Readonly<Record<string, string>>) {
    this.templates = templates;
  }

  satisfy(key: string, from: DataSource, resources: readonly FhirResource[]): void {
    this.missing.delete(key);
    this.source.set(key, from);
    this.data.set(key, [...resources]);
  }

  add(key: string, resources: readonly FhirResource[]): void {
    this.data.set(key, [...(this.data.get(key) ?? []), ...resources]);
  }

  addExtra(resources: readonly FhirResource[]): void {
    this.extra.push(...resources);
  }

  miss(key: string, reason: MissingReason, detail?: string): void {
    this.missing.set(key, detail === undefined ? { reason } : { reason, detail });
  }

  /** note replaces the reason of a key that stays missing (e.g. there is no server to fetch it from). */
  note(key: string, reason: MissingReason): void {
    const current = this.missing.get(key);
    if (current?.reason === 'absent') this.missing.set(key, { reason, detail: 'not in prefetch, and no usable fhirServer' });
  }

  /** annotate adds why to a key that stays missing or partial (e.g. the local copy does not hold the patient). */
  annotate(key: string, note: string): void {
    const missing = this.missing.get(key);
    if (missing) this.missing.set(key, { reason: missing.reason, detail: missing.detail === undefined ? note : `${missing.detail}; ${note}` });
    const partial = this.partial.get(key);
    if (partial) this.partial.set(key, { ...partial, reason: `${partial.reason}; ${note}` });
  }

  incomplete(key: string, url: string, reason: string): void {
    this.partial.set(key, { key, url: url || (this.partial.get(key)?.url ?? ''), reason });
  }

  /** fillLocal satisfies a missing or partial key from the local copy; local data never replaces fetched data. */
  fillLocal(key: string, resources: readonly FhirResource[]): void {
    if (this.missing.has(key)) this.satisfy(key, 'local', resources);
    else {
      this.add(key, resources);
      this.partial.delete(key);
    }
  }

  reason(key: string): MissingReason | undefined {
    return this.missing.get(key)?.reason;
  }

  resourceType(key: string): string | undefined {
    const template = this.templates[key];
    return template === undefined ? undefined : resourceTypeOfTemplate(template);
  }

  missingKeys(): string[] {
    return [...this.missing.keys()].sort(compare);
  }

  missingList(): MissingPrefetch[] {
    return this.missingKeys().map((key) => {
      const { reason, detail } = this.missing.get(key) ?? { reason: 'absent' as const };
      return { key, template: this.templates[key] ?? '', reason, ...(detail === undefined ? {} : { detail }) };
    });
  }

  incompleteList(): IncompletePrefetch[] {
    return [...this.partial.values()].sort((a, b) => compare(a.key, b.key));
  }

  sources(): Record<string, DataSource> {
    return Object.fromEntries([...this.source.entries()].sort(([a], [b]) => compare(a, b)));
  }

  /** Resources by data source priority (prefetch, FHIR, local), keys sorted within each, then referenced extras. */
  resourcesInOrder(): FhirResource[] {
    const keys = [...this.data.keys()].sort(compare);
    const order: DataSource[] = ['prefetch', 'fhir', 'local'];
    return [...order.flatMap((from) => keys.filter((key) => this.source.get(key) === from).flatMap((key) => this.data.get(key) ?? [])), ...this.extra];
  }
}
