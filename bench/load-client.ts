import { connect, type Socket } from 'node:net';

/**
 * The load generators' HTTP/1.1 client: POSTs over kept-alive TCP connections, each request
 * written as one corked write of its head and body, each answer read by its Content-Length.
 *
 * Why not node:http: the load generator shares the machine's two cores with the service it
 * measures, and node:http's client cost ~1 ms of CPU per 107 KB call (this ~0.4 ms); it also
 * wrote the head and the body separately, so the service read each call in more pieces.
 * Deliberately small: it speaks only to our own service, which always answers with a
 * Content-Length; anything else (chunked answers, a malformed head) is an error, never a guess.
 */

/** A call not answered in time: `name` is TimeoutError, as fetch's are. */
export class LoadTimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

export interface LoadResponse {
  readonly status: number;
  readonly body: Buffer;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})/;
const CONTENT_LENGTH = /\r\ncontent-length: *(\d+) *(?=\r\n|$)/i;
const CHUNKED = /\r\ntransfer-encoding: *[^\r]*chunked/i;
const CLOSE = /\r\nconnection: *close/i;

export class LoadClient {
  readonly #host: string;
  readonly #port: number;
  readonly #authority: string;
  readonly #idle: Socket[] = [];
  readonly #open = new Set<Socket>();

  constructor(baseUrl: string) {
    const url = new URL(baseUrl);
    if (url.protocol !== 'http:') throw new Error(`LoadClient speaks plain HTTP only, not ${url.protocol}`);
    this.#host = url.hostname;
    this.#port = Number(url.port || 80);
    this.#authority = url.host;
  }

  /**
   * post sends one call on an idle connection (or a new one) and resolves with its answer; rejects
   * on timeout or a broken connection. A body given in pieces is sent as their concatenation, uncopied.
   */
  post(path: string, headers: Readonly<Record<string, string>>, body: Buffer | readonly Buffer[], timeoutMs: number): Promise<LoadResponse> {
    const pieces = Buffer.isBuffer(body) ? [body] : body;
    const socket = this.#idle.pop() ?? this.#connect();
    return new Promise<LoadResponse>((resolve, reject) => {
      let received: Buffer = Buffer.alloc(0);
      const finish = (error: Error | undefined, response?: LoadResponse, reusable = false): void => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
        if (reusable) this.#idle.push(socket);
        else socket.destroy();
        if (error) reject(error);
        else resolve(response as LoadResponse);
      };
      const onData = (chunk: Buffer): void => {
        received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
        const headEnd = received.indexOf(HEAD_END);
        if (headEnd < 0) return;
        const head = received.subarray(0, headEnd).toString('latin1');
        const status = STATUS_LINE.exec(head)?.[1];
        const length = CONTENT_LENGTH.exec(head)?.[1];
        if (status === undefined || length === undefined || CHUNKED.test(head)) {
          finish(new Error(`unexpected answer head: ${JSON.stringify(head.slice(0, 200))}`));
          return;
        }
        const end = headEnd + HEAD_END.length + Number(length);
        if (received.length < end) return;
        if (received.length > end) {
          finish(new Error('more bytes than the answer announced'));
          return;
        }
        finish(undefined, { status: Number(status), body: received.subarray(headEnd + HEAD_END.length, end) }, !CLOSE.test(head));
      };
      const onError = (error: Error): void => finish(error);
      const onClose = (): void => finish(new Error('connection closed before the answer was complete'));
      const timer = setTimeout(() => finish(new LoadTimeoutError(`no answer within ${timeoutMs} ms`)), timeoutMs);
      socket.on('data', onData);
      socket.on('error', onError);
      socket.on('close', onClose);
      let head = `POST ${path} HTTP/1.1\r\nHost: ${this.#authority}\r\nContent-Length: ${pieces.reduce((length, piece) => length + piece.length, 0)}\r\n`;
      for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
      socket.cork();
      socket.write(`${head}\r\n`, 'latin1');
      for (const piece of pieces) socket.write(piece);
      socket.uncork();
    });
  }

  /** close ends every connection. */
  close(): void {
    for (const socket of this.#open) socket.destroy();
    this.#open.clear();
    this.#idle.length = 0;
  }

  #connect(): Socket {
    const socket = connect({ host: this.#host, port: this.#port, noDelay: true });
    this.#open.add(socket);
    socket.once('close', () => {
      this.#open.delete(socket);
      const at = this.#idle.indexOf(socket);
      if (at >= 0) this.#idle.splice(at, 1);
    });
    // An idle connection's error (the service went away) is answered by its close; no call waits on it.
    socket.on('error', () => undefined);
    return socket;
  }
}
