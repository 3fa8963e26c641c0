/**
 * Prefetch tokens ({@link https://cds-hooks.hl7.org/2.0/#prefetch-tokens}): `{{context.<field>}}`
 * for a context field of a simple type, and the user tokens `{{userPractitionerId}}`,
 * `{{userPractitionerRoleId}}`, `{{userPatientId}}`, `{{userRelatedPersonId}}` derived from
 * `context.userId`. FHIRPath tokens (`{{context.draftOrders.entry...}}`, `{{today()}}`, `%prior`
 * variables) are not supported and leave their template unresolved.
 */
import { compare, isRecord } from './json.ts';

const TOKEN = /\{\{\s*([^{}]*?)\s*\}\}/g;
const CONTEXT_FIELD = /^context\.([A-Za-z][A-Za-z0-9_-]*)$/;

const USER_TOKENS: Readonly<Record<string, string>> = {
  Practitioner: 'userPractitionerId',
  PractitionerRole: 'userPractitionerRoleId',
  Patient: 'userPatientId',
  RelatedPerson: 'userRelatedPersonId',
};

/** Context fields that carry a bare id by spec but arrive as `Type/id` from some clients (patientId: see normalizePatientId). */
const BARE_ID_FIELDS: Readonly<Record<string, string>> = { encounterId: 'Encounter/' };

/** A template that cannot be turned into a query for this request, and the tokens that failed. */
export interface UnresolvedTemplate {
  readonly key: string;
  readonly template: string;
  readonly tokens: readonly string[];
}

export interface ResolvedTemplates {
  /** Key -> relative FHIR request (e.g. `Observation?patient=123`), for every template fully resolved. */
  readonly queries: Readonly<Record<string, string>>;
  readonly unresolved: readonly UnresolvedTemplate[];
}

/**
 * prefetchTokenValues returns the value of every token the hook context supports, unencoded:
 * `context.patientId` without a `Patient/` prefix, and the user tokens from `context.userId`.
 */
export function prefetchTokenValues(context: unknown): Readonly<Record<string, string>> {
  const values: Record<string, string> = {};
  if (!isRecord(context)) return values;
  for (const [field, raw] of Object.entries(context)) {
    if (typeof raw !== 'string' && typeof raw !== 'number' && typeof raw !== 'boolean') continue;
    let value = String(raw).trim();
    const prefix = BARE_ID_FIELDS[field];
    if (field === 'patientId') value = normalizePatientId(value) ?? '';
    else if (prefix && value.startsWith(prefix)) value = value.slice(prefix.length);
    if (value) values[`context.${field}`] = value;
  }
  const user = typeof context.userId === 'string' ? /(?:^|\/)([A-Za-z]+)\/([^/]+)$/.exec(context.userId.trim()) : null;
  const userToken = user?.[1] ? USER_TOKENS[user[1]] : undefined;
  if (user?.[2] && userToken) values[userToken] = user[2];
  return values;
}

/** normalizePatientId strips a `Patient/` prefix (or a full `.../Patient/` URL) from a patient id. */
export function normalizePatientId(id: unknown): string | undefined {
  if (typeof id !== 'string') return undefined;
  const bare = id.trim().replace(/^(?:.*\/)?Patient\//, '');
  return bare || undefined;
}

/**
 * resolvePrefetchTemplates replaces the prefetch tokens of each template from the hook context.
 * Values are percent-encoded (`{{context.userId}}`, a `Type/id` reference, keeps its slash for user reads);
 * a template with any token the context cannot supply is listed in `unresolved`, never guessed.
 */
export function resolvePrefetchTemplates(templates: Readonly<Record<string, string>>, context: unknown): ResolvedTemplates {
  const values = prefetchTokenValues(context);
  const queries: Record<string, string> = {};
  const unresolved: UnresolvedTemplate[] = [];
  for (const key of Object.keys(templates).sort(compare)) {
    const template = templates[key];
    if (typeof template !== 'string') continue;
    const failed: string[] = [];
    const query = template.replace(TOKEN, (whole, name: string) => {
      const value = CONTEXT_FIELD.test(name) || Object.values(USER_TOKENS).includes(name) ? values[name] : undefined;
      if (value === undefined) {
        failed.push(whole);
        return whole;
      }
      return encodeTokenValue(name, value);
    });
    if (failed.length > 0) unresolved.push({ key, template, tokens: failed });
    else queries[key] = query.trim();
  }
  return { queries, unresolved };
}

/** Only `context.userId` is a reference by spec (`{{context.userId}}` reads the user): it alone keeps its slash. */
function encodeTokenValue(name: string, value: string): string {
  if (name === 'context.userId' && /^[A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(value)) return value;
  return encodeURIComponent(value);
}
