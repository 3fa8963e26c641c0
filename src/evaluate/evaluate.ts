import { z } from 'zod';
import { CairnError } from '../domain/errors.ts';
import { PROVENANCE_EXTENSION, SELECTIONS_EXTENSION, type Action, type AlertDecision, type Card, type CardDecision, type CareGapDecision, type Decision, type PatientEvaluation, type RuleError, type Suggestion, type SystemActionDecision } from '../domain/decisions.ts';
import type { HookId } from '../domain/hooks.ts';
import { executeLibrary, openPatientSession, type DefineResults, type PatientSession } from '../cql-engine/execute.ts';
import type { FhirResource } from '../cql-engine/fhir-model.ts';
import { indexPatient, type PatientData } from '../cql-engine/patient-source.ts';
import { toJsonValue, type JsonValue } from '../cql-engine/values.ts';
import type { ActionTemplate, CardTemplate } from '../knowledge/rule-schema.ts';
import { deterministicUuid, stableStringify } from './ids.ts';
import type { ConditionTrace } from '../rules-engine/conditions.ts';
import type { PreparedKnowledge } from './prepare.ts';
import { renderJson, renderText, requiredText, truncateSummary } from './render.ts';

/** What to evaluate a patient for: the instant (required: evaluation never reads the clock) and, in real time, the hook. */
export interface EvaluationRequest {
  /** ISO 8601 instant with offset, e.g. `2026-03-01T12:00:00Z`; CQL `Now()` is this instant. */
  readonly evaluatedAt: string;
  /** The CDS hook being answered; absent for the nightly batch. */
  readonly hook?: HookId;
  /** The hook's context; resources in it (draftOrders, appointments) are seen like stored data. */
  readonly context?: Readonly<Record<string, unknown>>;
  readonly hookInstance?: string;
  /** Evaluate only these rules (a CDS service's rule group); all applicable rules when absent. */
  readonly ruleIds?: readonly string[];
  /** Also return each rule's facts and condition results (for tests and coverage). */
  readonly trace?: boolean;
}

/** What one rule saw and decided for one patient, returned when the request asks for a trace. */
export interface RuleTrace {
  readonly ruleId: string;
  readonly facts: Readonly<Record<string, JsonValue>>;
  readonly conditions: readonly ConditionTrace[];
  readonly fired: boolean;
}

const Instant = z.iso.datetime({ offset: true });

/**
 * evaluatePatient evaluates one patient against a prepared knowledge set: each applicable rule's
 * conditions over the facts they read, then, for a rule that fires, the rest of its facts to fill
 * its card, alert or care gap. All rules share one session, so a define (of a rule's library or
 * one it includes) runs at most once per patient. Returns the decisions plus per-rule errors (a
 * failing rule never hides the others). The same inputs always give byte-identical output.
 */
