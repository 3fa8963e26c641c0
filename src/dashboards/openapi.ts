/**
 * The OpenAPI 3.1 document of the report API, generated from the same zod schemas that validate
 * the queries (so it cannot drift), plus a plain HTML rendering of it at `/api/docs`.
 */
import { z } from 'zod';
import type { ListColumn } from '../warehouse/reports.ts';
import { PAGE_QUERY, type ListRoute } from './lists.ts';

type Json = Record<string, unknown>;

function parameters(schema: z.ZodObject): Json[] {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, Json>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, property]) => {
    const { description, ...rest } = property;
    return { name, in: 'query', required: json.required?.includes(name) ?? false, ...(description ? { description } : {}), schema: rest, explode: true };
  });
}

const COLUMN_SCHEMA: Record<ListColumn['kind'], Json> = {
  string: { type: ['string', 'null'] },
  integer: { type: ['integer', 'null'] },
  number: { type: ['number', 'null'] },
  date: { type: ['string', 'null'], format: 'date' },
  timestamp: { type: ['string', 'null'], format: 'date-time' },
};

const problem = { description: 'RFC 9457 problem details', content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } };
const errors = { 400: problem, 401: problem, 403: problem };

/** buildOpenApi describes every route of the report API. */
export function buildOpenApi(lists: readonly ListRoute[]): Json {
  const paths: Record<string, Json> = {
    '/api/me': { get: { summary: 'The signed-in user, role and what it may see.', responses: { 200: { description: 'user' }, ...errors } } },
    '/api/session': {
      post: { summary: 'Sign in with an API key or OIDC token: sets an HttpOnly SameSite=Strict cookie.', security: [], requestBody: { content: { 'application/json': { schema: { type: 'object', required: ['token'], properties: { token: { type: 'string' } } } } } }, responses: { 200: { description: 'user' }, 400: problem, 401: problem } },
      delete: { summary: 'Sign out (clears the cookie).', security: [], responses: { 204: { description: 'signed out' } } },
    },
    '/api/overview': { get: { summary: 'One tile per rule result (alerts or care gaps): latest count and rate, change against the previous run, trend; measure status.', parameters: [{ name: 'runs', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 366, default: 12 } }], responses: { 200: { description: 'tiles' }, ...errors } } },
    '/api/measures': { get: { summary: 'EXTENSION POINT: eCQM summaries per run once MeasureReports are stored; `available: false` until then.', responses: { 200: { description: 'measure status' }, ...errors } } },
  };
  for (const route of lists) {
    const item = { type: 'object', properties: Object.fromEntries(route.columns.map((c) => [c.name, COLUMN_SCHEMA[c.kind]])) };
    const patientNote = route.permission === 'patients' ? ' Patient-level: roles allowed to see patients only; every access is audited.' : route.permission === 'audit' ? ' Admin only.' : '';
    paths[`/api/${route.name}`] = {
      get: {
        summary: route.summary + patientNote,
        parameters: parameters(route.query.extend(PAGE_QUERY.shape)),
        responses: {
          200: { description: 'one page in a stable order', content: { 'application/json': { schema: { type: 'object', properties: { total: { type: 'integer' }, limit: { type: 'integer' }, offset: { type: 'integer' }, items: { type: 'array', items: item }, links: { type: 'object' } } } } } },
          ...errors,
        },
      },
    };
    paths[`/api/${route.name}/export`] = {
      get: {
        summary: `The whole list (no paging), streamed: CSV, Parquet or Arrow IPC stream.${patientNote}`,
        parameters: parameters(route.query.extend({ format: z.enum(['csv', 'parquet', 'arrow']).describe('export format') })),
        responses: {
          200: { description: 'file', content: { 'text/csv': {}, 'application/vnd.apache.parquet': {}, 'application/vnd.apache.arrow.stream': {} } },
          ...errors,
        },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Cairn report API', version: '1', description: 'Published batch results and CDS Hooks statistics for the dashboards. Every list pages server-side and exports as CSV, Parquet or Arrow.' },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }, { cookie: [] }],
    paths,
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'a configured API key, or a JWT from the trusted OIDC issuer' },
        cookie: { type: 'apiKey', in: 'cookie', name: 'cairn_dashboards' },
      },
      schemas: {
        Problem: { type: 'object', properties: { title: { type: 'string' }, status: { type: 'integer' }, detail: { type: 'string' }, code: { type: 'string' } } },
      },
    },
  };
}

const escape = (s: unknown): string => String(s ?? '').replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch]!);

/** openApiPage renders the document as one static HTML page (no script). */
export function openApiPage(doc: Json): string {
  const paths = doc.paths as Record<string, Record<string, { summary?: string; parameters?: { name: string; required: boolean; description?: string; schema?: unknown }[] }>>;
  const sections = Object.entries(paths).map(([path, methods]) => Object.entries(methods).map(([method, op]) => `
    <section><h2><code>${method.toUpperCase()} ${escape(path)}</code></h2><p>${escape(op.summary)}</p>
    ${op.parameters?.length ? `<table><caption>Query parameters</caption><thead><tr><th scope="col">name</th><th scope="col">required</th><th scope="col">description</th><th scope="col">schema</th></tr></thead><tbody>
    ${op.parameters.map((p) => `<tr><td><code>${escape(p.name)}</code></td><td>${p.required ? 'yes' : 'no'}</td><td>${escape(p.description)}</td><td><code>${escape(JSON.stringify(p.schema))}</code></td></tr>`).join('')}</tbody></table>` : ''}
    </section>`).join('')).join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cairn report API</title><style>body{font:15px/1.45 system-ui,sans-serif;max-width:70rem;margin:1rem auto;padding:0 1rem;color:#1b1f24}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #c9d1d9;padding:.25rem .5rem;text-align:left;vertical-align:top}
caption{text-align:left;font-weight:600}code{font-size:.9em}h2{font-size:1.05rem;margin-top:1.5rem}</style></head>
<body><h1>Cairn report API</h1><p>${escape((doc.info as Json).description)}</p>
<p>Machine-readable: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3.1). Sign in with <code>Authorization: Bearer …</code>. Dashboards: <a href="/dashboards/">/dashboards/</a>.</p>
<main>${sections}</main></body></html>`;
}
