import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { callPayloads, orderSignRequest, postCall, SERVER_FLAG, type ServerReady, type ThreadCpu } from './cds-hooks-load.ts';
import { SERVING_NODE_FLAGS } from '../src/http/heap.ts';
import { LoadClient } from './load-client.ts';
import { flag, isMain, numberFlag, printResult, round } from './support.ts';

/**
 * Paired A/B of the CDS Hooks service: the service of a base revision (A, checked out in a temporary
 * git worktree) and of this checkout (B) run side by side under one interleaved closed-loop load of
 * signed `order-sign` calls, so the host's speed swings (±30-50% minute to minute on the 2-vCPU VM)
 * hit both alike. Prints each one's service CPU per call and the ratio B/A per round: steady to
 * about ±3% (HEAD against itself: 0.97-1.01), where two separate runs differ by tens of percent.
 *
 * `node --import tsx bench/cds-hooks-ab.ts --base=<rev> [--calls=1000] [--rounds=3] [--in-flight=4]`
 * Linux only (CPU from /proc). The base must have the load bench's service mode (session 4 on).
 */

const SERVICE_PATH = '/cds-services/medication-safety-order-sign';
/**
 * Calls per side before the first round: V8 keeps optimising for the first ~2,500 calls a thread
 * evaluates (see cds-hooks-load.ts), and a comparison should be of the two services' steady states.
 */
const WARMUP_PER_SIDE = 4000;
const ROOT = fileURLToPath(new URL('../', import.meta.url));

export interface CdsHooksAbResult {
  readonly bench: 'cds-hooks-ab';
  readonly base: string;
  readonly callsPerSide: number;
  readonly rounds: readonly { readonly reqPerSecondBoth: number; readonly cpuMsPerCall: { readonly a: number; readonly b: number }; readonly ratio: number }[];
  /** The median of the rounds' B/A CPU ratios: below 1, this checkout is cheaper per call. */
  readonly medianRatio: number;
}

interface Side {
  readonly process: ChildProcess;
  readonly ready: ServerReady;
  readonly cpu: () => Promise<ThreadCpu>;
  next: number;
}

