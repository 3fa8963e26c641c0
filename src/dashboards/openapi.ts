/**
 * The OpenAPI 3.1 document of the report API, generated from the same zod schemas that validate
 * the queries (so it cannot drift), plus a plain HTML rendering of it at `/api/docs`.
 */
import { z } from 'zod';
import type { ListColumn } from '../warehouse/reports.ts';
import { MEASURE_PARAMS, PAGE_QUERY, type ListRoute } from './lists.ts';

type Json = Record<string, unknown>;

function parameters(schema: z.ZodObject, where: 'query' | 'path' = 'query'): Json[] {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, Json>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, property]) => {
    const { description, ...rest } = property;
    return { name, in: where, required: where === 'path' || (json.required?.includes(name) ?? false), ...(description ? { description } : {}), schema: rest, ...(where === 'query' ? { explode: true } : {}) };
  });
}

/** openApiPath turns a fastify path (`:id`) into an OpenAPI one (`{id}`). */
const openApiPath = (path: string): string => path.replace(/:(\w+)/g, '{$1}');
const idParameter = parameters(MEASURE_PARAMS, 'path');
const runsParameter = { name: 'runs', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 366, default: 12 }, description: 'how many recent runs' };

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
    '/api/measures': { get: { summary: 'One tile per measure (group): latest rate, numerator and denominator, change against the previous run with `better`/`worse`/`same` by the measure\'s improvement notation (`decrease`: lower is better), trend over runs. `available: false` before any run stored MeasureReports.', parameters: [runsParameter], responses: { 200: { description: 'measure tiles' }, ...errors } } },
    '/api/measures/{id}': { get: { summary: 'One measure: its tile(s) and the summary MeasureReport of the latest run that evaluated it. 404 when no run stored it.', parameters: [...idParameter, runsParameter], responses: { 200: { description: 'measure and FHIR summary MeasureReport' }, 404: problem, ...errors } } },
    '/api/measures/{id}/reports': {
      get: {
        summary: 'A measure\'s stored population MeasureReports per run, newest first: `summary` (aggregate) or `subject-list` (patients in contained Lists; patient-level and audited).',
        parameters: [...idParameter, { name: 'run', in: 'query', schema: { type: 'string' }, description: 'one run id, or `latest`; default: the last `runs` published runs' }, runsParameter,
          { name: 'type', in: 'query', schema: { type: 'string', enum: ['summary', 'subject-list'], default: 'summary' } }],
        responses: { 200: { description: '{id, type, reports: [{run, report}]}' }, 404: problem, ...errors },
      },
    },
    '/api/care-gaps/deqm': {
      get: {
        summary: 'Measure care gaps as a DEQM-style gaps-in-care Bundle (type collection, no Composition): the DetectedIssues of a page of gaps, the individual MeasureReports they cite and their Patients. Give `patient`, `measure` or both. Patient-level; audited. `X-Total-Count` carries the number of gaps; `link` next/previous pages.',
        parameters: [
          { name: 'patient', in: 'query', schema: { type: 'string' } }, { name: 'measure', in: 'query', schema: { type: 'string' }, description: 'measure id' },
          { name: 'run', in: 'query', schema: { type: 'string', default: 'latest' } }, ...parameters(PAGE_QUERY),
        ],
        responses: { 200: { description: 'FHIR R4 Bundle', content: { 'application/fhir+json': {} } }, ...errors },
      },
    },
  };
  for (const route of lists) {
    const item = { type: 'object', properties: Object.fromEntries(route.columns.map((c) => [c.name, COLUMN_SCHEMA[c.kind]])) };
    const patientNote = route.permission === 'patients' ? ' Patient-level: roles allowed to see patients only; every access is audited.' : route.permission === 'audit' ? ' Admin only.' : '';
    const pathParameters = route.params ? parameters(route.params, 'path') : [];
    paths[openApiPath(`/api/${route.name}`)] = {
      get: {
        summary: route.summary + patientNote,
        parameters: [...pathParameters, ...parameters(route.query.extend(PAGE_QUERY.shape))],
        responses: {
          200: { description: 'one page in a stable order', content: { 'application/json': { schema: { type: 'object', properties: { total: { type: 'integer' }, limit: { type: 'integer' }, offset: { type: 'integer' }, items: { type: 'array', items: item }, links: { type: 'object' } } } } } },
          ...errors,
        },
      },
    };
    paths[openApiPath(`/api/${route.name}/export`)] = {
      get: {
        summary: `The whole list (no paging), streamed: CSV, Parquet or Arrow IPC stream.${patientNote}`,
        parameters: [...pathParameters, ...parameters(route.query.extend({ format: z.enum(['csv', 'parquet', 'arrow']).describe('export format') }))],
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
