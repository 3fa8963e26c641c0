import type { z } from 'zod';
import type { ErrorCode, Problem } from '../domain/errors.ts';

/** jsonPath renders a zod issue path as `$.a[0].b`, prefixed by where the parsed value sits in its file. */
export function jsonPath(path: readonly PropertyKey[], prefix = '$'): string {
  return path.reduce<string>((acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : `${acc}.${String(key)}`), prefix);
}

/** zodProblems turns every zod issue into a located problem. */
export function zodProblems(code: ErrorCode, file: string, error: z.ZodError, prefix = '$'): Problem[] {
  return error.issues.map((issue) => ({ code, file, path: jsonPath(issue.path, prefix), message: issue.message }));
}
