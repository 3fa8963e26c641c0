/**
 * The error catalogue: every error Cairn raises on purpose has a stable code, a message that says
 * what went wrong, where and why, and structured context. The README lists every code.
 */
export const ERROR_CODES = {
  CONFIG_INVALID: 'Configuration is invalid.',
  KNOWLEDGE_INVALID: 'The knowledge folders failed validation; nothing from them is used.',
  CQL_COMPILE: 'A CQL library did not compile.',
  CQL_INCLUDE: 'A CQL include does not resolve to a loaded library with that name and version.',
  VALUESET_MISSING: 'A library references a value set that is not loaded.',
  VALUESET_INVALID: 'A value-set file is not a usable FHIR R4 ValueSet.',
  RULE_INVALID: 'A rule document does not match the rule schema.',
  RULE_REFERENCE: 'A rule names a CQL library or define that does not exist.',
  MEASURE_INVALID: 'A measure is not a usable FHIR Measure, or names a library or define that does not exist.',
  INPUT_INVALID: 'Input data is not what the command or API expects.',
  EVALUATION_FAILED: 'Evaluating a rule or library failed for this patient.',
  WAREHOUSE_BUSY: 'The analytical database is opened for writing by another process.',
  WAREHOUSE_FAILED: 'The analytical database could not be read or written.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** A single located problem: where (file, JSON path or line/column) and why. */
export interface Problem {
  readonly code: ErrorCode;
  readonly message: string;
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
  /** JSON path inside `file`, e.g. `$.card.summary`. */
  readonly path?: string;
  readonly hint?: string;
}

/** formatProblem renders a problem as `file:line:column message` or `file $.path message`. */
export function formatProblem(problem: Problem): string {
  let where = problem.file ?? '';
  if (problem.line !== undefined) where += `:${problem.line}:${problem.column ?? 1}`;
  if (problem.path) where += ` ${problem.path}`;
  const hint = problem.hint ? ` (hint: ${problem.hint})` : '';
  // A path without a file: no leading space.
  where = where.trim();
  return `${where ? `${where} ` : ''}[${problem.code}] ${problem.message}${hint}`;
}

/** CairnError is the one error type raised on purpose; `problems` lists every located cause. */
export class CairnError extends Error {
  readonly code: ErrorCode;
  readonly problems: readonly Problem[];
  readonly context: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: { problems?: readonly Problem[]; context?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CairnError';
    this.code = code;
    this.problems = options.problems ?? [];
    this.context = Object.freeze({ ...(options.context ?? {}) });
  }
}
