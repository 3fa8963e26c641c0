/**
 * The web page: plain HTML, CSS and an ES module from src/dashboards/web/, and Chart.js's UMD
 * build served from node_modules. Nothing is built at runtime; files are read once at start.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';

const WEB = join(dirname(fileURLToPath(import.meta.url)), 'web');

/** chartJsFile is the path of Chart.js's minified UMD build (its package exports do not list it). */
function chartJsFile(): string {
  const main = createRequire(import.meta.url).resolve('chart.js');
  return join(dirname(main), 'chart.umd.min.js');
}

const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** registerAssets serves the page at `/dashboards/` and its files. */
export async function registerAssets(app: FastifyInstance): Promise<void> {
  const files: [string, string, string][] = [
    ['/dashboards/', join(WEB, 'index.html'), 'text/html; charset=utf-8'],
    ['/dashboards/app.js', join(WEB, 'app.js'), 'text/javascript; charset=utf-8'],
    ['/dashboards/app.css', join(WEB, 'app.css'), 'text/css; charset=utf-8'],
    ['/dashboards/vendor/chart.umd.min.js', chartJsFile(), 'text/javascript; charset=utf-8'],
  ];
  for (const [url, file, type] of files) {
    const body = await readFile(file);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    app.get(url, async (request, reply) => {
      reply.header('ETag', etag).header('Cache-Control', 'no-cache').header('X-Content-Type-Options', 'nosniff');
      if (type.startsWith('text/html')) reply.header('Content-Security-Policy', CSP).header('Referrer-Policy', 'no-referrer');
      if (request.headers['if-none-match'] === etag) return reply.code(304).send();
      return reply.type(type).send(body);
    });
  }
  app.get('/dashboards', async (_request, reply) => reply.redirect('/dashboards/'));
}
