/**
 * In-process CQL -> ELM compilation with @cqframework/cql (the reference translator built for
 * JavaScript). Compile once per knowledge version: `compile()` takes every CQL source and prebuilt
 * ELM of a knowledge set, resolves includes by name and version, compiles in dependency order and
 * reports every problem at once. Compiled ELM is cached on disk by content hash.
 *
 * ELM: https://cql.hl7.org/elm.html; translator options: CqlCompilerOptions.defaultOptions()
 * (annotations + locators, list promotion/demotion off, signatures for overloads).
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { CqlCompilerException, CqlCompilerOptions, LibraryManager, ModelManager } from '@cqframework/cql/cql-to-elm';
import type { Problem } from '../domain/errors.ts';
import { FHIR_VERSION, createModelManager, loadModelInfoSet } from './model-info.ts';
import { loadTranslator, type Translator } from './translator.ts';
import { createLazyUcumService } from './ucum.ts';

/** CqlSource is one CQL file; `file` is the path as shown to authors, e.g. 'cql/OpioidSafety.cql'. */
export interface CqlSource {
  readonly file: string;
  readonly text: string;
}

/** ElmSource is a prebuilt ELM JSON document ({ library: {...} }). */
export interface ElmSource {
  readonly file: string;
  readonly elm: unknown;
}

const elmIncludeSchema = z.looseObject({
  localIdentifier: z.string().optional(),
  path: z.string(),
  version: z.string().optional(),
  locator: z.string().optional(),
});

/** elmLibraryDocumentSchema checks the minimal shape of an ELM JSON document we rely on. */
export const elmLibraryDocumentSchema = z.looseObject({
  library: z.looseObject({
    identifier: z.looseObject({ id: z.string().min(1), version: z.string().optional() }),
    includes: z.looseObject({ def: z.array(elmIncludeSchema).optional() }).optional(),
  }),
});

/** ElmLibraryDocument is an ELM JSON document, checked by {@link elmLibraryDocumentSchema}. */
export type ElmLibraryDocument = z.infer<typeof elmLibraryDocumentSchema>;

/** CompiledLibrary is one library ready for cql-execution. */
export interface CompiledLibrary {
  readonly name: string;
  readonly version: string | undefined;
  readonly file: string;
  readonly elm: ElmLibraryDocument;
  readonly source: 'cql' | 'elm';
}

/** CompileWarning is a warning-level translator message; it does not fail the library. */
export interface CompileWarning {
  readonly file: string;
  readonly line?: number;
  readonly column?: number;
  readonly message: string;
}

/** CompileStats says which CQL libraries were translated and which came from the ELM cache. */
export interface CompileStats {
  readonly translated: readonly string[];
  readonly cacheHits: readonly string[];
}

export interface CompileResult {
  readonly libraries: readonly CompiledLibrary[];
  readonly problems: readonly Problem[];
  readonly warnings: readonly CompileWarning[];
  readonly stats: CompileStats;
}

export interface CqlCompiler {
  /** The translator is loaded (once per process) only when a CQL library misses the cache. */
  compile(sources: readonly CqlSource[], prebuilt: readonly ElmSource[]): Promise<CompileResult>;
}

export interface CqlCompilerSettings {
  /** Directory for the ELM cache; no caching when absent. */
  readonly cacheDir?: string;
}

/** FHIR_HELPERS_FILE is how the bundled FHIRHelpers is named in problems and results. */
export const FHIR_HELPERS_FILE = 'cql/FHIRHelpers.cql';
const FHIR_HELPERS_PATH = fileURLToPath(new URL('../../cql/FHIRHelpers.cql', import.meta.url));
const CACHE_FORMAT = 'cairn-elm-cache/2';

// ---------------------------------------------------------------------------------------------
// Header scanning: `library` and `include` declarations, read without compiling (cql.g4
// `libraryDefinition`, `includeDefinition`) so includes resolve and cache keys exist up front.

interface Declaration {
  readonly name: string;
  readonly version: string | undefined;
  readonly line: number;
  readonly column: number;
}

