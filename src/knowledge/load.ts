import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { CairnError, type Problem } from '../domain/errors.ts';
import type { CqlCompiler, CqlSource, ElmSource } from '../cql-engine/compiler.ts';
import { ValueSetIndex, type ValueSetExpansion } from '../cql-engine/terminology.ts';
import { summarizeElm } from './elm.ts';
import { parseJson } from './json-file.ts';
import { parseMeasure, type MeasureDefinition } from '../measures/definition.ts';
import { closest } from './closest.ts';
import { findLibrary, libraryKey, type KnowledgeSet, type LoadedLibrary, type LoadedMeasure, type LoadedRule } from './knowledge-set.ts';
import { checkRuleReferences } from './rule-checks.ts';
import { RuleSchema } from './rule-schema.ts';
import { parseValueSetFile } from './value-sets.ts';
import { zodProblems } from './zod-problems.ts';

/** The folders of a knowledge directory. Rule test cases live in `rules/<rule-id>.tests/`. */
export const KNOWLEDGE_FOLDERS = { cql: 'cql', valueSets: 'value-sets', rules: 'rules', measures: 'measures' } as const;

const isCqlInput = (name: string): boolean => name.endsWith('.cql') || name.endsWith('.json');

interface InputFile {
  /** Path relative to the knowledge root, with forward slashes, as shown to authors. */
  readonly file: string;
  readonly text: string;
}

async function listFiles(root: string, folder: string, accept: (name: string) => boolean, skipDir: (name: string) => boolean = () => false): Promise<InputFile[]> {
  const dir = path.join(root, folder);
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const files: InputFile[] = [];
  for (const entry of entries) {
    if (!entry.isFile() || !accept(entry.name)) continue;
    const full = path.join(entry.parentPath, entry.name);
    const relative = path.relative(root, full).split(path.sep).join('/');
    if (relative.split('/').slice(0, -1).some(skipDir)) continue;
    files.push({ file: relative, text: await readFile(full, 'utf8') });
  }
  return files.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
}

/** contentVersion hashes every input (path and bytes), so equal folders give equal versions. */
function contentVersion(files: readonly InputFile[]): { version: string; files: { file: string; sha256: string }[] } {
  const all = createHash('sha256');
  const hashed = files.map(({ file, text }) => {
    const sha256 = createHash('sha256').update(text).digest('hex');
    all.update(`${file}\0${sha256}\n`);
    return { file, sha256 };
  });
  return { version: all.digest('hex').slice(0, 16), files: hashed };
}

export interface LoadKnowledgeOptions {
  readonly compiler: CqlCompiler;
}

/**
 * loadKnowledge reads and validates a knowledge directory into one immutable KnowledgeSet. Every
 * problem in every file is collected; if there is any, it throws a KNOWLEDGE_INVALID CairnError
 * listing all of them and nothing from the folders is used.
 */
export async function loadKnowledge(root: string, options: LoadKnowledgeOptions): Promise<KnowledgeSet> {
  const absoluteRoot = path.resolve(root);
  const [cqlFiles, valueSetFiles, ruleFiles, measureFiles] = await Promise.all([
    listFiles(absoluteRoot, KNOWLEDGE_FOLDERS.cql, isCqlInput),
    listFiles(absoluteRoot, KNOWLEDGE_FOLDERS.valueSets, (n) => n.endsWith('.json')),
    listFiles(absoluteRoot, KNOWLEDGE_FOLDERS.rules, (n) => n.endsWith('.json'), (dir) => dir.endsWith('.tests')),
    listFiles(absoluteRoot, KNOWLEDGE_FOLDERS.measures, (n) => n.endsWith('.json')),
  ]);
  const problems: Problem[] = [];

  const libraries = await compileLibraries(cqlFiles, options.compiler, problems);
  const { index: valueSets, expansions } = loadValueSets(valueSetFiles, problems);
  checkValueSetReferences(libraries, valueSets, problems);
  const rules = loadRules(ruleFiles, libraries, problems);
  const measures = loadMeasures(measureFiles, libraries, problems);

  if (problems.length > 0) {
    throw new CairnError('KNOWLEDGE_INVALID', `knowledge in ${absoluteRoot} has ${problems.length} problem(s); nothing from it is used`, {
      problems,
      context: { root: absoluteRoot },
    });
  }
  const { version, files } = contentVersion([...cqlFiles, ...valueSetFiles, ...ruleFiles, ...measureFiles]);
  return Object.freeze({ version, root: absoluteRoot, files: Object.freeze(files), libraries, rules: Object.freeze(rules), measures: Object.freeze(measures), valueSets, valueSetExpansions: Object.freeze(expansions) });
}

