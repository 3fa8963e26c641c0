/**
 * Who may read the dashboards and report API. A request carries a credential as
 * `Authorization: Bearer …` or in the `cairn_dashboards` cookie (set by `POST /api/session`):
 * either a static API key of a configured user (only its SHA-256 is in configuration) or a JWT from
 * a trusted OIDC issuer whose role claim maps to a Cairn role.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import { CairnError, type Problem } from '../domain/errors.ts';

export const ROLES = ['quality', 'informaticist', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** What each kind of data needs; patient-level lists default to quality managers and admins. */
export type Permission = 'aggregate' | 'patients' | 'audit';

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be the lowercase hex SHA-256 of the API key');

/** DashboardAccessSchema is the `dashboards.access` configuration section. */
export const DashboardAccessSchema = z.strictObject({
  $comment: z.string().optional(),
  /** Named users with a static API key; store `sha256(key)` only (e.g. `printf %s KEY | sha256sum`). */
  users: z.array(z.strictObject({
    name: z.string().min(1),
    role: z.enum(ROLES),
    tokenSha256: Sha256Hex,
  })).default([]),
  /** A trusted OIDC/JWT issuer (e.g. tokens forwarded by an authenticating proxy). */
  oidc: z.strictObject({
    issuer: z.string().min(1),
    /** Expected `aud`. */
    audience: z.string().min(1),
    /** Inline public keys, or the issuer's JWKS URL (https). */
    jwks: z.strictObject({ keys: z.array(z.looseObject({ kty: z.string() })).min(1) }).optional(),
    jwksUrl: z.url().optional(),
    /** Dotted path of the claim holding role names (string or array), e.g. `realm_access.roles`. */
    roleClaim: z.string().min(1).default('roles'),
    /** Maps issuer role names to Cairn roles; default: the Cairn role names themselves. */
    roleMap: z.record(z.string(), z.enum(ROLES)).optional(),
    /** Claim naming the user in the audit log. */
    userClaim: z.string().min(1).default('sub'),
    algorithms: z.array(z.string().min(1)).default(['RS256', 'ES256', 'RS384', 'ES384', 'PS256']),
  }).refine((o) => (o.jwks === undefined) !== (o.jwksUrl === undefined), { message: 'give exactly one of "jwks" (inline) or "jwksUrl"' }).optional(),
  /** Roles that may see patient-level lists (care gaps, alerts, error lists, their exports). */
  patientLevelRoles: z.array(z.enum(ROLES)).min(1).default(['quality', 'admin']),
});

export type DashboardAccessConfig = z.input<typeof DashboardAccessSchema>;

export interface DashboardAccess {
  readonly users: readonly { readonly name: string; readonly role: Role; readonly hash: Buffer }[];
  readonly oidc?: {
    readonly issuer: string;
    readonly audience: string;
    readonly keys: JWTVerifyGetKey;
    readonly roleClaim: string;
    readonly roleMap: Readonly<Record<string, Role>>;
    readonly userClaim: string;
    readonly algorithms: readonly string[];
  };
  readonly patientLevelRoles: readonly Role[];
  /** off: no sign-in (local trials with CAIRN_AUTH=off); everyone is `anonymous` with role admin. */
  readonly off: boolean;
}

/** What `cairn serve` logs at start while dashboard sign-in is off. */
export const ACCESS_OFF_WARNING = 'Dashboard sign-in is OFF (CAIRN_AUTH=off): any caller is admin of the dashboards, the report API and the admin API. Use only for local trials.';

/** parseDashboardAccess validates the configuration, or throws CONFIG_INVALID listing every problem. */
export function parseDashboardAccess(raw: unknown, options: { off?: boolean; file?: string } = {}): DashboardAccess {
  const parsed = DashboardAccessSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const problems: Problem[] = parsed.error.issues.map((issue) => ({
      code: 'CONFIG_INVALID', message: issue.message, path: ['$', 'dashboards', 'access', ...issue.path.map(String)].join('.'), ...(options.file ? { file: options.file } : {}),
    }));
    throw new CairnError('CONFIG_INVALID', `dashboard access configuration is invalid (${problems.length} problem(s))`, { problems });
  }
  const config = parsed.data;
  const oidc = config.oidc;
  return Object.freeze({
    users: Object.freeze(config.users.map((u) => Object.freeze({ name: u.name, role: u.role, hash: Buffer.from(u.tokenSha256, 'hex') }))),
    ...(oidc ? {
      oidc: Object.freeze({
        issuer: oidc.issuer,
        audience: oidc.audience,
        keys: oidc.jwks ? createLocalJWKSet(oidc.jwks as Parameters<typeof createLocalJWKSet>[0]) : createRemoteJWKSet(new URL(oidc.jwksUrl!)),
        roleClaim: oidc.roleClaim,
        roleMap: Object.freeze(oidc.roleMap ?? Object.fromEntries(ROLES.map((r) => [r, r]))),
        userClaim: oidc.userClaim,
        algorithms: Object.freeze([...oidc.algorithms]),
      }),
    } : {}),
    patientLevelRoles: Object.freeze([...config.patientLevelRoles]),
    off: options.off ?? false,
  });
}