interface CqlHeader {
  readonly library: Declaration | undefined;
  readonly includes: readonly Declaration[];
}

interface Token {
  readonly kind: 'word' | 'string' | 'quoted' | 'punct';
  readonly text: string;
  readonly line: number;
  readonly column: number;
}

function readQuoted(text: string, start: number, quote: string): { value: string; end: number } {
  let value = '';
  let j = start + 1;
  while (j < text.length && text[j] !== quote) {
    const escaped = text[j] === '\\' && j + 1 < text.length;
    value += escaped ? text[j + 1] : text[j];
    j += escaped ? 2 : 1;
  }
  return { value, end: j + 1 };
}

/** tokenize splits CQL into words, strings and punctuation, skipping comments and whitespace. */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let lineStart = 0;
  let i = 0;
  const moveTo = (end: number): void => {
    for (let j = i; j < end && j < text.length; j++) {
      if (text[j] === '\n') [line, lineStart] = [line + 1, j + 1];
    }
    i = end;
  };
  while (i < text.length) {
    const ch = text[i] ?? '';
    const pair = text.slice(i, i + 2);
    const at = { line, column: i - lineStart + 1 };
    if (/\s/.test(ch)) moveTo(i + 1);
    else if (pair === '//') moveTo(text.includes('\n', i) ? text.indexOf('\n', i) : text.length);
    else if (pair === '/*') moveTo(text.includes('*/', i + 2) ? text.indexOf('*/', i + 2) + 2 : text.length);
    else if (ch === "'" || ch === '"' || ch === '`') {
      const { value, end } = readQuoted(text, i, ch);
      tokens.push({ kind: ch === "'" ? 'string' : 'quoted', text: value, ...at });
      moveTo(end);
    } else if (/[A-Za-z_]/.test(ch)) {
      const word = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i, i + 512))?.[0] ?? ch;
      tokens.push({ kind: 'word', text: word, ...at });
      moveTo(i + word.length);
    } else {
      tokens.push({ kind: 'punct', text: ch, ...at });
      moveTo(i + 1);
    }
  }
  return tokens;
}

/** readDeclaration reads `Qualified.Name [version 'v']` following the keyword at `at`. */
function readDeclaration(tokens: readonly Token[], at: number): Declaration | undefined {
  const keyword = tokens[at];
  let i = at + 1;
  let name: string | undefined;
  for (;;) {
    const token = tokens[i];
    if (!token || (token.kind !== 'word' && token.kind !== 'quoted')) return undefined;
    name = token.text; // a namespace-qualified name (`include Common.Helpers`) resolves by its last part
    if (tokens[i + 1]?.kind !== 'punct' || tokens[i + 1]?.text !== '.') break;
    i += 2;
  }
  const versionValue = tokens[i + 2];
  const hasVersion = tokens[i + 1]?.kind === 'word' && tokens[i + 1]?.text === 'version' && versionValue?.kind === 'string';
  if (!keyword) return undefined;
  return { name, version: hasVersion ? versionValue.text : undefined, line: keyword.line, column: keyword.column };
}

/** scanCqlHeader returns the library declaration and includes of a CQL text; it never throws. */
export function scanCqlHeader(text: string): CqlHeader {
  const tokens = tokenize(text);
  const includes: Declaration[] = [];
  const first = tokens[0];
  const library = first?.kind === 'word' && first.text === 'library' ? readDeclaration(tokens, 0) : undefined;
  tokens.forEach((token, index) => {
    if (token.kind !== 'word' || token.text !== 'include') return;
    const declared = readDeclaration(tokens, index);
    if (declared) includes.push(declared);
  });
  return { library, includes };
}

// ---------------------------------------------------------------------------------------------
// Units: every library of one compile() call, from CQL or prebuilt ELM.

interface IncludeRef {
  readonly name: string;
  readonly version: string | undefined;
  readonly line?: number;
  readonly column?: number;
  /** JSON path of the include in a prebuilt ELM file. */
  readonly path?: string;
}

