/**
 * Reading the `prefetch` of a CDS Hooks request tolerantly
 * ({@link https://cds-hooks.hl7.org/2.0/#prefetch-template}): each value is a resource, a Bundle
 * (searchset, possibly paginated), `null` (the client has no data: satisfied with nothing), an
 * OperationOutcome (the client failed: treated as missing), or absent (not satisfied). Nothing here
 * throws, whatever JSON arrives.
 */
import type { FhirResource } from '../../cql-engine/fhir-model.ts';
import { compare, isRecord, isResource } from './json.ts';
import { otherPatient } from '../../domain/patient-reference.ts';
import { normalizePatientId } from './tokens.ts';

/** Why a prefetch key has no usable data. */
export type MissingReason = 'absent' | 'operation-outcome' | 'invalid' | 'other-patient' | 'unresolved-token' | 'fetch-failed' | 'timeout' | 'no-fhir-server';

/** A template key that is not satisfied, with its template (what a 412 problem body names). */
export interface MissingPrefetch {
  readonly key: string;
  readonly template: string;
  readonly reason: MissingReason;
  /** Human-readable detail: the OperationOutcome diagnostics, HTTP status, unresolved tokens... */
  readonly detail?: string;
}

/** A searchset page whose `next` link has not been followed yet. */
export interface PendingPage {
  readonly key: string;
  readonly url: string;
}

export interface PrefetchReading {
  /** Resources found, in template key order; not yet de-duplicated. */
  readonly resources: readonly FhirResource[];
  /** Resources per satisfied key. */
  readonly byKey: Readonly<Record<string, readonly FhirResource[]>>;
  /** Keys the prefetch satisfies, `null` values included. */
  readonly satisfied: readonly string[];
  readonly missing: readonly MissingPrefetch[];
  /** Searchset Bundles with a `next` link: the data of these keys is incomplete until followed. */
  readonly pending: readonly PendingPage[];
  readonly warnings: readonly string[];
}

/** The content of one prefetch value or one FHIR response, classified. */
export type PrefetchValue =
  | { readonly kind: 'empty' }
  | { readonly kind: 'resources'; readonly resources: readonly FhirResource[]; readonly next?: string }
  | { readonly kind: 'outcome'; readonly detail: string }
  | { readonly kind: 'invalid'; readonly detail: string };

/**
 * readPrefetch checks `prefetch` against the service's templates: which keys are satisfied, which
 * are missing and why, which searchsets continue on a `next` page. Keys not in `templates` are
 * ignored (with a warning): a service only uses data it asked for. `patientId` (with or without
 * `Patient/`), when given, is compared with each prefetched Patient's id and each resource's patient
 * reference ({@link otherPatient}): a key holding anything of another patient is missing
 * (`other-patient`), since evaluation takes every resource it is given as the context patient's.
 */
export function readPrefetch(templates: Readonly<Record<string, string>>, prefetch: unknown, options: { readonly patientId?: string } = {}): PrefetchReading {
  const values = isRecord(prefetch) ? prefetch : {};
  const warnings: string[] = [];
  if (prefetch !== undefined && prefetch !== null && !isRecord(prefetch)) warnings.push('prefetch is not a JSON object; ignored');
  const resources: FhirResource[] = [];
  const byKey: Record<string, readonly FhirResource[]> = {};
  const satisfied: string[] = [];
  const missing: MissingPrefetch[] = [];
  const pending: PendingPage[] = [];
  const patientId = normalizePatientId(options.patientId);

  for (const key of Object.keys(templates).sort(compare)) {
    const template = templates[key] ?? '';
    if (!Object.hasOwn(values, key) || values[key] === undefined) {
      missing.push({ key, template, reason: 'absent' });
      continue;
    }
    const value = classifyFhirJson(values[key]);
    if (value.kind === 'outcome') {
      missing.push({ key, template, reason: 'operation-outcome', detail: value.detail });
      continue;
    }
    if (value.kind === 'invalid') {
      missing.push({ key, template, reason: 'invalid', detail: value.detail });
      continue;
    }
    const found = value.kind === 'resources' ? value.resources : [];
    const other = patientId === undefined ? undefined : otherPatient(found, patientId);
    if (other !== undefined) {
      missing.push({ key, template, reason: 'other-patient', detail: other });
      continue;
    }
    satisfied.push(key);
    byKey[key] = found;
    resources.push(...found);
    if (value.kind === 'resources' && value.next) pending.push({ key, url: value.next });
  }
  for (const key of Object.keys(values).sort(compare)) {
    if (!Object.hasOwn(templates, key)) warnings.push(`prefetch key "${key}" is not one of this service's templates; ignored`);
  }
  return { resources, byKey, satisfied, missing, pending, warnings };
}