/**
 * readDashboardAccess reads the access configuration from `file` (JSON, the shape of
 * {@link DashboardAccessSchema}); a missing file means no users, so every API call answers 401.
 */
export async function readDashboardAccess(file: string, options: { off?: boolean } = {}): Promise<DashboardAccess> {
  let raw: unknown = {};
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new CairnError('CONFIG_INVALID', `cannot read ${file}: ${(error as Error).message}`, { problems: [{ code: 'CONFIG_INVALID', file, message: (error as Error).message }] });
    }
  }
  return parseDashboardAccess(raw, { ...options, file });
}

/** hashApiKey is what configuration stores for an API key: lowercase hex SHA-256. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export interface DashboardUser {
  readonly name: string;
  readonly role: Role;
  /** How the user was recognised: `api-key`, `oidc` or `off`. */
  readonly via: 'api-key' | 'oidc' | 'off';
}

export type Authentication = { readonly ok: true; readonly user: DashboardUser } | { readonly ok: false; readonly reason: string };

function claimAt(payload: JWTPayload, path: string): unknown {
  let value: unknown = payload;
  for (const part of path.split('.')) value = value && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
  return value;
}

/** Highest privilege first, so a user holding several roles gets the broadest. */
const ROLE_ORDER: readonly Role[] = ['admin', 'quality', 'informaticist'];

/** authenticate recognises a credential (API key or JWT); never throws. */
export async function authenticate(access: DashboardAccess, credential: string | undefined): Promise<Authentication> {
  if (access.off) return { ok: true, user: { name: 'anonymous', role: 'admin', via: 'off' } };
  if (!credential) return { ok: false, reason: 'sign in: send an API key or token as "Authorization: Bearer …"' };
  const hash = createHash('sha256').update(credential, 'utf8').digest();
  for (const user of access.users) {
    if (timingSafeEqual(hash, user.hash)) return { ok: true, user: { name: user.name, role: user.role, via: 'api-key' } };
  }
  const oidc = access.oidc;
  if (!oidc || credential.split('.').length !== 3) return { ok: false, reason: 'unknown API key' };
  try {
    const { payload } = await jwtVerify(credential, oidc.keys, { issuer: oidc.issuer, audience: oidc.audience, algorithms: [...oidc.algorithms], clockTolerance: 60 });
    const claim = claimAt(payload, oidc.roleClaim);
    const names = Array.isArray(claim) ? claim.map(String) : typeof claim === 'string' ? claim.split(/[\s,]+/) : [];
    const roles = new Set(names.map((n) => oidc.roleMap[n]).filter((r): r is Role => r !== undefined));
    const role = ROLE_ORDER.find((r) => roles.has(r));
    if (!role) return { ok: false, reason: `the token grants no Cairn role (claim "${oidc.roleClaim}")` };
    const name = claimAt(payload, oidc.userClaim);
    return { ok: true, user: { name: typeof name === 'string' && name ? name : String(payload.sub ?? 'unknown'), role, via: 'oidc' } };
  } catch (error) {
    return { ok: false, reason: `token rejected: ${(error as Error).message}` };
  }
}

/** allowed tells whether `role` holds `permission`. */
export function allowed(access: DashboardAccess, role: Role, permission: Permission): boolean {
  if (permission === 'aggregate') return true;
  if (permission === 'audit') return role === 'admin';
  return access.patientLevelRoles.includes(role);
}

/** The cookie the dashboards' sign-in sets, so export links work in a browser. */
export const SESSION_COOKIE = 'cairn_dashboards';

/** credentialOf reads a user's credential: `Authorization: Bearer ...`, else the session cookie. */
export function credentialOf(headers: { readonly authorization?: string; readonly cookie?: string }): string | undefined {
  const header = headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice(7).trim() || undefined;
  for (const part of (headers.cookie ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === SESSION_COOKIE) return decodeURIComponent(value.join('=')) || undefined;
  }
  return undefined;
}