async function startSide(root: string, tokens: number): Promise<Side> {
  const child = fork(path.join(root, 'bench/cds-hooks-load.ts'), [SERVER_FLAG, String(tokens), '2'], { cwd: root, execArgv: [...SERVING_NODE_FLAGS, '--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ask = <T>(message?: string): Promise<T> =>
    new Promise((resolve, reject) => {
      child.once('message', (value) => resolve(value as T));
      child.once('exit', (code) => reject(new Error(`the service of ${root} exited (${code})`)));
      if (message) child.send(message);
    });
  const ready = await ask<ServerReady>();
  return {
    process: child,
    ready,
    next: 0,
    cpu: async () => {
      const { cpu } = await ask<{ cpu: ThreadCpu | null }>('cpu');
      if (cpu === null) throw new Error('per-thread CPU is read from /proc: Linux only');
      return cpu;
    },
  };
}

/** runCdsHooksAbBench compares `base` (a git revision) with this checkout; see the module comment. */
export async function runCdsHooksAbBench(options: { readonly base: string; readonly calls?: number; readonly rounds?: number; readonly inFlight?: number; readonly log?: (line: string) => void }): Promise<CdsHooksAbResult> {
  const log = options.log ?? console.log;
  const calls = options.calls ?? 1000;
  const roundCount = options.rounds ?? 3;
  const inFlight = options.inFlight ?? 4;
  const worktree = path.join(mkdtempSync(path.join(tmpdir(), 'cairn-ab-')), 'base');
  execFileSync('git', ['worktree', 'add', '--detach', worktree, options.base], { cwd: ROOT, stdio: 'ignore' });
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(worktree, 'node_modules'));
  const sides: Side[] = [];
  const clients = new Map<Side, LoadClient>();
  try {
    const tokens = WARMUP_PER_SIDE + calls * roundCount;
    sides.push(await startSide(worktree, tokens), await startSide(ROOT, tokens));
    const [a, b] = sides as [Side, Side];
    const discovery = await fetch(`${b.ready.baseUrl}/cds-services`, { headers: { authorization: `Bearer ${b.ready.discoveryToken}` } });
    const templates = ((await discovery.json()) as { services: { id: string; prefetch?: Record<string, string> }[] }).services.find((s) => SERVICE_PATH.endsWith(s.id))?.prefetch ?? {};
    const payloadOf = callPayloads(orderSignRequest(templates, new Date().toISOString()).body);
    for (const side of sides) clients.set(side, new LoadClient(side.ready.baseUrl));
    const send = async (side: Side): Promise<void> => {
      const n = side.next++;
      const { status } = await postCall(clients.get(side) as LoadClient, SERVICE_PATH, side.ready.tokens[n] ?? '', payloadOf(n));
      if (status !== 200) throw new Error(`${side === a ? 'A' : 'B'} answered ${status}`);
    };
    // Each lane alternates A and B, lanes start on different sides: both always carry half the load.
    const load = (perSide: number): Promise<void[]> =>
      Promise.all(Array.from({ length: inFlight }, async (_, lane) => {
        for (let i = 0; i < (2 * perSide) / inFlight; i++) await send((i + lane) % 2 === 0 ? a : b);
      }));

    await load(WARMUP_PER_SIDE);
    const rounds: CdsHooksAbResult['rounds'][number][] = [];
    for (let r = 0; r < roundCount; r++) {
      const before = await Promise.all([a.cpu(), b.cpu()]);
      const started = performance.now();
      await load(calls);
      const seconds = (performance.now() - started) / 1000;
      const after = await Promise.all([a.cpu(), b.cpu()]);
      const perCall = (i: 0 | 1): number => ((after[i].main + after[i].other) - (before[i].main + before[i].other)) / calls;
      const round_ = { reqPerSecondBoth: round((2 * calls) / seconds, 1), cpuMsPerCall: { a: round(perCall(0)), b: round(perCall(1)) }, ratio: round(perCall(1) / perCall(0), 3) };
      rounds.push(round_);
      log(`  round ${r + 1}: ${round_.reqPerSecondBoth} req/s both; service CPU ms per call A ${round_.cpuMsPerCall.a}, B ${round_.cpuMsPerCall.b}; B/A ${round_.ratio}`);
    }
    const ratios = rounds.map((x) => x.ratio).sort((x, y) => x - y);
    const result: CdsHooksAbResult = { bench: 'cds-hooks-ab', base: options.base, callsPerSide: calls, rounds, medianRatio: ratios[Math.floor(ratios.length / 2)] ?? NaN };
    log(`cds-hooks-ab: A = ${options.base}, B = this checkout; ${calls} calls per side per round, ${inFlight} in flight; median B/A CPU per call ${result.medianRatio}`);
    printResult(log, result);
    return result;
  } finally {
    for (const side of sides) side.process.kill('SIGKILL');
    for (const client of clients.values()) client.close();
    execFileSync('git', ['worktree', 'remove', '--force', worktree], { cwd: ROOT, stdio: 'ignore' });
  }
}

if (isMain(import.meta.url)) {
  const base = flag('base');
  if (base === undefined) {
    console.error('usage: node --import tsx bench/cds-hooks-ab.ts --base=<git revision> [--calls=1000] [--rounds=3] [--in-flight=4]');
    process.exitCode = 2;
  } else {
    const calls = numberFlag('calls');
    const rounds = numberFlag('rounds');
    const inFlight = numberFlag('in-flight');
    await runCdsHooksAbBench({ base, ...(calls ? { calls } : {}), ...(rounds ? { rounds } : {}), ...(inFlight ? { inFlight } : {}) });
  }
}
