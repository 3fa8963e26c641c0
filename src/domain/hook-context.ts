import { z } from 'zod';
import { FHIR_ID_CHARS } from './fhir-id.ts';
import type { HookId } from './hooks.ts';
import { isRecord } from './json.ts';
import { otherPatient } from './patient-reference.ts';

/**
 * The context each CDS Hooks hook requires ({@link https://cds-hooks.org/hooks/}). Kept in domain/
 * because the CDS service refuses a call whose context fails it, and a rule test case
 * (rules/<id>.tests/) must be a call the service would answer: both parse contexts here.
 */

const Bundle = z.looseObject({
  resourceType: z.literal('Bundle', { error: 'must be a FHIR Bundle' }),
  entry: z.array(z.looseObject({ resource: z.looseObject({ resourceType: z.string() }).optional() })).optional(),
});

/**
 * A FHIR id ({@link https://hl7.org/fhir/R4/datatypes.html#id}) that is not `.` or `..`: those match
 * the grammar but are URL dot segments, so `Patient/..` would read another URL with the bearer token.
 */
const ID = `(?!\\.{1,2}$)${FHIR_ID_CHARS}`;

/** contextId parses a context id of `type`, bare as the spec says or `Type/id` as some clients send it, to the bare id. */
function contextId(type: string) {
  const message = `must be a FHIR ${type} id ([A-Za-z0-9-.]{1,64}, not "." or ".."), optionally prefixed "${type}/"`;
  return z.string().trim().regex(new RegExp(`^(?:${type}/)?${ID}$`), message).transform((id) => (id.startsWith(`${type}/`) ? id.slice(type.length + 1) : id));
}

/** userId: a reference to one of `types`, the users each hook names ({@link https://cds-hooks.org/hooks/}). */
function userId(...types: readonly string[]) {
  const listed = `${types.slice(0, -1).join(', ')} or ${types.at(-1)}`;
  return z.string().trim().regex(new RegExp(`^(?:${types.join('|')})/${ID}$`), `must be a FHIR reference to ${listed} (this hook's users)`);
}

/** Clinicians: the user of the order, encounter and discharge hooks. */
const ClinicianId = userId('Practitioner', 'PractitionerRole');
/** Anyone who may open a chart or book an appointment: patients and their carers too. */
const AnyUserId = userId('Practitioner', 'PractitionerRole', 'Patient', 'RelatedPerson');
const Reference = z.string().trim().min(1);
const EncounterId = contextId('Encounter');

/** ContextPatientId parses `context.patientId` to the bare id (`Patient/p1` -> `p1`). */
export const ContextPatientId = contextId('Patient');

const base = { patientId: ContextPatientId, encounterId: EncounterId.optional() };

/** The context fields each hook requires; unknown extra fields are allowed (spec: extensible). */
export const HOOK_CONTEXTS = {
  'patient-view': z.looseObject({ ...base, userId: AnyUserId }),
  'order-select': z.looseObject({ ...base, userId: ClinicianId, selections: z.array(Reference).min(1), draftOrders: Bundle }),
  'order-sign': z.looseObject({ ...base, userId: ClinicianId, draftOrders: Bundle }),
  'encounter-start': z.looseObject({ ...base, userId: ClinicianId, encounterId: EncounterId }),
  'encounter-discharge': z.looseObject({ ...base, userId: ClinicianId, encounterId: EncounterId }),
  'appointment-book': z.looseObject({ ...base, userId: AnyUserId, appointments: Bundle }),
} satisfies Record<HookId, z.ZodType>;

/** One reason a call is refused, naming its field in the request body (`context.selections.0`). */
export interface RequestIssue {
  readonly field: string;
  readonly message: string;
}

export type ParsedHookContext =
  | { readonly ok: true; readonly context: Record<string, unknown> }
  | { readonly ok: false; readonly issues: readonly RequestIssue[] };

/**
 * parseHookContext validates the `context` of a `hook` call as the CDS service does, to the context
 * rules see (ids bare, strings trimmed); every issue names its field from the request body
 * (`context.…`). order-select's selections must name resources of its draftOrders.
 */
export function parseHookContext(hook: HookId, context: unknown): ParsedHookContext {
  const parsed = HOOK_CONTEXTS[hook].safeParse(context);
  if (!parsed.success) return { ok: false, issues: parsed.error.issues.map((issue) => ({ field: ['context', ...issue.path.map(String)].join('.'), message: issue.message })) };
  // Checked after parsing, not with zod's superRefine: zod 4.6's superRefine keeps each parsed value
  // reachable until a full GC, which the CDS service measured as whole prefetches promoted per call.
  const unknownSelections = hook === 'order-select' ? selectionsNotDrafted(parsed.data as z.infer<(typeof HOOK_CONTEXTS)['order-select']>) : [];
  if (unknownSelections.length > 0) return { ok: false, issues: unknownSelections };
  const otherPatients = resourcesOfOtherPatients(parsed.data as Record<string, unknown>);
  if (otherPatients.length > 0) return { ok: false, issues: otherPatients };
  return { ok: true, context: parsed.data as Record<string, unknown> };
}

/**
 * A call is about one patient: a context Bundle (draftOrders, appointments) holding a resource about
 * another is a request that contradicts itself, whose orders must not be checked as this patient's.
 */
function resourcesOfOtherPatients(context: Record<string, unknown>): RequestIssue[] {
  const patientId = String(context.patientId);
  return Object.entries(context).flatMap(([field, value]) => {
    if (!isRecord(value) || value.resourceType !== 'Bundle' || !Array.isArray(value.entry)) return [];
    const resources = value.entry.flatMap((entry) => (isRecord(entry) && isRecord(entry.resource) && typeof entry.resource.resourceType === 'string' ? [entry.resource as { resourceType: string }] : []));
    const other = otherPatient(resources, patientId);
    return other === undefined ? [] : [{ field: `context.${field}`, message: `${other}: a call is about the context patient only` }];
  });
}

/** order-select's `selections` name resources of its `draftOrders` (`MedicationRequest/103`); one that names none is an error, not a card about nothing. */
function selectionsNotDrafted(context: z.infer<(typeof HOOK_CONTEXTS)['order-select']>): RequestIssue[] {
  const drafted = new Set((context.draftOrders.entry ?? []).flatMap((e) => (e.resource && typeof e.resource.id === 'string' ? [`${e.resource.resourceType}/${e.resource.id}`] : [])));
  return context.selections.flatMap((selection, i) => (drafted.has(selection) ? [] : [{ field: `context.selections.${i}`, message: `"${selection}" is not a resource of context.draftOrders (expected Type/id of one of its entries)` }]));
}
