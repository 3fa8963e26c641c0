import { hash } from 'node:crypto';

/** Cairn's namespace for name-based (version 5) UUIDs; fixed forever so ids stay stable across releases. */
const CAIRN_NAMESPACE = Buffer.from('6f1c2b5e8a4d4f0b9e3c7a2d5b8e1f40', 'hex');

/**
 * deterministicUuid derives an RFC 9562 version-5 UUID from its parts, so the same inputs always
 * give the same card, suggestion or gap id (evaluation has no randomness).
 */
export function deterministicUuid(...parts: readonly string[]): string {
  // One-shot hash of the namespace then the name (a Hash object per id cost more than the hashing).
  const digest = hash('sha1', Buffer.concat([CAIRN_NAMESPACE, Buffer.from(parts.join('\u001f'), 'utf8')]), 'buffer');
  digest[6] = ((digest[6] ?? 0) & 0x0f) | 0x50;
  digest[8] = ((digest[8] ?? 0) & 0x3f) | 0x80;
  const hex = digest.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** stableStringify serialises JSON with sorted keys, for hashing inputs into ids. */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(',')}}`;
}
