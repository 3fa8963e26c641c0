import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { sendProblem } from '../http/problem.ts';
import { copyListToFile, streamListColumns } from '../warehouse/report-export.ts';
import { countList, createReportStore, readPage, recordAccess, resolveRun, ruleTrendList, type ReportStore } from '../warehouse/reports.ts';
import { measureGapRows, measureReportRows } from '../warehouse/report-measures.ts';
import type { Warehouse } from '../warehouse/database.ts';
import { allowed, authenticate, credentialOf, SESSION_COOKIE, type DashboardAccess, type DashboardUser, type Permission } from './access.ts';
import { registerAssets } from './assets.ts';
import { arrowStream, EXPORT_CONTENT_TYPES, EXPORT_FORMATS, type ExportFormat } from './export.ts';
import { LIST_ROUTES, MEASURE_PARAMS, PAGE_QUERY, type BuiltList, type ListRoute } from './lists.ts';
import { buildMeasureTiles, deqmGapsBundle, measureStatus, warehouseMeasureSource, type MeasureInfo, type MeasureReportSource } from './measures.ts';
import { buildOpenApi, openApiPage } from './openapi.ts';
import { buildTiles, type TrendRow } from './overview.ts';

/** A rule as the dashboards name it. */
export interface RuleInfo {
  readonly id: string;
  readonly title: string;
}

export interface DashboardDeps {
  readonly warehouse: Warehouse;
  readonly access: DashboardAccess;
  /** Wall clock: audit times and default day ranges. */
  readonly now: () => Date;
  /** The rules of the knowledge serving now (titles for tiles); optional. */
  readonly rules?: () => readonly RuleInfo[];
  /** Where summary MeasureReports come from; default: the nightly run's batch_measure_report. */
  readonly measures?: MeasureReportSource;
  /** The measures of the knowledge serving now (titles for tiles); optional. */
  readonly measureInfo?: () => readonly MeasureInfo[];
  /** Mark the sign-in cookie `Secure` (behind https). */
  readonly secureCookie?: boolean;
}


declare module 'fastify' {
  interface FastifyRequest {
    dashboardUser?: DashboardUser;
  }
}

function parseQuery<T extends z.ZodType>(schema: T, request: FastifyRequest, reply: FastifyReply, input: unknown = request.query ?? {}): z.output<T> | undefined {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = issue.path.map(String).join('.') || 'query';
  void sendProblem(reply, { title: 'Invalid query', status: 400, code: 'INPUT_INVALID', detail: `${field}: ${issue.message}`, field });
  return undefined;
}

/** parseRoute validates a route's path parameters and query (and its cross-field check) into one object. */
function parseRoute(route: Pick<ListRoute, 'params' | 'check'>, schema: z.ZodObject, request: FastifyRequest, reply: FastifyReply): Record<string, unknown> | undefined {
  const params = route.params ? parseQuery(route.params, request, reply, request.params ?? {}) : {};
  if (!params) return undefined;
  const query = parseQuery(schema, request, reply);
  if (!query) return undefined;
  const problem = route.check?.(query);
  if (problem) {
    void sendProblem(reply, { title: 'Invalid query', status: 400, code: 'INPUT_INVALID', detail: `${problem.field}: ${problem.message}`, field: problem.field });
    return undefined;
  }
  return { ...query, ...params };
}

/**
 * dashboardRoutes registers the report API under `/api/` (JSON pages, exports, OpenAPI) and the
 * web page under `/dashboards/`. Every `/api/` route but the documentation and sign-in needs a
 * signed-in user; patient-level lists need a role allowed to see patients and are audited before
 * any row leaves.
 */
