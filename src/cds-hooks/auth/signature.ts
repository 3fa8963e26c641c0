import { verify, type KeyObject } from 'node:crypto';
import type { AllowedAlg } from './config.ts';

/**
 * Signature check of a compact JWS (RFC 7515 §5.2) with one OpenSSL call, synchronously.
 *
 * Why not jose's compactVerify: in Node it verifies through WebCrypto, whose job runs on libuv's
 * thread pool, so every CDS call paid two thread hand-offs and WebCrypto's promise machinery on
 * top of the one P-384 verification (~1.3 ms, the same either way): ~5% of a service call's CPU,
 * measured with bench/cds-hooks-ab.ts (node:crypto's own callback form still costs ~0.2 ms more
 * than this). Keys are still imported by jose (jwks.ts); what is done here is only what
 * compactVerify did once the header had been checked (token.ts): split, verify the signing input,
 * decode the payload. The price: verifications no longer overlap on the HTTP thread, which caps a
 * service near 1 / (verify + HTTP work) ≈ 400-500 calls/s here; on a machine with many evaluation
 * workers, verifying on the worker that evaluates the call would lift that.
 */

/** Signature bytes of an ES384 JWS: r and s, 48 bytes each (RFC 7518 §3.4). */
const ES384_SIGNATURE_BYTES = 96;

/**
 * verifyCompactJws returns the signed payload's bytes when `token`'s signature verifies with `key`
 * under `alg`, else undefined. The signature segment must be canonical base64url (no padding, no
 * trailing bits), so one signature has one spelling.
 */
export function verifyCompactJws(token: string, alg: AllowedAlg, key: KeyObject): Buffer | undefined {
  const firstDot = token.indexOf('.');
  const lastDot = token.lastIndexOf('.');
  if (firstDot < 0 || lastDot === firstDot) return undefined;
  const encodedSignature = token.slice(lastDot + 1);
  const signature = Buffer.from(encodedSignature, 'base64url');
  if (signature.length === 0 || signature.toString('base64url') !== encodedSignature) return undefined;
  if (alg === 'ES384' && signature.length !== ES384_SIGNATURE_BYTES) return undefined;
  const signingInput = Buffer.from(token.slice(0, lastDot), 'ascii');
  const valid = alg === 'ES384'
    ? verify('sha384', signingInput, { key, dsaEncoding: 'ieee-p1363' }, signature)
    : verify('sha384', signingInput, key, signature);
  return valid ? Buffer.from(token.slice(firstDot + 1, lastDot), 'base64url') : undefined;
}
