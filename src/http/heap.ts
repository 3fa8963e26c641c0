import { setFlagsFromString } from 'node:v8';

/**
 * The heap growing factor V8 applies after a full collection: the next old-generation limit is
 * this many times the live size (V8's own choice: 1.1-4, from how fast the isolate allocates).
 */
export const SERVING_HEAP_GROWING_FACTOR = 2;

/**
 * tuneHeapForServing sets the heap growing factor for a long-running service, before its worker
 * threads start (each isolate reads it at every full collection).
 *
 * Why: the service's heaps hold the knowledge (the HTTP thread's 40-65 MB) and see a steady trickle
 * of per-request garbage, so V8 picks a low factor (~1.35) that leaves less slack than the young
 * generation's capacity; it then marks without pause (measured at 150 calls/s: a mark-compact of the
 * HTTP thread every ~0.4 s, 35-60 ms of marking and 8-25 ms pauses each). With the factor at 2 a
 * full collection comes every several seconds; paired A/B when added: ~17% less CPU per call and a
 * lower p99 (overlapping with the GC fixes made since).
 * Memory: each heap may grow to twice its live size between collections.
 */
export function tuneHeapForServing(): void {
  setFlagsFromString(`--heap-growing-percent=${Math.round((SERVING_HEAP_GROWING_FACTOR - 1) * 100)}`);
}

/**
 * Node flags `cairn serve` should start with (they cannot be set once the process runs): `npm start`
 * passes them; elsewhere `NODE_OPTIONS=--v8-pool-size=1`.
 *
 * Why one V8 background thread instead of Node's four: the service's own threads (HTTP and one
 * evaluation worker per core) already fill the cores, and V8's background jobs (concurrent marking,
 * sweeping, compilation) of three isolates on four more threads competed with them and evicted their
 * caches. Load bench at 200 signed calls/s on the 2-vCPU VM, four alternating pairs: p99 61, 22, 19,
 * 24 ms against 107, 87, 26, 47 with the default; CPU per call 3-5% lower in three pairs of four.
 */
export const SERVING_NODE_FLAGS: readonly string[] = ['--v8-pool-size=1'];

/** servingFlagsMissing lists the SERVING_NODE_FLAGS options neither on the command line nor in NODE_OPTIONS (by name: any value counts as set). */
export function servingFlagsMissing(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map((flag) => flag.split('=')[0]);
  return SERVING_NODE_FLAGS.filter((flag) => !given.includes(flag.split('=')[0]));
}