/**
 * classifyFhirJson tells what a prefetch value or FHIR response body holds. A Bundle gives its entry
 * resources (OperationOutcome entries are search messages, not data; an error-level one makes the
 * whole Bundle an outcome) and its `next` link; an array of resources is accepted too.
 */
export function classifyFhirJson(value: unknown): PrefetchValue {
  if (value === null) return { kind: 'empty' };
  if (Array.isArray(value)) {
    const resources = value.filter(isResource);
    if (resources.length !== value.length) return { kind: 'invalid', detail: 'an array whose items are not all FHIR resources' };
    return { kind: 'resources', resources: resources.filter((r) => r.resourceType !== 'OperationOutcome') };
  }
  const legacy = legacyWrapped(value);
  if (legacy !== undefined) return legacy;
  if (!isResource(value)) return { kind: 'invalid', detail: `not a FHIR resource (${describeJson(value)})` };
  if (value.resourceType === 'OperationOutcome') return { kind: 'outcome', detail: outcomeDetail(value) };
  if (value.resourceType !== 'Bundle') return { kind: 'resources', resources: [value] };

  const entries = Array.isArray(value.entry) ? value.entry : [];
  const found: FhirResource[] = [];
  for (const entry of entries) {
    const resource = isRecord(entry) ? entry.resource : undefined;
    if (!isResource(resource)) continue;
    if (resource.resourceType === 'OperationOutcome') {
      if (isErrorOutcome(resource)) return { kind: 'outcome', detail: outcomeDetail(resource) };
      continue;
    }
    found.push(resource);
  }
  const next = nextLink(value);
  return next ? { kind: 'resources', resources: found, next } : { kind: 'resources', resources: found };
}

/** nextLink returns a Bundle's `link[relation=next].url`, if any. */
export function nextLink(bundle: Readonly<Record<string, unknown>>): string | undefined {
  if (!Array.isArray(bundle.link)) return undefined;
  for (const link of bundle.link) {
    if (isRecord(link) && link.relation === 'next' && typeof link.url === 'string' && link.url.trim()) return link.url.trim();
  }
  return undefined;
}

/**
 * legacyWrapped unwraps the pre-1.0 CDS Hooks prefetch form `{"response": {"status": "200 OK"}, "resource": {...}}`,
 * which some clients and published examples still send; a non-2xx status is a failed prefetch.
 */
function legacyWrapped(value: unknown): PrefetchValue | undefined {
  if (!isRecord(value) || value.resourceType !== undefined || !isRecord(value.response) || !('resource' in value)) return undefined;
  const status = typeof value.response.status === 'string' ? value.response.status.trim() : '';
  if (status && !/^2\d\d\b/.test(status)) return { kind: 'outcome', detail: `prefetch response status ${status.slice(0, 40)}` };
  if (value.resource === null) return { kind: 'empty' };
  return isResource(value.resource) ? classifyFhirJson(value.resource) : { kind: 'invalid', detail: 'a prefetch wrapper without a FHIR resource' };
}

function isErrorOutcome(outcome: Readonly<Record<string, unknown>>): boolean {
  return Array.isArray(outcome.issue) && outcome.issue.some((issue) => isRecord(issue) && (issue.severity === 'error' || issue.severity === 'fatal'));
}

function outcomeDetail(outcome: Readonly<Record<string, unknown>>): string {
  const issues = Array.isArray(outcome.issue) ? outcome.issue.filter(isRecord) : [];
  const texts = issues.map((issue) => {
    const details = isRecord(issue.details) && typeof issue.details.text === 'string' ? issue.details.text : undefined;
    const text = typeof issue.diagnostics === 'string' ? issue.diagnostics : details;
    return [issue.severity, issue.code, text].filter((part) => typeof part === 'string' && part).join(' ');
  });
  return `OperationOutcome${texts.length ? `: ${texts.join('; ').slice(0, 300)}` : ''}`;
}

function describeJson(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (isRecord(value)) return 'object without resourceType';
  return typeof value;
}
