import { CairnError } from '../domain/errors.ts';
import type { JsonValue } from '../cql-engine/values.ts';

const PLACEHOLDER = /\{\{\s*([^{}]+?)\s*\}\}/g;
const WHOLE_PLACEHOLDER = /^\{\{\s*([^{}]+?)\s*\}\}$/;

/** formatFact renders a fact for card text: dates as YYYY-MM-DD, quantities with their unit, lists joined. */
export function formatFact(value: JsonValue | undefined): string {
  if (value === null || value === undefined) return 'unknown';
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : String(Math.round(value * 100) / 100);
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'string') return /^\d{4}-\d{2}-\d{2}T/.test(value) ? value.slice(0, 10) : value;
  if (Array.isArray(value)) return value.map(formatFact).join(', ');
  if ('value' in value && 'unit' in value) return `${formatFact(value.value)} ${unitLabel(value.unit)}`.trim();
  if (typeof value.display === 'string') return value.display;
  if (typeof value.code === 'string') return value.code;
  if (typeof value.resourceType === 'string') return `${value.resourceType}/${formatFact(value.id)}`;
  return JSON.stringify(value);
}

function unitLabel(unit: JsonValue | undefined): string {
  if (typeof unit !== 'string' || unit === '1') return '';
  return unit.replace(/\{([^}]*)\}/g, '$1').replace(/_/g, ' ');
}

/** renderText fills `{{Fact}}` placeholders in a string. */
export function renderText(template: string, facts: Readonly<Record<string, JsonValue>>): string {
  return template.replace(PLACEHOLDER, (_, name: string) => formatFact(facts[name]));
}

/**
 * renderJson fills placeholders throughout a JSON template (a FHIR resource in a suggestion). A
 * string that is exactly one placeholder takes the fact's JSON value, so resources can embed codes
 * and references, not just their text. Nulls and empty strings, lists and objects are left out at
 * every depth, a missing fact's key with them: FHIR JSON allows none of these. Returns undefined
 * when nothing is left.
 */
export function renderJson(template: unknown, facts: Readonly<Record<string, JsonValue>>): unknown {
  return withoutEmpty(fill(template, facts));
}

function fill(template: unknown, facts: Readonly<Record<string, JsonValue>>): unknown {
  if (typeof template === 'string') {
    const whole = WHOLE_PLACEHOLDER.exec(template);
    return whole ? facts[whole[1] ?? ''] : renderText(template, facts);
  }
  if (Array.isArray(template)) return template.map((item) => fill(item, facts));
  if (template && typeof template === 'object') {
    return Object.fromEntries(Object.entries(template).map(([key, value]) => [key, fill(value, facts)]));
  }
  return template;
}

/** withoutEmpty drops nulls and empty values innermost first, so a list holding only nulls goes too. */
function withoutEmpty(value: unknown): unknown {
  if (value === null || value === '') return undefined;
  if (Array.isArray(value)) {
    const items = value.map(withoutEmpty).filter((item) => item !== undefined);
    return items.length ? items : undefined;
  }
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).flatMap(([key, item]) => {
      const kept = withoutEmpty(item);
      return kept === undefined ? [] : [[key, kept] as const];
    });
    return entries.length ? Object.fromEntries(entries) : undefined;
  }
  return value;
}

/**
 * requiredText renders a text CDS Hooks requires (a card summary, a suggestion label, an action
 * description). One that renders empty is the rule's error for this patient, never an empty field;
 * `where` is its path in the rule, e.g. `$.outcome.card.summary`.
 */
export function requiredText(template: string, facts: Readonly<Record<string, JsonValue>>, where: string): string {
  const text = renderText(template, facts).trim();
  if (!text) {
    throw new CairnError('EVALUATION_FAILED', `${where} "${template}" rendered empty: CDS Hooks requires this text, so the rule returns no card or action for this patient`, { context: { where, template } });
  }
  return text;
}

/** truncateSummary keeps a rendered summary under the CDS Hooks 140-character limit, at a word boundary. */
export function truncateSummary(summary: string, limit = 140): string {
  if (summary.length < limit) return summary;
  const cut = summary.slice(0, limit - 2);
  const space = cut.lastIndexOf(' ');
  return `${(space > limit / 2 ? cut.slice(0, space) : cut).trimEnd()}…`;
}
