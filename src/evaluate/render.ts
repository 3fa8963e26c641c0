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
 * and references, not just their text.
 */
export function renderJson(template: unknown, facts: Readonly<Record<string, JsonValue>>): unknown {
  if (typeof template === 'string') {
    const whole = WHOLE_PLACEHOLDER.exec(template);
    return whole ? facts[whole[1] ?? ''] ?? null : renderText(template, facts);
  }
  if (Array.isArray(template)) return template.map((item) => renderJson(item, facts));
  if (template && typeof template === 'object') {
    return Object.fromEntries(Object.entries(template).map(([key, value]) => [key, renderJson(value, facts)]));
  }
  return template;
}

/** truncateSummary keeps a rendered summary under the CDS Hooks 140-character limit, at a word boundary. */
export function truncateSummary(summary: string, limit = 140): string {
  if (summary.length < limit) return summary;
  const cut = summary.slice(0, limit - 2);
  const space = cut.lastIndexOf(' ');
  return `${(space > limit / 2 ? cut.slice(0, space) : cut).trimEnd()}…`;
}