export async function dashboardRoutes(app: FastifyInstance, deps: DashboardDeps): Promise<void> {
  const store = await createReportStore(deps.warehouse);
  const measureSource = deps.measures ?? warehouseMeasureSource(store);
  const measureTitle = (id: string): string | undefined => deps.measureInfo?.().find((m) => m.id === id)?.title;
  const openApi = buildOpenApi(LIST_ROUTES);
  const publicPaths = new Set(['/api/openapi.json', '/api/docs', '/api/session']);

  await registerAssets(app);

  app.addHook('onRequest', async (request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    if (!path.startsWith('/api/') || publicPaths.has(path)) return;
    const result = await authenticate(deps.access, credentialOf(request.headers));
    if (!result.ok) {
      return sendProblem(reply.header('WWW-Authenticate', 'Bearer realm="cairn-dashboards"'), { title: 'Sign-in required', status: 401, detail: result.reason });
    }
    request.dashboardUser = result.user;
  });

  const permit = (request: FastifyRequest, reply: FastifyReply, permission: Permission): DashboardUser | undefined => {
    const user = request.dashboardUser!;
    if (allowed(deps.access, user.role, permission)) return user;
    void sendProblem(reply, { title: 'Forbidden', status: 403, detail: `role "${user.role}" may not read ${permission === 'patients' ? 'patient-level lists' : 'this resource'}` });
    return undefined;
  };

  app.get('/api/openapi.json', async () => openApi);
  app.get('/api/docs', async (_request, reply) => reply.type('text/html; charset=utf-8').header('Content-Security-Policy', "default-src 'self'; style-src 'self' 'unsafe-inline'").send(openApiPage(openApi)));

  app.post('/api/session', async (request, reply) => {
    const body = z.object({ token: z.string().min(1).max(10_000) }).safeParse(request.body);
    if (!body.success) return sendProblem(reply, { title: 'Malformed request', status: 400, code: 'INPUT_INVALID', detail: 'send {"token": "…"}', field: 'token' });
    const result = await authenticate(deps.access, body.data.token);
    if (!result.ok) return sendProblem(reply, { title: 'Sign-in failed', status: 401, detail: result.reason });
    const cookie = `${SESSION_COOKIE}=${encodeURIComponent(body.data.token)}; Path=/; HttpOnly; SameSite=Strict${deps.secureCookie ? '; Secure' : ''}`;
    return reply.header('Set-Cookie', cookie).send(userBody(deps.access, result.user));
  });
  app.delete('/api/session', async (_request, reply) =>
    reply.header('Set-Cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`).code(204).send());

  app.get('/api/me', async (request) => userBody(deps.access, request.dashboardUser!));

  app.get('/api/overview', async (request, reply) => {
    const query = parseQuery(z.object({ runs: z.coerce.number().int().min(1).max(366).default(12) }), request, reply);
    if (!query || !permit(request, reply, 'aggregate')) return reply;
    const titles = new Map((deps.rules?.() ?? []).map((r) => [r.id, r.title]));
    const { latest, trend } = await store.withConnection(async (c) => ({
      latest: await resolveRun(c, 'latest'),
      trend: await readPage(c, await ruleTrendList(c, query.runs), { limit: 10_000, offset: 0 }),
    }));
    return {
      run: latest,
      // Measure care gaps are rule results named `measure:<id>`: titled by their measure.
      tiles: buildTiles(trend.items as unknown as TrendRow[], (id) => titles.get(id) ?? (id.startsWith('measure:') ? measureTitle(id.slice('measure:'.length)) : undefined)),
      measures: await measureStatus(measureSource, query.runs, measureTitle),
    };
  });

  registerMeasureRoutes(app, { deps, store, permit, measureSource, measureTitle });
  for (const route of LIST_ROUTES) registerList(app, route, { deps, store, permit });
}

interface MeasureScope extends ListScope {
  readonly measureSource: MeasureReportSource;
  readonly measureTitle: (id: string) => string | undefined;
}

const RUNS = z.coerce.number().int().min(1).max(366).default(12).describe('how many recent runs');

/** registerMeasureRoutes adds the measure tiles, one measure with its latest summary, its reports per run, and the DEQM gaps Bundle. */
function registerMeasureRoutes(app: FastifyInstance, { deps, store, permit, measureSource, measureTitle }: MeasureScope): void {
  const notFound = (reply: FastifyReply, id: string): FastifyReply =>
    sendProblem(reply, { title: 'Not found', status: 404, code: 'INPUT_INVALID', detail: `no stored MeasureReport of measure "${id}" in the runs asked for`, field: 'id' });

  app.get('/api/measures', async (request, reply) => {
    const query = parseQuery(z.object({ runs: RUNS }), request, reply);
    if (!query || !permit(request, reply, 'aggregate')) return reply;
    const run = await store.withConnection((c) => resolveRun(c, 'latest'));
    return { run, ...(await measureStatus(measureSource, query.runs, measureTitle)) };
  });

  app.get('/api/measures/:id', async (request, reply) => {
    const parsed = parseRoute({ params: MEASURE_PARAMS }, z.object({ runs: RUNS }), request, reply);
    if (!parsed || !permit(request, reply, 'aggregate')) return reply;
    const id = parsed.id as string;
    const summaries = (await measureSource.summaries(parsed.runs as number)).filter((s) => s.measureId === id);
    if (summaries.length === 0) return notFound(reply, id);
    const reports = await store.withConnection((c) => measureReportRows(c, id, { type: 'summary', runs: 1 }));
    return {
      id,
      title: measureTitle(id) ?? id,
      tiles: buildMeasureTiles(summaries, measureTitle),
      ...(reports[0] ? { run: { runId: reports[0].runId, evaluatedAt: reports[0].evaluatedAt }, summary: reports[0].report } : {}),
    };
  });

  app.get('/api/measures/:id/reports', async (request, reply) => {
    const parsed = parseRoute({ params: MEASURE_PARAMS }, z.object({
      run: z.string().min(1).max(100).optional(), runs: RUNS, type: z.enum(['summary', 'subject-list']).default('summary'),
    }), request, reply);
    if (!parsed) return reply;
    const type = parsed.type as 'summary' | 'subject-list';
    const user = permit(request, reply, type === 'subject-list' ? 'patients' : 'aggregate');
    if (!user) return reply;
    const id = parsed.id as string;
    return store.withConnection(async (c) => {
      const runId = parsed.run === 'latest' ? (await resolveRun(c, 'latest'))?.runId : (parsed.run as string | undefined);
      const reports = await measureReportRows(c, id, { type, runs: runId ? 1 : (parsed.runs as number), ...(runId ? { runId } : {}) });
      if (reports.length === 0) return notFound(reply, id);
      if (type === 'subject-list') {
        // A subject-list report names patients in its contained Lists: audited like every patient-level list.
        const patients = new Set(reports.flatMap((r) => subjectsOf(r.report)));
        await recordAccess(c, { at: deps.now().toISOString(), user: user.name, role: user.role, action: 'list', resource: `measures/${id}/reports`, query: parsed, rows: reports.length, patients: patients.size, remote: request.ip });
      }
      return { id, type, reports: reports.map((r) => ({ run: { runId: r.runId, evaluatedAt: r.evaluatedAt }, report: r.report })) };
    });
  });

  app.get('/api/care-gaps/deqm', async (request, reply) => {
    const schema = z.object({
      run: z.string().min(1).max(100).default('latest'),
      patient: z.string().min(1).max(200).optional().describe('patient id'),
      measure: z.string().min(1).max(200).optional().describe('measure id'),
    }).extend(PAGE_QUERY.shape);
    const parsed = parseRoute({ check: (q) => (q.patient === undefined && q.measure === undefined ? { field: 'patient', message: 'give `patient`, `measure` or both' } : undefined) }, schema, request, reply);
    if (!parsed) return reply;
    const user = permit(request, reply, 'patients');
    if (!user) return reply;
    const { limit, offset } = parsed as { limit: number; offset: number };
    return store.withConnection(async (c) => {
      const run = await resolveRun(c, parsed.run as string);
      const { total, rows } = await measureGapRows(c, run, { patientId: parsed.patient as string | undefined, measureId: parsed.measure as string | undefined }, { limit, offset });
      await recordAccess(c, { at: deps.now().toISOString(), user: user.name, role: user.role, action: 'list', resource: 'care-gaps/deqm', query: parsed, rows: rows.length, patients: new Set(rows.map((r) => r.patientId)).size, remote: request.ip });
      const base = `${request.protocol}://${request.host}`;
      const link = (o: number): string => `${base}/api/care-gaps/deqm?${new URLSearchParams(Object.entries({ ...parsed, limit, offset: o }).filter(([, v]) => v !== undefined).map(([k, v]): [string, string] => [k, String(v)])).toString()}`;
      const links = [{ relation: 'self', url: link(offset) }, ...(offset + limit < total ? [{ relation: 'next', url: link(offset + limit) }] : []), ...(offset > 0 ? [{ relation: 'previous', url: link(Math.max(0, offset - limit)) }] : [])];
      reply.header('X-Total-Count', String(total)).type('application/fhir+json; charset=utf-8');
      return deqmGapsBundle(rows, { base: `${base}/fhir`, timestamp: deps.now().toISOString(), runId: run?.runId ?? 'none', links });
    });
  });
}

/** subjectsOf lists the patient references in a subject-list report's contained Lists. */
function subjectsOf(report: unknown): string[] {
  const contained = (report as { contained?: { resourceType?: string; entry?: { item?: { reference?: string } }[] }[] }).contained ?? [];
  return contained.filter((r) => r.resourceType === 'List').flatMap((r) => (r.entry ?? []).map((e) => e.item?.reference ?? '')).filter(Boolean);
}

function userBody(access: DashboardAccess, user: DashboardUser): Record<string, unknown> {
  return { name: user.name, role: user.role, via: user.via, patientLevel: allowed(access, user.role, 'patients'), audit: allowed(access, user.role, 'audit') };
}

interface ListScope {
  readonly deps: DashboardDeps;
  readonly store: ReportStore;
  readonly permit: (request: FastifyRequest, reply: FastifyReply, permission: Permission) => DashboardUser | undefined;
}

function registerList(app: FastifyInstance, route: ListRoute, { deps, store, permit }: ListScope): void {
  const path = `/api/${route.name}`;
  /** The concrete name of this request's list: path parameters filled in. */
  const nameOf = (query: Record<string, unknown>): string => route.name.replace(/:(\w+)/g, (_m, key: string) => String(query[key]));
  const pageSchema = route.query.extend(PAGE_QUERY.shape);
  const exportSchema = route.query.extend({ format: z.enum(EXPORT_FORMATS).describe('csv, parquet or arrow (IPC stream)') });

  const audit = async (request: FastifyRequest, user: DashboardUser, action: string, query: Record<string, unknown>, counts: { rows: number; patients: number }, c: Parameters<typeof recordAccess>[0]): Promise<void> => {
    if (route.permission !== 'patients') return;
    await recordAccess(c, { at: deps.now().toISOString(), user: user.name, role: user.role, action, resource: nameOf(query), query, rows: counts.rows, patients: counts.patients, remote: request.ip });
  };

  app.get(path, async (request, reply) => {
    const query = parseRoute(route, pageSchema, request, reply);
    if (!query) return reply;
    const user = permit(request, reply, route.permission);
    if (!user) return reply;
    const { limit, offset } = query as unknown as z.output<typeof PAGE_QUERY>;
    return store.withConnection(async (c) => {
      const built = await route.build(query, { c, now: deps.now() });
      const page = await readPage(c, built.list, { limit, offset });
      const patientColumn = built.list.patientColumn;
      if (patientColumn) {
        const patients = new Set(page.items.map((item) => item[patientColumn]));
        await audit(request, user, 'list', query, { rows: page.items.length, patients: patients.size }, c);
      }
      return pageBody(`/api/${nameOf(query)}`, request, built, page, limit, offset);
    });
  });

  app.get(`${path}/export`, async (request, reply) => {
    const query = parseRoute(route, exportSchema, request, reply);
    if (!query) return reply;
    const user = permit(request, reply, route.permission);
    if (!user) return reply;
    const format = query.format as ExportFormat;
    const built = await store.withConnection(async (c) => {
      const result = await route.build(query, { c, now: deps.now() });
      if (result.list.patientColumn) await audit(request, user, `export.${format}`, query, await countList(c, result.list), c);
      return result;
    });
    const base = `${nameOf(query).replaceAll('/', '-')}${built.run ? `-${built.run.runId}` : ''}`;
    reply.type(EXPORT_CONTENT_TYPES[format]).header('Content-Disposition', `attachment; filename="${base}.${format === 'arrow' ? 'arrows' : format}"`).header('Cache-Control', 'no-store');
    if (format === 'arrow') return reply.send(arrowStream(built.list.columns, streamListColumns(store, built.list)));
    // CSV and Parquet: DuckDB's writers stream the rows to a temp file, which is then streamed out and removed.
    const dir = await mkdtemp(join(tmpdir(), 'cairn-export-'));
    const file = join(dir, `export.${format}`);
    try {
      await copyListToFile(store, built.list, file, format);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    const stream = createReadStream(file);
    stream.once('close', () => void rm(dir, { recursive: true, force: true }));
    return reply.send(stream);
  });
}

function pageBody(path: string, request: FastifyRequest, built: BuiltList, page: Awaited<ReturnType<typeof readPage>>, limit: number, offset: number): Record<string, unknown> {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(request.query as Record<string, unknown>)) {
    if (key === 'limit' || key === 'offset' || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, String(v));
  }
  const link = (o: number): string => `${path}?${new URLSearchParams([...params, ['limit', String(limit)], ['offset', String(o)]]).toString()}`;
  const exportLink = (format: ExportFormat): string => `${path}/export?${new URLSearchParams([...params, ['format', format]]).toString()}`;
  return {
    ...(built.run !== undefined ? { run: built.run } : {}),
    ...(built.range ? { range: built.range } : {}),
    total: page.total,
    ...(page.patients !== undefined ? { patients: page.patients } : {}),
    limit,
    offset,
    columns: built.list.columns,
    items: page.items,
    links: {
      self: link(offset),
      ...(offset + limit < page.total ? { next: link(offset + limit) } : {}),
      ...(offset > 0 ? { prev: link(Math.max(0, offset - limit)) } : {}),
      export: Object.fromEntries(EXPORT_FORMATS.map((f) => [f, exportLink(f)])),
    },
  };
}
