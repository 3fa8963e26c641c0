/**
 * What every bench shares: rounding for printed numbers, timing loops, CPU time, the machine's load
 * (numbers on a shared 2-core machine mean little without it), peak RSS, where the published
 * fixtures are, the "run me directly" check, reading arguments, and the closing lines every bench
 * prints (its target's verdict and one JSON line).
 */
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** round keeps `digits` decimals, for numbers printed and put in JSON lines. */
export function round(value: number, digits = 2): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** A timed loop: wall and process CPU time per run (CPU is steadier on a busy machine). */
export interface Timing {
  readonly msPerRun: number;
  readonly cpuMsPerRun: number;
  readonly runs: number;
}

/** timeIt runs `fn` until `minMs` has passed and at least `minRuns` times. */
export async function timeIt(fn: () => Promise<unknown>, minRuns: number, minMs: number): Promise<Timing> {
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  let runs = 0;
  while (runs < minRuns || performance.now() - start < minMs) {
    await fn();
    runs++;
  }
  const cpu = process.cpuUsage(cpuStart);
  return { msPerRun: (performance.now() - start) / runs, cpuMsPerRun: (cpu.user + cpu.system) / 1000 / runs, runs };
}

/** timeSync is the average wall time of `runs` calls of `fn`, in ms. */
export function timeSync(fn: () => unknown, runs: number): number {
  const start = performance.now();
  for (let i = 0; i < runs; i++) fn();
  return (performance.now() - start) / runs;
}

/** cpuSecondsSince is this process's CPU time (user + system, all threads) since `start` (a `process.cpuUsage()`), in seconds. */
export function cpuSecondsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}

/** loadAverage is the 1, 5 and 15 minute load averages, for reading timings taken on a shared machine. */
export function loadAverage(): readonly [number, number, number] {
  const [one = 0, five = 0, fifteen = 0] = loadavg();
  return [round(one), round(five), round(fifteen)];
}

/** peakRssMb is this process's peak resident set size so far (worker threads included), in MB. */
export function peakRssMb(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

/** The published third-party fixtures (`../shared/fixtures`), which benches over real content read. */
export const SHARED_FIXTURES = fileURLToPath(new URL('../../shared/fixtures/', import.meta.url));

/** sharedFixture returns the absolute path of a folder under ../shared/fixtures, or undefined when it is absent. */
export function sharedFixture(relative: string): string | undefined {
  const full = path.join(SHARED_FIXTURES, relative);
  return existsSync(full) ? full : undefined;
}

/** isMain tells whether the module at `moduleUrl` is the script node was started with. */
export function isMain(moduleUrl: string): boolean {
  return process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(moduleUrl);
}

/** flag reads `--name=value` or `--name value` from argv. */
export function flag(name: string, argv: readonly string[] = process.argv.slice(2)): string | undefined {
  const prefix = `--${name}=`;
  const inline = argv.find((arg) => arg.startsWith(prefix));
  if (inline !== undefined) return inline.slice(prefix.length);
  const at = argv.indexOf(`--${name}`);
  return at >= 0 ? argv[at + 1] : undefined;
}

/** numberFlag reads `--name=N` or `--name N` from argv as a number (undefined when absent, NaN when not a number). */
export function numberFlag(name: string, argv: readonly string[] = process.argv.slice(2)): number | undefined {
  const value = flag(name, argv);
  return value === undefined ? undefined : Number(value);
}

/** positionalNumber reads the first bare whole number in argv (a bench's size, e.g. patients), skipping the values of `--name value` flags. */
export function positionalNumber(argv: readonly string[] = process.argv.slice(2)): number | undefined {
  const isFlagValue = (i: number): boolean => argv[i - 1]?.startsWith('--') === true && !argv[i - 1]!.includes('=');
  const at = argv.findIndex((arg, i) => /^\d+$/.test(arg) && !isFlagValue(i));
  return at < 0 ? undefined : Number(argv[at]);
}

/**
 * printResult prints a bench's closing lines: `  target <target>: met | NOT met` when it has a
 * target and a verdict (null: the run was too small to judge), then the result as one JSON line,
 * always last, for scripts that collect bench numbers.
 */
export function printResult(log: (line: string) => void, result: unknown, target?: { readonly text: string; readonly met: boolean | null }): void {
  if (target !== undefined && target.met !== null) log(`  target ${target.text}: ${target.met ? 'met' : 'NOT met'}`);
  log(JSON.stringify(result));
}
