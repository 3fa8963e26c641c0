import type { ErrorCode, Problem } from '../domain/errors.ts';

export type JsonParse = { ok: true; value: unknown } | { ok: false; problem: Problem };

/** parseJson parses JSON text and, on a syntax error, reports the file, line and column. */
export function parseJson(code: ErrorCode, file: string, text: string): JsonParse {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const position = /position (\d+)/.exec(message)?.[1];
    const where = position === undefined ? {} : lineColumn(text, Number(position));
    return { ok: false, problem: { code, file, ...where, message: `not valid JSON: ${message.replace(/ in JSON at position \d+.*$/, '')}` } };
  }
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return { line, column: offset - before.lastIndexOf('\n') };
}
