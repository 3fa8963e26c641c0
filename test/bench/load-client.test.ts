import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadClient, LoadTimeoutError } from '../../bench/load-client.ts';

/** A real HTTP server on loopback: echoes the request (method, path, headers, body length) unless the path asks for something else. */
let server: Server;
let baseUrl: string;
const connections = new Set<unknown>();

beforeAll(async () => {
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      if (request.url === '/chunked') {
        response.writeHead(200, { 'content-type': 'text/plain' });
        response.write('a');
        response.end('b');
        return;
      }
      if (request.url === '/slow') return; // never answers
      if (request.url === '/close') response.setHeader('connection', 'close');
      const answer = Buffer.from(JSON.stringify({ method: request.method, url: request.url, type: request.headers['content-type'], auth: request.headers.authorization, bytes: body.length, text: body.toString('utf8') }));
      response.writeHead(201, { 'content-type': 'application/json', 'content-length': answer.length }).end(answer);
    });
  });
  server.on('connection', (socket) => connections.add(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('LoadClient', () => {
  it('POSTs the head and body and reads the answer by its Content-Length, over one kept-alive connection', async () => {
    const client = new LoadClient(baseUrl);
    const body = Buffer.from(JSON.stringify({ big: 'x'.repeat(200_000), accent: 'é' }));
    const before = connections.size;
    for (let i = 0; i < 3; i++) {
      const response = await client.post('/cds-services/x', { 'Content-Type': 'application/json', Authorization: 'Bearer t' }, body, 5000);
      expect(response.status).toBe(201);
      const echoed = JSON.parse(response.body.toString('utf8')) as Record<string, unknown>;
      expect(echoed).toMatchObject({ method: 'POST', url: '/cds-services/x', type: 'application/json', auth: 'Bearer t', bytes: body.length });
      expect(echoed.text).toBe(body.toString('utf8'));
    }
    expect(connections.size - before).toBe(1);
    client.close();
  });

  it('sends a body given in pieces as their concatenation', async () => {
    const client = new LoadClient(baseUrl);
    const body = Buffer.from(JSON.stringify({ big: 'y'.repeat(100_000), accent: 'é' }));
    const pieces = [body.subarray(0, 7), body.subarray(7, 50_001), Buffer.alloc(0), body.subarray(50_001)];
    const response = await client.post('/cds-services/x', { 'Content-Type': 'application/json' }, pieces, 5000);
    const echoed = JSON.parse(response.body.toString('utf8')) as Record<string, unknown>;
    expect(echoed).toMatchObject({ bytes: body.length, text: body.toString('utf8') });
    client.close();
  });

  it('opens a connection per call in flight', async () => {
    const client = new LoadClient(baseUrl);
    const before = connections.size;
    const answers = await Promise.all(Array.from({ length: 4 }, () => client.post('/', {}, Buffer.from('{}'), 5000)));
    expect(answers.map((a) => a.status)).toEqual([201, 201, 201, 201]);
    expect(connections.size - before).toBe(4);
    client.close();
  });

  it('refuses an answer it cannot frame (chunked) rather than guess, and times out with a TimeoutError', async () => {
    const client = new LoadClient(baseUrl);
    await expect(client.post('/chunked', {}, Buffer.from('{}'), 5000)).rejects.toThrow(/unexpected answer head/);
    const slow = client.post('/slow', {}, Buffer.from('{}'), 100);
    await expect(slow).rejects.toBeInstanceOf(LoadTimeoutError);
    await expect(slow).rejects.toMatchObject({ name: 'TimeoutError' });
    client.close();
  });

  it('does not reuse a connection the server closes', async () => {
    const client = new LoadClient(baseUrl);
    expect((await client.post('/close', {}, Buffer.from('{}'), 5000)).status).toBe(201);
    expect((await client.post('/', {}, Buffer.from('{}'), 5000)).status).toBe(201);
    client.close();
  });
});