/** splitCqlInputs separates CQL source from prebuilt ELM JSON; unparseable JSON is a problem. */
export function splitCqlInputs(files: readonly InputFile[]): { sources: CqlSource[]; prebuilt: ElmSource[]; problems: Problem[] } {
  const sources: CqlSource[] = [];
  const prebuilt: ElmSource[] = [];
  const problems: Problem[] = [];
  for (const { file, text } of files) {
    if (file.endsWith('.cql')) {
      sources.push({ file, text });
      continue;
    }
    const parsed = parseJson('CQL_COMPILE', file, text);
    if (parsed.ok) prebuilt.push({ file, elm: parsed.value });
    else problems.push(parsed.problem);
  }
  return { sources, prebuilt, problems };
}

/** readCqlFolder reads the `cql/` folder of a knowledge root. */
export async function readCqlFolder(root: string): Promise<ReturnType<typeof splitCqlInputs>> {
  return splitCqlInputs(await listFiles(path.resolve(root), KNOWLEDGE_FOLDERS.cql, isCqlInput));
}

async function compileLibraries(files: readonly InputFile[], compiler: CqlCompiler, problems: Problem[]): Promise<Map<string, LoadedLibrary>> {
  const { sources, prebuilt, problems: inputProblems } = splitCqlInputs(files);
  problems.push(...inputProblems);
  const result = await compiler.compile(sources, prebuilt);
  problems.push(...result.problems);
  const libraries = new Map<string, LoadedLibrary>();
  for (const compiled of result.libraries) {
    libraries.set(libraryKey(compiled.name, compiled.version), { compiled, summary: summarizeElm(compiled.elm) });
  }
  return libraries;
}

function loadValueSets(files: readonly InputFile[], problems: Problem[]): { index: ValueSetIndex; expansions: ValueSetExpansion[] } {
  const expansions: ValueSetExpansion[] = [];
  for (const { file, text } of files) {
    const parsed = parseJson('VALUESET_INVALID', file, text);
    if (!parsed.ok) {
      problems.push(parsed.problem);
      continue;
    }
    const result = parseValueSetFile(file, parsed.value);
    expansions.push(...result.expansions);
    problems.push(...result.problems);
  }
  return { index: new ValueSetIndex(expansions), expansions };
}

function checkValueSetReferences(libraries: ReadonlyMap<string, LoadedLibrary>, valueSets: ValueSetIndex, problems: Problem[]): void {
  for (const { compiled, summary } of libraries.values()) {
    for (const ref of summary.valueSets) {
      if (valueSets.resolve(ref.id, ref.version)) continue;
      const others = ref.version ? valueSets.versionsOf(ref.id) : [];
      problems.push({
        code: 'VALUESET_MISSING',
        file: compiled.file,
        message: `library ${summary.name} references value set "${ref.name}" (${ref.id}${ref.version ? `|${ref.version}` : ''}), which is not loaded`,
        ...(others.length ? { hint: `loaded with another version: ${others.join(', ')}` } : { hint: 'add its expansion to value-sets/' }),
      });
    }
  }
}

