/** The outcome of claiming a jti: first use, a replay, or no room left. */
export type ReplayClaim = 'ok' | 'replayed' | 'full';

/**
 * ReplayCache remembers each jti of one client until the token can no longer be accepted, so a token
 * is accepted at most once; each client has its own, so one that fills its cache refuses no other.
 * Keys are also filed by the whole second they expire in, and a second's keys are forgotten once it
 * has passed: a sweep costs what expired, not what is remembered (at 170 calls/s with 5-minute
 * tokens, sweeping all ~60,000 entries held the HTTP thread ~1.3 ms every second). A cache full of
 * live entries refuses new tokens (fail closed) rather than forgetting a live jti.
 */
export class ReplayCache {
  /** key -> the instant (seconds) it expires. */
  private readonly entries = new Map<string, number>();
  /** whole second -> keys claimed to expire within it (some since claimed again, for later). */
  private readonly expiring = new Map<number, string[]>();
  /** Every second up to this one has been swept. */
  private sweptThrough = Number.NEGATIVE_INFINITY;

  constructor(private readonly maxEntries: number) {}

  /** claim records `key` until `expiresAtSeconds` unless it is already live; nowSeconds comes from the injected clock. */
  claim(key: string, expiresAtSeconds: number, nowSeconds: number): ReplayClaim {
    this.sweep(nowSeconds);
    const existing = this.entries.get(key);
    if (existing !== undefined && existing > nowSeconds) return 'replayed';
    if (this.entries.size >= this.maxEntries) this.sweepAll(nowSeconds);
    if (this.entries.size >= this.maxEntries) return 'full';
    this.entries.set(key, expiresAtSeconds);
    const second = Math.floor(expiresAtSeconds);
    const keys = this.expiring.get(second);
    if (keys === undefined) this.expiring.set(second, [key]);
    else keys.push(key);
    return 'ok';
  }

  /** size is the number of remembered entries, expired ones included until their second is swept. */
  get size(): number {
    return this.entries.size;
  }

  /** sweep forgets the keys of every second that has wholly passed. */
  private sweep(nowSeconds: number): void {
    const through = Math.floor(nowSeconds) - 1;
    if (through <= this.sweptThrough) return;
    // Walk the passed seconds one by one, unless more of them passed than there are seconds filed.
    const span = through - this.sweptThrough;
    const seconds = span <= this.expiring.size ? Array.from({ length: span }, (_, i) => through - span + 1 + i) : [...this.expiring.keys()].filter((second) => second <= through);
    for (const second of seconds) {
      const keys = this.expiring.get(second);
      if (keys === undefined) continue;
      this.expiring.delete(second);
      for (const key of keys) {
        const expiresAt = this.entries.get(key);
        if (expiresAt !== undefined && expiresAt <= nowSeconds) this.entries.delete(key);
      }
    }
    this.sweptThrough = through;
  }

  /** sweepAll forgets every expired entry now (a full cache, before it refuses a token). */
  private sweepAll(nowSeconds: number): void {
    for (const [key, expiresAt] of this.entries) if (expiresAt <= nowSeconds) this.entries.delete(key);
  }
}