interface Unit {
  readonly name: string;
  readonly version: string | undefined;
  readonly file: string;
  readonly includes: readonly IncludeRef[];
  readonly cql?: string;
  readonly elm?: ElmLibraryDocument;
}

function describe(name: string, version: string | undefined): string {
  return version === undefined ? name : `${name} version '${version}'`;
}

function unitId(name: string, version: string | undefined): string {
  return `${name}|${version ?? ''}`;
}

function cqlUnit(source: CqlSource, problems: Problem[]): Unit | undefined {
  const header = scanCqlHeader(source.text);
  if (!header.library) {
    problems.push({ code: 'CQL_COMPILE', file: source.file, line: 1, column: 1, message: 'The file does not start with a library declaration (`library Name version \'x\'`).' });
    return undefined;
  }
  const { name, version } = header.library;
  return { name, version, file: source.file, cql: source.text, includes: header.includes };
}

function elmUnit(source: ElmSource, problems: Problem[]): Unit | undefined {
  const parsed = elmLibraryDocumentSchema.safeParse(source.elm);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue && issue.path.length > 0 ? `$.${issue.path.join('.')}` : '$';
    problems.push({ code: 'CQL_COMPILE', file: source.file, path, message: `Not an ELM library document: ${issue?.message ?? 'invalid'} (library.identifier.id is required).` });
    return undefined;
  }
  const library = parsed.data.library;
  // An ELM include path may be namespace-qualified (`http://ecqi.healthit.gov/ecqms/FHIRHelpers`).
  const includes = (library.includes?.def ?? []).map((def, index) => ({
    name: def.path.slice(def.path.lastIndexOf('/') + 1),
    version: def.version,
    path: `$.library.includes.def[${index}]`,
  }));
  return { name: library.identifier.id, version: library.identifier.version, file: source.file, elm: parsed.data, includes };
}

/** collectUnits turns sources into units, dropping (and reporting) invalid and duplicate ones. */
function collectUnits(sources: readonly CqlSource[], prebuilt: readonly ElmSource[], problems: Problem[]): Unit[] {
  const units: Unit[] = [];
  const seen = new Map<string, Unit>();
  const candidates = [
    ...sources.map((source) => cqlUnit(source, problems)),
    ...prebuilt.map((source) => elmUnit(source, problems)),
  ];
  for (const unit of candidates) {
    if (!unit) continue;
    const earlier = seen.get(unitId(unit.name, unit.version));
    if (earlier) {
      problems.push({ code: 'CQL_COMPILE', file: unit.file, line: unit.cql ? 1 : undefined, message: `Library ${describe(unit.name, unit.version)} is declared twice: in ${earlier.file} and in ${unit.file}; only ${earlier.file} is used.` });
      continue;
    }
    seen.set(unitId(unit.name, unit.version), unit);
    units.push(unit);
  }
  return units;
}

/** addBundledFhirHelpers adds our FHIRHelpers when a library includes it and none was given. */
function addBundledFhirHelpers(units: Unit[]): void {
  const wanted = units.some((unit) => unit.includes.some((ref) => ref.name === 'FHIRHelpers' && (ref.version ?? FHIR_VERSION) === FHIR_VERSION));
  if (!wanted || units.some((unit) => unit.name === 'FHIRHelpers' && unit.version === FHIR_VERSION)) return;
  const text = readFileSync(FHIR_HELPERS_PATH, 'utf8');
  units.push({ name: 'FHIRHelpers', version: FHIR_VERSION, file: FHIR_HELPERS_FILE, cql: text, includes: [] });
}

// ---------------------------------------------------------------------------------------------
// Include resolution and ordering.

function resolveInclude(units: readonly Unit[], ref: IncludeRef): { found?: Unit; candidates: readonly Unit[] } {
  const candidates = units.filter((unit) => unit.name === ref.name);
  const found = ref.version === undefined
    ? (candidates.length === 1 ? candidates[0] : undefined)
    : candidates.find((unit) => unit.version === ref.version);
  return { found, candidates };
}

