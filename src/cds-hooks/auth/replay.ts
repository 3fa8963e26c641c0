/** The outcome of claiming a jti: first use, a replay, or no room left. */
export type ReplayClaim = 'ok' | 'replayed' | 'full';

/**
 * ReplayCache remembers each (iss, jti) until the token can no longer be accepted, so a token is
 * accepted at most once. Expired entries are swept at most once a second, or when the cache is full;
 * a cache full of live entries refuses new tokens (fail closed) rather than forgetting a live jti.
 */
export class ReplayCache {
  private readonly entries = new Map<string, number>();
  private lastSweepSeconds = Number.NEGATIVE_INFINITY;

  constructor(private readonly maxEntries: number) {}

  /** claim records `key` until `expiresAtSeconds` unless it is already live; nowSeconds comes from the injected clock. */
  claim(key: string, expiresAtSeconds: number, nowSeconds: number): ReplayClaim {
    const existing = this.entries.get(key);
    if (existing !== undefined && existing > nowSeconds) return 'replayed';
    if (nowSeconds - this.lastSweepSeconds >= 1 || this.entries.size >= this.maxEntries) this.sweep(nowSeconds);
    if (this.entries.size >= this.maxEntries) return 'full';
    this.entries.set(key, expiresAtSeconds);
    return 'ok';
  }

  /** size is the number of remembered entries, expired ones included until the next sweep. */
  get size(): number {
    return this.entries.size;
  }

  private sweep(nowSeconds: number): void {
    this.lastSweepSeconds = nowSeconds;
    for (const [key, expiresAt] of this.entries) if (expiresAt <= nowSeconds) this.entries.delete(key);
  }
}