export async function evaluatePatient(prepared: PreparedKnowledge, patientData: PatientData, request: EvaluationRequest): Promise<PatientEvaluation & { readonly traces?: readonly RuleTrace[] }> {
  if (!Instant.safeParse(request.evaluatedAt).success) {
    throw new CairnError('INPUT_INVALID', `evaluatedAt "${request.evaluatedAt}" is not an ISO 8601 instant with a time zone (e.g. 2026-03-01T12:00:00Z)`);
  }
  const { resources, patientId } = assemblePatient(patientData, request.context);
  const knowledgeVersion = prepared.knowledge.version;
  const applicable = prepared.rulesFor(request.hook);
  const rules = request.ruleIds ? applicable.filter((r) => request.ruleIds?.includes(r.loaded.rule.id)) : applicable;

  // One session, opened for the first rule: the libraries' shared includes (CairnCommon) run once for all rules.
  let session: PatientSession | undefined;
  const sessionOf = (): PatientSession => (session ??= openPatientSession(prepared.model, resources, { executionDateTime: request.evaluatedAt, codeService: prepared.knowledge.valueSets }));
  const decisions: Decision[] = [];
  const errors: RuleError[] = [];
  const traces: RuleTrace[] | undefined = request.trace ? [] : undefined;
  const contextHash = request.hook ? deterministicUuid(stableStringify(request.context ?? {})) : '';
  for (const rule of rules) {
    const { rule: spec } = rule.loaded;
    const library = prepared.libraries.get(rule.libraryKey);
    if (!library) {
      errors.push({ ruleId: spec.id, ruleVersion: spec.version, library: spec.cql.library, message: `library ${rule.libraryKey} is not prepared` });
      continue;
    }
    try {
      // Only what the conditions read is computed to decide; the facts a card or alert shows
      // (names, reasons, ids) only when the rule fires, or when a trace asks for every fact.
      const deciding = jsonFacts(rule.decidingFacts, await sessionOf().evaluate(library, rule.decidingFacts));
      const outcome = await rule.conditions.evaluate({ ...deciding, context: request.context ?? {}, hook: request.hook ?? null });
      if (!outcome.fired && !traces) continue;
      const facts = jsonFacts(spec.cql.facts, await sessionOf().evaluate(library, spec.cql.facts));
      traces?.push({ ruleId: spec.id, facts, conditions: outcome.trace, fired: outcome.fired });
      if (!outcome.fired) continue;
      const base = { ruleId: spec.id, ruleVersion: spec.version, knowledgeVersion };
      if (request.hook) {
        if (spec.outcome.card) {
          const concerns = selectedConcerns(request.context, facts);
          if (concerns === 'other drafts') continue;
          const cardId = deterministicUuid('card', knowledgeVersion, spec.id, patientId, request.hook, request.hookInstance ?? '', request.evaluatedAt, contextHash);
          const card = renderCard(spec.outcome.card, spec.source, facts, cardId);
          const extension = { [PROVENANCE_EXTENSION]: base, ...(concerns.length ? { [SELECTIONS_EXTENSION]: concerns } : {}) };
          decisions.push({ ...base, kind: 'card', hook: request.hook, card: { ...card, extension } } satisfies CardDecision);
        }
        const actions = (spec.outcome.systemActions ?? []).flatMap((action, i) => renderActions(action, facts, `$.outcome.systemActions[${i}]`));
        if (actions.length > 0) decisions.push({ ...base, kind: 'system-action', hook: request.hook, actions } satisfies SystemActionDecision);
        continue;
      }
      const decisionId = (kind: string): string => deterministicUuid(kind, spec.id, spec.version, patientId, request.evaluatedAt);
      if (spec.outcome.alert) {
        const { severity, message, category } = spec.outcome.alert;
        decisions.push({ ...base, kind: 'alert', id: decisionId('alert'), severity, message: renderText(message, facts), ...(category ? { category } : {}) } satisfies AlertDecision);
      }
      if (spec.outcome.careGap) {
        const { measure, guideline, missing, dueDate } = spec.outcome.careGap;
        const due = dueDate ? facts[dueDate.fact] : null;
        decisions.push({
          ...base,
          kind: 'care-gap',
          id: decisionId('care-gap'),
          ...(measure ? { measure } : {}),
          ...(guideline ? { guideline } : {}),
          missing: renderText(missing, facts),
          dueDate: typeof due === 'string' ? due.slice(0, 10) : request.evaluatedAt.slice(0, 10),
        } satisfies CareGapDecision);
      }
    } catch (error) {
      errors.push({ ruleId: spec.id, ruleVersion: spec.version, library: spec.cql.library, message: error instanceof Error ? error.message : String(error) });
    }
  }
  return {
    patientId,
    evaluatedAt: request.evaluatedAt,
    knowledgeVersion,
    ...(request.hook ? { hook: request.hook } : {}),
    decisions,
    errors,
    ...(traces ? { traces } : {}),
  };
}

/**
 * evaluateDefines returns every define of one prepared library for a patient, as JSON, with the
 * hook context's resources included exactly as evaluatePatient sees them. Used to test CQL logic
 * apart from the rules around it.
 */
export async function evaluateDefines(prepared: PreparedKnowledge, libraryKey: string, patientData: PatientData, request: EvaluationRequest): Promise<Record<string, JsonValue>> {
  const library = prepared.libraries.get(libraryKey);
  if (!library) throw new CairnError('INPUT_INVALID', `library ${libraryKey} is not prepared in knowledge ${prepared.knowledge.version}`);
  const { resources } = assemblePatient(patientData, request.context);
  const values = await executeLibrary(library, indexPatient(prepared.model, resources), { executionDateTime: request.evaluatedAt, codeService: prepared.knowledge.valueSets });
  return Object.fromEntries(Object.entries(values).map(([name, value]) => [name, toJsonValue(value)]));
}

function assemblePatient(patientData: PatientData, context: Readonly<Record<string, unknown>> | undefined): { resources: FhirResource[]; patientId: string } {
  const resources = withContextResources(resourcesOf(patientData), context);
  const patientId = resources.find((r) => r.resourceType === 'Patient')?.id ?? patientIdFromContext(context);
  if (!patientId) throw new CairnError('INPUT_INVALID', 'patient data has no Patient resource with an id');
  return { resources, patientId };
}

/** The named define results as JSON facts, in the given order. */
function jsonFacts(names: readonly string[], values: DefineResults): Record<string, JsonValue> {
  return Object.fromEntries(names.map((name) => [name, toJsonValue(values[name])]));
}