function includeProblem(unit: Unit, ref: IncludeRef, candidates: readonly Unit[]): Problem {
  const wanted = describe(ref.name, ref.version);
  const loaded = candidates.map((c) => `${describe(c.name, c.version)} (${c.file})`).join(', ');
  const message = candidates.length === 0
    ? `Library ${describe(unit.name, unit.version)} includes ${wanted}, which is not loaded.`
    : `Library ${describe(unit.name, unit.version)} includes ${wanted}, but only ${loaded} is loaded.`;
  return { code: 'CQL_INCLUDE', file: unit.file, line: ref.line, column: ref.column, path: ref.path, message };
}

/** orderUnits returns units with every include before its includer; failing units are left out. */
function orderUnits(units: readonly Unit[], problems: Problem[]): { ordered: Unit[]; dependencies: Map<Unit, Unit[]> } {
  const dependencies = new Map<Unit, Unit[]>();
  const failed = new Set<Unit>();
  for (const unit of units) {
    const deps: Unit[] = [];
    for (const ref of unit.includes) {
      const { found, candidates } = resolveInclude(units, ref);
      if (found) deps.push(found);
      else {
        problems.push(includeProblem(unit, ref, candidates));
        failed.add(unit);
      }
    }
    dependencies.set(unit, deps);
  }
  const ordered: Unit[] = [];
  const state = new Map<Unit, 'visiting' | 'done'>();
  const visit = (unit: Unit, chain: readonly Unit[]): boolean => {
    if (state.get(unit) === 'done') return !failed.has(unit);
    if (state.get(unit) === 'visiting') {
      const cycle = [...chain.slice(chain.indexOf(unit)), unit].map((u) => u.name).join(' -> ');
      problems.push({ code: 'CQL_INCLUDE', file: unit.file, message: `Libraries include each other in a cycle: ${cycle}.` });
      failed.add(unit);
      return false;
    }
    state.set(unit, 'visiting');
    let ok = !failed.has(unit);
    for (const dep of dependencies.get(unit) ?? []) {
      if (!visit(dep, [...chain, unit]) && ok) {
        ok = false;
        const ref = unit.includes.find((r) => r.name === dep.name);
        problems.push({ code: 'CQL_INCLUDE', file: unit.file, line: ref?.line, column: ref?.column, message: `Library ${describe(unit.name, unit.version)} is not usable because its include ${describe(dep.name, dep.version)} (${dep.file}) failed.` });
      }
    }
    state.set(unit, 'done');
    if (ok) ordered.push(unit);
    else failed.add(unit);
    return ok;
  };
  for (const unit of units) visit(unit, []);
  return { ordered, dependencies };
}

// ---------------------------------------------------------------------------------------------
// ELM cache: one JSON file per key; key = sha256(compiler identity + source + include keys).

const cacheEntrySchema = z.object({
  format: z.literal(CACHE_FORMAT),
  key: z.string(),
  elm: elmLibraryDocumentSchema,
  warnings: z.array(z.object({ file: z.string(), line: z.number().optional(), column: z.number().optional(), message: z.string() })),
});

interface CacheEntry {
  readonly elm: ElmLibraryDocument;
  readonly warnings: readonly CompileWarning[];
}

