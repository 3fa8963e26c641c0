/**
 * Counts and renders conformance results: a per-file table, failure details, and the JSON
 * summary printed by `--json`.
 */
import type { TestResult } from './runner.ts';

/** Outcome is a test result with the skip-list reason, if the test is skipped. */
export interface Outcome {
  readonly result: TestResult;
  readonly skipReason: string | null;
}

export interface Counts {
  readonly file: string;
  readonly total: number;
  readonly passed: number;
  readonly failed: number;
  readonly errors: number;
  readonly skipped: number;
  /** skippedButPassing counts skipped tests that pass now (their skip entry is stale). */
  readonly skippedButPassing: number;
}

function count(file: string, outcomes: readonly Outcome[]): Counts {
  const live = outcomes.filter((o) => o.skipReason === null);
  const skipped = outcomes.filter((o) => o.skipReason !== null);
  return {
    file,
    total: outcomes.length,
    passed: live.filter((o) => o.result.status === 'passed').length,
    failed: live.filter((o) => o.result.status === 'failed').length,
    errors: live.filter((o) => o.result.status === 'error').length,
    skipped: skipped.length,
    skippedButPassing: skipped.filter((o) => o.result.status === 'passed').length,
  };
}

/** countByFile returns one row per suite file (in first-seen order) and a total row. */
export function countByFile(outcomes: readonly Outcome[], fileOf: (o: Outcome) => string): { rows: Counts[]; total: Counts } {
  const files = [...new Set(outcomes.map(fileOf))];
  const rows = files.map((file) => count(file, outcomes.filter((o) => fileOf(o) === file)));
  return { rows, total: count('Total', outcomes) };
}

/** renderTable lays the counts out as a fixed-width text table. */
export function renderTable(rows: readonly Counts[], total: Counts): string {
  const header = ['File', 'Tests', 'Passed', 'Failed', 'Errors', 'Skipped'];
  const cells = [...rows, total].map((r) => [r.file, r.total, r.passed, r.failed, r.errors, r.skipped].map(String));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (values: readonly string[]): string =>
    values.map((v, i) => (i === 0 ? v.padEnd(widths[i] ?? 0) : v.padStart(widths[i] ?? 0))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...cells.slice(0, -1).map(line), rule, line(cells[cells.length - 1] ?? [])].join('\n');
}

/** renderFailure prints one non-passing result with its expression, expected and actual outcome. */
export function renderFailure(outcome: Outcome): string {
  const { result } = outcome;
  const indent = (text: string): string => text.replace(/\n/g, '\n      ');
  return [
    `${result.status.toUpperCase()} ${result.test.id}${outcome.skipReason ? ' (skipped)' : ''}`,
    `  expression: ${indent(result.test.expression)}`,
    `  expected:   ${indent(result.expected)}`,
    `  actual:     ${indent(result.actual)}`,
    `  why:        ${indent(result.detail)}`,
  ].join('\n');
}

export interface JsonSummary {
  readonly executionDateTime: string;
  readonly durationMs: number;
  readonly total: Counts;
  readonly files: readonly Counts[];
  readonly unknownSkips: readonly string[];
  readonly skipListProblems: readonly string[];
  readonly skippedButPassing: readonly string[];
  readonly failures: readonly { id: string; status: string; detail: string; actual: string; expected: string }[];
  readonly ok: boolean;
}

/** failureRecords lists live (non-skipped) tests that did not pass, for the JSON summary. */
export function failureRecords(outcomes: readonly Outcome[]): JsonSummary['failures'] {
  return outcomes
    .filter((o) => o.skipReason === null && o.result.status !== 'passed')
    .map(({ result }) => ({ id: result.test.id, status: result.status, detail: result.detail, actual: result.actual, expected: result.expected }));
}
