import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deterministicUuid, stableStringify } from '../../src/evaluate/ids.ts';

/** RFC 9562 §5.5 by the book: SHA-1 of namespace then name, version and variant bits set. */
function uuidV5(namespace: string, name: string): string {
  const digest = createHash('sha1').update(Buffer.from(namespace.replace(/-/g, ''), 'hex')).update(name, 'utf8').digest();
  digest[6] = ((digest[6] ?? 0) & 0x0f) | 0x50;
  digest[8] = ((digest[8] ?? 0) & 0x3f) | 0x80;
  const hex = digest.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

describe('deterministicUuid', () => {
  it('keeps the ids cards were issued with: fixed values', () => {
    // Card and suggestion ids are stored for feedback; they must never change across releases.
    expect(deterministicUuid('card', 'v1', 'rule', 'p1', 'order-sign', 'hi', '2026-01-01T00:00:00Z', 'ctx')).toBe('1bdd4cab-dbf8-562b-a56b-e89b38d6225a');
    expect(deterministicUuid('é', '')).toBe('959b4734-dbaa-5354-a5df-b0b318ffab46');
    expect(deterministicUuid()).toBe('f3971958-3add-5178-abbf-bf3b19a1013b');
  });

  it('is the RFC 9562 version-5 UUID of the parts joined by U+001F (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme' }), { maxLength: 5 }), (parts) => {
        const id = deterministicUuid(...parts);
        expect(id).toBe(uuidV5('6f1c2b5e-8a4d-4f0b-9e3c-7a2d5b8e1f40', parts.join('\u001f')));
        expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      }),
    );
  });
});

describe('stableStringify', () => {
  it('ignores key order and undefined members (property)', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string().filter((key) => key !== 'dropped' && key !== '__proto__'), fc.jsonValue()), (record) => {
        const reversed = Object.fromEntries(Object.entries(record).reverse());
        expect(stableStringify({ ...reversed, dropped: undefined })).toBe(stableStringify(record));
        expect(JSON.parse(stableStringify(record))).toEqual(JSON.parse(JSON.stringify(record)));
      }),
    );
  });
});
