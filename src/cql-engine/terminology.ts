import { Code, ValueSet, type TerminologyProvider } from 'cql-execution';

/** One expanded value set, as the knowledge loader hands it to the engine. */
export interface ValueSetExpansion {
  readonly url: string;
  readonly version: string | undefined;
  /** Bare OIDs this value set is also known by (from `urn:oid:` identifiers or an OID-shaped URL tail). */
  readonly oids: readonly string[];
  readonly codes: readonly { readonly system: string; readonly code: string; readonly version?: string; readonly display?: string }[];
}

const OID = /^[0-2](?:\.(?:0|[1-9]\d*))+$/;

/** oidOf returns the bare OID a value-set reference names, if it names one (`urn:oid:1.2.3`, `.../ValueSet/1.2.3`, `1.2.3`). */
export function oidOf(reference: string): string | undefined {
  const tail = reference.startsWith('urn:oid:') ? reference.slice('urn:oid:'.length) : reference.split('/').pop() ?? '';
  return OID.test(tail) ? tail : undefined;
}

/** splitCanonical splits `url|version` into its parts. */
export function splitCanonical(reference: string): { url: string; version: string | undefined } {
  const bar = reference.indexOf('|');
  return bar < 0 ? { url: reference, version: undefined } : { url: reference.slice(0, bar), version: reference.slice(bar + 1) || undefined };
}

type CodeLike = { readonly code?: unknown; readonly system?: unknown };

/**
 * IndexedValueSet is cql-execution's ValueSet with an O(1) `hasMatch` for codes: cql-execution
 * 3.3.2 (datatypes/clinical.js) compares every input code with every code of the set
 * (`code === code && system === system`), and a retrieve filters every candidate record that way,
 * so large QI-Core value sets made retrieves cost O(records × codes). Same answers: a code matches
 * when some code of the set has the identical `code` and `system` strings; inputs whose code or
 * system is not a string, and cql-execution's single-string overload (with its ambiguity error),
 * take the original path.
 */
export class IndexedValueSet extends ValueSet {
  /** The codes of the set by system (looked up without a key string per check); undefined when some code is not plain strings. */
  readonly #bySystem: ReadonlyMap<string, ReadonlySet<string>> | undefined;
  readonly #codes: ReadonlySet<string> | undefined;

  constructor(oid: string, version: string | undefined, codes: Code[]) {
    super(oid, version, codes);
    const plain = codes.every((c) => typeof c.code === 'string' && typeof c.system === 'string');
    if (plain) this.#bySystem = codesBySystem(codes) as ReadonlyMap<string, ReadonlySet<string>>;
    this.#codes = plain ? new Set(codes.map((c) => c.code)) : undefined;
  }

  override hasMatch(code: unknown): boolean {
    const keys = this.#bySystem;
    const list = toCodeList(code);
    if (keys === undefined || (list.length === 1 && typeof list[0] === 'string')) return super.hasMatch(code as never);
    for (const item of list) {
      if (typeof item === 'string') {
        if (this.#codes?.has(item) === true) return true;
        continue;
      }
      const { code: value, system } = (item ?? {}) as CodeLike;
      if (typeof value === 'string' && typeof system === 'string') {
        if (keys.get(system)?.has(value) === true) return true;
      } else if (super.hasMatch(item as never)) {
        return true;
      }
    }
    return false;
  }
}

/** codesBySystem groups Codes by system, then code: looked up without a key string per code. */
export function codesBySystem(codes: readonly Code[]): Map<string | undefined, Set<string>> {
  const bySystem = new Map<string | undefined, Set<string>>();
  for (const c of codes) {
    let set = bySystem.get(c.system);
    if (set === undefined) bySystem.set(c.system, (set = new Set()));
    set.add(c.code);
  }
  return bySystem;
}

/** cql-execution's `toCodeList` (datatypes/clinical.js): a code, a concept's codes, or a list of either, flattened. */
function toCodeList(value: unknown): unknown[] {
  if (value == null) return [];
  if (Array.isArray(value)) return value.flatMap(toCodeList);
  const codes = (value as { readonly codes?: unknown }).codes;
  return Array.isArray(codes) ? codes : [value];
}

/**
 * ValueSetIndex resolves value-set references the way CQL content writes them: by canonical URL
 * with or without a version (`url|version` too), and by the `urn:oid:` form older content uses.
 * It is the engine's terminology provider, built once per knowledge set.
 */
export class ValueSetIndex implements TerminologyProvider {
  readonly #byKey = new Map<string, ValueSet[]>();
  /** Answers of {@link resolve}: the index never changes, and content resolves the same few references for every patient. */
  readonly #resolved = new Map<string, ValueSet | undefined>();

  constructor(expansions: readonly ValueSetExpansion[]) {
    for (const expansion of expansions) {
      const valueSet = new IndexedValueSet(
        expansion.url,
        expansion.version,
        expansion.codes.map((c) => new Code(c.code, c.system, c.version, c.display)),
      );
      const keys = new Set([expansion.url, ...expansion.oids.map((oid) => `urn:oid:${oid}`)]);
      for (const key of keys) {
        const list = this.#byKey.get(key) ?? [];
        list.push(valueSet);
        this.#byKey.set(key, list);
      }
    }
  }

  #candidates(reference: string): ValueSet[] {
    const direct = this.#byKey.get(reference);
    if (direct) return direct;
    const oid = oidOf(reference);
    return oid ? this.#byKey.get(`urn:oid:${oid}`) ?? [] : [];
  }

  /** resolve finds a value set by reference and optional version; without a version the latest loaded wins. */
  resolve(reference: string, version?: string): ValueSet | undefined {
    const key = version === undefined ? reference : `${reference}\u0000${version}`;
    if (this.#resolved.has(key)) return this.#resolved.get(key);
    const found = this.#lookup(reference, version);
    this.#resolved.set(key, found);
    return found;
  }

  #lookup(reference: string, version: string | undefined): ValueSet | undefined {
    const split = splitCanonical(reference);
    const wanted = version ?? split.version;
    const candidates = this.#candidates(split.url);
    if (wanted) return candidates.find((vs) => vs.version === wanted);
    return [...candidates].sort((a, b) => compareVersions(b.version, a.version))[0];
  }

  /** versionsOf lists the versions loaded for a reference (for "exists with another version" hints). */
  versionsOf(reference: string): string[] {
    return this.#candidates(splitCanonical(reference).url).map((vs) => vs.version ?? '(no version)');
  }

  findValueSetsByOid(oid: string): ValueSet[] {
    return [...this.#candidates(splitCanonical(oid).url)];
  }

  findValueSet(oid: string, version?: string): ValueSet | null {
    return this.resolve(oid, version) ?? null;
  }
}

function compareVersions(a: string | undefined, b: string | undefined): number {
  return (a ?? '').localeCompare(b ?? '', 'en', { numeric: true });
}