function readCache(cacheDir: string | undefined, key: string): CacheEntry | undefined {
  if (!cacheDir) return undefined;
  let text: string;
  try {
    text = readFileSync(join(cacheDir, `${key}.json`), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const parsed = cacheEntrySchema.safeParse(JSON.parse(text));
    // A corrupt or foreign entry is ignored; the library is recompiled and the entry rewritten.
    return parsed.success && parsed.data.key === key ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function writeCache(cacheDir: string | undefined, key: string, entry: CacheEntry): void {
  if (!cacheDir) return;
  const target = join(cacheDir, `${key}.json`);
  const temp = `${target}.${randomUUID()}.tmp`;
  try {
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(temp, JSON.stringify({ format: CACHE_FORMAT, key, ...entry }));
    renameSync(temp, target); // atomic on POSIX: readers see the old entry or the whole new one
  } catch {
    // The cache is an optimisation: a read-only or full disk must not fail compilation.
    try {
      unlinkSync(temp);
    } catch {
      /* temp file was never written */
    }
  }
}

function sha256(...parts: readonly string[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
  return hash.digest('hex');
}

function translatorVersion(): string {
  const entry = fileURLToPath(import.meta.resolve('@cqframework/cql/cql-to-elm'));
  const pkg = JSON.parse(readFileSync(join(dirname(entry), 'package.json'), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

// ---------------------------------------------------------------------------------------------
// Translation.

interface Located {
  readonly libraryName: string | undefined;
  readonly line?: number;
  readonly column?: number;
}

/**
 * locate reads where a translator message points. The Kotlin/JS TrackBack has mangled property
 * names, so the position comes from its stable toString() and the library from the one property
 * holding a VersionedIdentifier. Syntax errors carry ANTLR's 0-based column; others are 1-based.
 */
function locate(error: CqlCompilerException): Located {
  const locator: unknown = error.locator;
  if (typeof locator !== 'object' || locator === null) return { libraryName: undefined };
  const position = /startLine=(\d+), startChar=(\d+)/.exec(String(locator));
  const identifier = Object.values(locator).find((value): value is { id: unknown } => typeof value === 'object' && value !== null && 'id' in value);
  const libraryName = typeof identifier?.id === 'string' ? identifier.id : undefined;
  if (!position) return { libraryName };
  const isSyntax = error.constructor.name === 'CqlSyntaxException';
  return { libraryName, line: Number(position[1]), column: Number(position[2]) + (isSyntax ? 1 : 0) };
}

function problemFor(error: CqlCompilerException, unit: Unit, fileOf: (name: string | undefined) => string | undefined): Problem {
  const where = locate(error);
  const file = fileOf(where.libraryName) ?? unit.file;
  const code = error.constructor.name === 'CqlIncludeException' ? 'CQL_INCLUDE' : 'CQL_COMPILE';
  const message = error.message || 'The translator reported an error without a message.';
  const hint = /Could not resolve library name FHIRHelpers/.test(message)
    ? `libraries using FHIR must include FHIRHelpers: add \`include FHIRHelpers version '${FHIR_VERSION}'\``
    : undefined;
  return { code, file, line: where.line, column: where.column, message, ...(hint ? { hint } : {}) };
}

interface Session {
  readonly manager: LibraryManager;
  /** ELM JSON text of libraries already available in this session, served to includers. */
  readonly elmText: Map<string, string>;
}

/** createSession makes a LibraryManager that serves this call's CQL and ELM by name and version. */
function createSession({ cqlToElm }: Translator, models: ModelManager, ucum: unknown, options: CqlCompilerOptions, units: readonly Unit[]): Session {
  const { LibraryManager, createLibrarySourceProvider, stringAsSource } = cqlToElm;
  const manager = new LibraryManager(models, options, undefined, ucum);
  const elmText = new Map<string, string>();
  const find = (name: string, version: string | null | undefined): Unit | undefined => resolveInclude(units, { name, version: version ?? undefined }).found;
  const provider = createLibrarySourceProvider((name, _namespace, version) => {
    const text = find(name, version)?.cql;
    return text === undefined ? null : stringAsSource(text);
  });
  // Serving already-compiled includes as ELM spares recompiling them for every includer; the
  // translator falls back to CQL when the ELM was built with incompatible options.
  const cqlProvider = provider.getLibraryContent.bind(provider);
  Object.assign(provider, {
    getLibraryContent(identifier: { id?: string | null; version?: string | null }, type: unknown): unknown {
      if (String(type) === 'JSON' && identifier.id) {
        const unit = find(identifier.id, identifier.version);
        const text = unit ? elmText.get(unitId(unit.name, unit.version)) : undefined;
        if (text !== undefined) return stringAsSource(text);
      }
      return cqlProvider(identifier as Parameters<typeof cqlProvider>[0], type);
    },
  });
  manager.librarySourceLoader.registerProvider(provider);
  return { manager, elmText };
}

interface Translation {
  readonly elm?: ElmLibraryDocument;
  readonly problems: readonly Problem[];
  readonly warnings: readonly CompileWarning[];
}

function translate({ cqlToElm }: Translator, session: Session, unit: Unit, fileOf: (name: string | undefined) => string | undefined): Translation {
  const translator = cqlToElm.CqlTranslator.fromText(unit.cql ?? '', session.manager);
  const messages = translator.exceptions.asJsReadonlyArrayView();
  const problems = messages.filter((m) => m.severity.name === 'Error').map((m) => problemFor(m, unit, fileOf));
  const warnings = messages.filter((m) => m.severity.name === 'Warning').map((m) => {
    const { line, column, file, message } = problemFor(m, unit, fileOf);
    return { file: file ?? unit.file, line, column, message };
  });
  if (problems.length > 0) return { problems, warnings };
  const elm = elmLibraryDocumentSchema.safeParse(JSON.parse(translator.toJson()));
  if (!elm.success) {
    return { problems: [{ code: 'CQL_COMPILE', file: unit.file, message: 'The translator produced ELM without a library identifier.' }], warnings };
  }
  const declared = elm.data.library.identifier;
  if (declared.id !== unit.name || declared.version !== unit.version) {
    return { problems: [{ code: 'CQL_COMPILE', file: unit.file, line: 1, column: 1, message: `The library declaration reads as ${describe(declared.id, declared.version)}, not ${describe(unit.name, unit.version)}.` }], warnings };
  }
  return { elm: elm.data, problems, warnings };
}

// ---------------------------------------------------------------------------------------------
// The compiler.

interface CompileState {
  readonly libraries: CompiledLibrary[];
  readonly problems: Problem[];
  readonly warnings: CompileWarning[];
  readonly translated: string[];
  readonly cacheHits: string[];
}

/**
 * createCqlCompiler returns a compiler that parses model info once and reuses it for every
 * compile() call; with `cacheDir`, translated ELM is cached there by content hash. The translator
 * is loaded on the first cache miss (see translator.ts).
 */
export function createCqlCompiler(settings: CqlCompilerSettings = {}): CqlCompiler {
  const modelInfo = loadModelInfoSet();
  // The translator's default options are fixed by its version, so the version stands for them.
  const identity = sha256(CACHE_FORMAT, translatorVersion(), modelInfo.digest);
  let translating: { readonly translator: Translator; readonly models: ModelManager; readonly ucum: unknown; readonly options: CqlCompilerOptions } | undefined;
  const translation = async (): Promise<NonNullable<typeof translating>> => {
    if (translating === undefined) {
      const translator = await loadTranslator();
      translating ??= withoutKotlinBanner(() => ({
        translator,
        models: createModelManager(translator.cqlToElm, modelInfo),
        ucum: createLazyUcumService(translator),
        options: translator.cqlToElm.CqlCompilerOptions.defaultOptions(),
      }));
    }
    return translating;
  };
  const cacheDir = settings.cacheDir;

  const compile = async (sources: readonly CqlSource[], prebuilt: readonly ElmSource[]): Promise<CompileResult> => {
    const state: CompileState = { libraries: [], problems: [], warnings: [], translated: [], cacheHits: [] };
    const units = collectUnits(sources, prebuilt, state.problems);
    addBundledFhirHelpers(units);
    const { ordered, dependencies } = orderUnits(units, state.problems);
    const fileByName = new Map(units.map((unit) => [unit.name, unit.file]));
    const fileOf = (name: string | undefined): string | undefined => (name === undefined ? undefined : fileByName.get(name));
    const keys = new Map<Unit, string>();
    const failed = new Set<Unit>();
    let session: Session | undefined;

    for (const unit of ordered) {
      const deps = dependencies.get(unit) ?? [];
      const brokenDep = deps.find((dep) => failed.has(dep));
      if (brokenDep) {
        failed.add(unit);
        const ref = unit.includes.find((r) => r.name === brokenDep.name);
        state.problems.push({ code: 'CQL_INCLUDE', file: unit.file, line: ref?.line, column: ref?.column, message: `Library ${describe(unit.name, unit.version)} is not usable because its include ${describe(brokenDep.name, brokenDep.version)} (${brokenDep.file}) failed to compile.` });
        continue;
      }
      const key = sha256(identity, unit.cql ?? JSON.stringify(unit.elm), ...deps.map((dep) => keys.get(dep) ?? ''));
      keys.set(unit, key);
      if (unit.elm) {
        state.libraries.push({ name: unit.name, version: unit.version, file: unit.file, elm: unit.elm, source: 'elm' });
        session?.elmText.set(unitId(unit.name, unit.version), JSON.stringify(unit.elm));
        continue;
      }
      let entry = readCache(cacheDir, key);
      if (entry) {
        state.cacheHits.push(unit.name);
        state.warnings.push(...entry.warnings);
      } else {
        const { translator, models, ucum, options } = await translation();
        const current = (session ??= withoutKotlinBanner(() => createSessionWithKnown(translator, models, ucum, options, units, state.libraries)));
        const result = withoutKotlinBanner(() => translate(translator, current, unit, fileOf));
        state.translated.push(unit.name);
        state.warnings.push(...result.warnings);
        if (!result.elm) {
          state.problems.push(...result.problems);
          failed.add(unit);
          continue;
        }
        entry = { elm: result.elm, warnings: result.warnings };
        writeCache(cacheDir, key, entry);
      }
      state.libraries.push({ name: unit.name, version: unit.version, file: unit.file, elm: entry.elm, source: 'cql' });
      session?.elmText.set(unitId(unit.name, unit.version), JSON.stringify(entry.elm));
    }
    return {
      libraries: state.libraries,
      problems: dedupe(state.problems),
      warnings: state.warnings,
      stats: { translated: state.translated, cacheHits: state.cacheHits },
    };
  };
  return { compile };
}

/**
 * withoutKotlinBanner runs `fn` while dropping the one line kotlin-logging writes to stdout the first
 * time the translator logs ("kotlin-logging: initializing..."), which would corrupt JSON output of
 * the CLI. The translator offers no setting for it.
 */
function withoutKotlinBanner<T>(fn: () => T): T {
  // Kotlin/JS println writes straight to process.stdout on Node.
  const write = process.stdout.write;
  const error = console.error;
  let dropNewline = false;
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]): boolean => {
    if (typeof chunk === 'string' && (chunk.startsWith('kotlin-logging: initializing') || (dropNewline && chunk === '\n'))) {
      dropNewline = !dropNewline;
      return true;
    }
    return (write as (...args: unknown[]) => boolean).call(process.stdout, chunk, ...rest);
  }) as typeof process.stdout.write;
  // The translator logs this when it cannot reuse an include's ELM (ours has no result types) and
  // then compiles the include from source instead: a fallback, not an error worth showing authors.
  console.error = (...args: unknown[]): void => {
    if (typeof args[0] === 'string' && args[0].includes('Error generating compiled library') && args[0].includes('does not have a result type')) return;
    error(...args);
  };
  try {
    return fn();
  } finally {
    process.stdout.write = write;
    console.error = error;
  }
}

/** createSessionWithKnown opens a session that already serves the libraries compiled so far. */
function createSessionWithKnown(translator: Translator, models: ModelManager, ucum: unknown, options: CqlCompilerOptions, units: readonly Unit[], known: readonly CompiledLibrary[]): Session {
  const session = createSession(translator, models, ucum, options, units);
  for (const library of known) session.elmText.set(unitId(library.name, library.version), JSON.stringify(library.elm));
  return session;
}

/** dedupe drops repeats: an included library's errors can surface while compiling its includer. */
function dedupe(problems: readonly Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems.filter((problem) => {
    const key = JSON.stringify([problem.code, problem.file, problem.line, problem.column, problem.message]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