function renderCard(template: CardTemplate, ruleSource: CardTemplate['source'], facts: Readonly<Record<string, JsonValue>>, uuid: string): Card {
  const detail = template.detail ? renderText(template.detail, facts).trim() : '';
  const suggestions = (template.suggestions ?? [])
    .map((suggestion, i): Suggestion | undefined => {
      const where = `$.outcome.card.suggestions[${i}]`;
      const actions = (suggestion.actions ?? []).flatMap((action, j) => renderActions(action, facts, `${where}.actions[${j}]`));
      if (suggestion.actions && actions.length === 0) return undefined;
      return {
        label: requiredText(suggestion.label, facts, `${where}.label`),
        uuid: deterministicUuid(uuid, 'suggestion', String(i)),
        ...(suggestion.isRecommended === undefined ? {} : { isRecommended: suggestion.isRecommended }),
        ...(actions.length ? { actions } : {}),
      };
    })
    .filter((s): s is Suggestion => s !== undefined);
  const source = template.source ?? ruleSource;
  return {
    uuid,
    summary: truncateSummary(requiredText(template.summary, facts, '$.outcome.card.summary')),
    ...(detail ? { detail } : {}),
    indicator: template.indicator,
    source: source ?? { label: 'Cairn' },
    ...(suggestions.length ? { suggestions, selectionBehavior: template.selectionBehavior ?? 'at-most-one' } : {}),
    ...(template.overrideReasons ? { overrideReasons: template.overrideReasons } : {}),
    ...(template.links ? { links: template.links } : {}),
  };
}


/** renderActions fills the action template at `where` in the rule; a delete whose ids come from a fact becomes one action per id (CDS Hooks 2.0 `resourceId` is one reference). */
function renderActions(action: ActionTemplate, facts: Readonly<Record<string, JsonValue>>, where: string): Action[] {
  const description = requiredText(action.description, facts, `${where}.description`);
  if (action.type === 'delete') {
    const ids = Array.isArray(action.resourceId) ? action.resourceId : toStrings(action.resourceId ? facts[action.resourceId.fact] : null);
    return ids.map((resourceId) => ({ type: 'delete', description, resourceId }));
  }
  const resource = renderJson(action.resource, facts);
  if (!resource || typeof resource !== 'object') return [];
  return [{ type: action.type, description, resource: resource as Record<string, unknown> }];
}

/**
 * selectedConcerns returns the order-select `selections` (e.g. `MedicationRequest/draft-1`) that the
 * rule's facts mention, so the card can say which selected draft order it is about (none without
 * selections: order-sign, patient-view). 'other drafts' when the facts name draft orders, none of
 * them selected: that card is about an order chosen earlier (and answered when it was selected),
 * and repeating it at every later selection is noise; order-sign still shows it.
 */
function selectedConcerns(context: Readonly<Record<string, unknown>> | undefined, facts: Readonly<Record<string, JsonValue>>): readonly string[] | 'other drafts' {
  const selections = context?.selections;
  if (!Array.isArray(selections) || selections.length === 0) return [];
  const mentioned = new Set(Object.values(facts).flatMap(toStrings));
  const concerns = selections.filter((s): s is string => typeof s === 'string' && mentioned.has(s));
  if (concerns.length > 0) return concerns;
  const entries = (context?.draftOrders as { entry?: readonly { resource?: { resourceType?: unknown; id?: unknown } }[] } | undefined)?.entry ?? [];
  return entries.some(({ resource }) => typeof resource?.id === 'string' && mentioned.has(`${String(resource.resourceType)}/${resource.id}`)) ? 'other drafts' : [];
}

function toStrings(value: JsonValue | undefined): string[] {
  if (typeof value === 'string') return value ? [value] : [];
  if (Array.isArray(value)) return value.flatMap(toStrings);
  return [];
}

function resourcesOf(data: PatientData): FhirResource[] {
  if (Array.isArray(data)) return [...(data as readonly FhirResource[])];
  const bundle = data as { resourceType?: unknown; entry?: readonly { resource?: FhirResource }[] };
  if (bundle.resourceType === 'Bundle') return (bundle.entry ?? []).flatMap((e) => (e.resource ? [e.resource] : []));
  if (typeof bundle.resourceType === 'string') return [data as unknown as FhirResource];
  throw new CairnError('INPUT_INVALID', 'patient data must be a FHIR Bundle, a resource or an array of resources');
}

/** Context resources (draft orders, appointments) replace stored ones with the same type and id: they are the newer state. */
function withContextResources(resources: FhirResource[], context: Readonly<Record<string, unknown>> | undefined): FhirResource[] {
  if (!context) return resources;
  const extra: FhirResource[] = [];
  for (const value of Object.values(context)) {
    const bundle = value as { resourceType?: unknown; entry?: unknown };
    if (bundle?.resourceType === 'Bundle' && Array.isArray(bundle.entry)) {
      for (const entry of bundle.entry as { resource?: FhirResource }[]) if (entry?.resource?.resourceType) extra.push(entry.resource);
    }
  }
  if (extra.length === 0) return resources;
  // Replaced ids by type: the few context resources are looked up, no key made per stored resource.
  const replaced = new Map<string, Set<string>>();
  for (const r of extra) {
    if (!r.id) continue;
    let ids = replaced.get(r.resourceType);
    if (ids === undefined) replaced.set(r.resourceType, (ids = new Set()));
    ids.add(r.id);
  }
  return [...resources.filter((r) => replaced.get(r.resourceType)?.has(r.id ?? '') !== true), ...extra];
}

function patientIdFromContext(context: Readonly<Record<string, unknown>> | undefined): string | undefined {
  const id = context?.patientId;
  return typeof id === 'string' && id ? id.replace(/^Patient\//, '') : undefined;
}