function loadRules(files: readonly InputFile[], libraries: ReadonlyMap<string, LoadedLibrary>, problems: Problem[]): LoadedRule[] {
  const rules: LoadedRule[] = [];
  const seen = new Map<string, string>();
  for (const { file, text } of files) {
    const parsed = parseJson('RULE_INVALID', file, text);
    if (!parsed.ok) {
      problems.push(parsed.problem);
      continue;
    }
    const result = RuleSchema.safeParse(parsed.value);
    if (!result.success) {
      problems.push(...zodProblems('RULE_INVALID', file, result.error));
      continue;
    }
    const rule = result.data;
    const expectedName = `${rule.id}.json`;
    if (path.basename(file) !== expectedName) {
      problems.push({ code: 'RULE_INVALID', file, path: '$.id', message: `rule id "${rule.id}" does not match its file name`, hint: `name the file ${expectedName}` });
    }
    const earlier = seen.get(rule.id);
    if (earlier) problems.push({ code: 'RULE_INVALID', file, path: '$.id', message: `rule id "${rule.id}" is also used by ${earlier}` });
    seen.set(rule.id, file);
    const library = findLibrary({ libraries }, rule.cql.library, rule.cql.version);
    const versions = [...libraries.values()].filter((l) => l.summary.name === rule.cql.library).map((l) => l.summary.version ?? '(none)');
    problems.push(...checkRuleReferences(file, rule, library?.summary, versions));
    rules.push(Object.freeze({ file, rule }));
  }
  return rules;
}

function loadMeasures(files: readonly InputFile[], libraries: ReadonlyMap<string, LoadedLibrary>, problems: Problem[]): LoadedMeasure[] {
  const measures: LoadedMeasure[] = [];
  const urls = new Map<string, string>();
  for (const { file, text } of files) {
    const parsed = parseJson('MEASURE_INVALID', file, text);
    if (!parsed.ok) {
      problems.push(parsed.problem);
      continue;
    }
    let definition: MeasureDefinition;
    try {
      definition = parseMeasure(parsed.value, file);
    } catch (error) {
      if (!(error instanceof CairnError)) throw error;
      problems.push(...(error.problems.length ? error.problems.map((p) => ({ ...p, code: 'MEASURE_INVALID' as const })) : [{ code: 'MEASURE_INVALID' as const, file, message: error.message }]));
      continue;
    }
    const earlier = urls.get(definition.canonical);
    if (earlier) problems.push({ code: 'MEASURE_INVALID', file, path: '$.url', message: `measure ${definition.canonical} is also defined in ${earlier}` });
    urls.set(definition.canonical, file);
    const { name, version } = definition.library;
    const library = findLibrary({ libraries }, name, version);
    if (!library) {
      problems.push({ code: 'MEASURE_INVALID', file, path: '$.library[0]', message: `measure ${definition.canonical} runs CQL library ${name}${version ? ` version '${version}'` : ''}, which is not loaded` });
      continue;
    }
    const defines = new Set(library.summary.defines);
    for (const expression of measureExpressions(definition)) {
      if (defines.has(expression.name)) continue;
      const suggestion = closest(expression.name, defines);
      problems.push({ code: 'MEASURE_INVALID', file, path: expression.path, message: `"${expression.name}" is not a define of ${name}`, ...(suggestion ? { hint: `did you mean "${suggestion}"?` } : {}) });
    }
    measures.push(Object.freeze({ file, json: parsed.value, definition }));
  }
  return measures;
}

/** measureExpressions lists every define a measure's populations, stratifiers and supplemental data name, with where. */
function measureExpressions(definition: MeasureDefinition): { name: string; path: string }[] {
  const out: { name: string; path: string }[] = [];
  definition.groups.forEach((group, g) => {
    group.populations.forEach((p, i) => out.push({ name: p.expression, path: `$.group[${g}].population[${i}].criteria.expression` }));
    group.stratifiers.forEach((st, i) => st.expression && out.push({ name: st.expression, path: `$.group[${g}].stratifier[${i}].criteria.expression` }));
  });
  definition.supplementalData.forEach((sde, i) => out.push({ name: sde.expression, path: `$.supplementalData[${i}].criteria.expression` }));
  return out;
}
