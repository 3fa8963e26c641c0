import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Executor, Library, Repository } from 'cql-execution';
import { PatientSource } from 'cql-exec-fhir';
import { createCqlCompiler, scanCqlHeader, type CompileResult, type CqlCompiler, type CqlSource, type ElmSource } from '../../src/cql-engine/compiler.ts';
import { fhirModelInfoPath } from '../../src/cql-engine/model-info.ts';
import { formatProblem } from '../../src/domain/errors.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURES = 'test/fixtures/cql';
const ECQM_ELM = join(ROOT, '../shared/fixtures/population/ecqm-content-qicore-2024/elm');

function cql(...files: readonly string[]): CqlSource[] {
  return files.map((file) => ({ file: `${FIXTURES}/${file}`, text: readFileSync(join(ROOT, FIXTURES, file), 'utf8') }));
}

function text(file: string, body: string): CqlSource {
  return { file, text: body };
}

function elmFolder(dir: string): ElmSource[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith('.json'))
    .map((name) => ({ file: join(dir, name), elm: JSON.parse(readFileSync(join(dir, name), 'utf8')) as unknown }));
}

const rendered = (result: CompileResult): string[] => result.problems.map(formatProblem);

let scratch: string;
let compiler: CqlCompiler;

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'cairn-compiler-'));
  // One compiler (model info parsed once) and one cache keep FHIRHelpers to a single compilation.
  compiler = createCqlCompiler({ cacheDir: join(scratch, 'shared-cache') });
});

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe('scanCqlHeader', () => {
  const cases = [
    { name: 'library and versioned include', input: "library A version '1.0'\ninclude B version '2' called B", want: { library: 'A@1.0', includes: ['B@2 2:1'] } },
    { name: 'comments and strings are skipped', input: "// include X version '9'\n/* include Y */ library A\ndefine S: 'include Z'", want: { library: 'A@', includes: [] } },
    { name: 'library must be the first declaration', input: "define X: 1\nlibrary A", want: { library: undefined, includes: [] } },
    { name: 'namespace-qualified include resolves by last part', input: "library A\n  include Common.Helpers version '1' called H", want: { library: 'A@', includes: ['Helpers@1 2:3'] } },
  ];
  it.each(cases)('$name', ({ input, want }) => {
    const header = scanCqlHeader(input);
    expect(header.library ? `${header.library.name}@${header.library.version ?? ''}` : undefined).toEqual(want.library);
    expect(header.includes.map((i) => `${i.name}@${i.version ?? ''} ${i.line}:${i.column}`)).toEqual(want.includes);
  });
});

describe('compile: problems', () => {
  const cases: { name: string; sources: CqlSource[]; want: string[] }[] = [
    {
      name: 'syntax error is located at file:line:column',
      sources: cql('errors/SyntaxError.cql'),
      want: [`${FIXTURES}/errors/SyntaxError.cql:3:21 [CQL_COMPILE] Syntax error at *`],
    },
    {
      name: 'unknown include names includer and included library',
      sources: cql('errors/MissingInclude.cql'),
      want: [`${FIXTURES}/errors/MissingInclude.cql:3:1 [CQL_INCLUDE] Library MissingInclude version '1.0.0' includes Nowhere version '1.0.0', which is not loaded.`],
    },
    {
      name: 'include version mismatch names both versions',
      sources: cql('errors/WrongVersion.cql', 'shared/Shared.cql'),
      want: [`${FIXTURES}/errors/WrongVersion.cql:4:1 [CQL_INCLUDE] Library WrongVersion version '1.0.0' includes Shared version '2.0.0', but only Shared version '1.0.0' (${FIXTURES}/shared/Shared.cql) is loaded.`],
    },
    {
      name: 'invalid UCUM unit is a compile error',
      sources: cql('errors/BadUnit.cql'),
      want: [`${FIXTURES}/errors/BadUnit.cql:4:20 [CQL_COMPILE] milligrams is not a valid UCUM code.`],
    },
    {
      name: 'error in an included library names that library\'s file',
      sources: cql('errors/IncludesBroken.cql', 'errors/BrokenShared.cql'),
      want: [
        `${FIXTURES}/errors/BrokenShared.cql:3:15 [CQL_COMPILE] Could not resolve call to operator Add with signature (System.Integer, System.String).`,
        `${FIXTURES}/errors/IncludesBroken.cql:3:1 [CQL_INCLUDE] Library IncludesBroken version '1.0.0' is not usable because its include BrokenShared version '1.0.0' (${FIXTURES}/errors/BrokenShared.cql) failed to compile.`,
      ],
    },
    {
      name: 'same library name and version twice',
      sources: [...cql('shared/Shared.cql'), text('other/Shared.cql', "library Shared version '1.0.0'\ndefine \"Answer\": 43")],
      want: [`other/Shared.cql:1:1 [CQL_COMPILE] Library Shared version '1.0.0' is declared twice: in ${FIXTURES}/shared/Shared.cql and in other/Shared.cql; only ${FIXTURES}/shared/Shared.cql is used.`],
    },
    {
      name: 'file without a library declaration',
      sources: [text('cql/Anonymous.cql', 'define "X": 1')],
      want: ["cql/Anonymous.cql:1:1 [CQL_COMPILE] The file does not start with a library declaration (`library Name version 'x'`)."],
    },
    {
      name: 'FHIR library without FHIRHelpers include gets a hint',
      sources: cql('errors/NoFhirHelpers.cql'),
      want: [`${FIXTURES}/errors/NoFhirHelpers.cql:7:39 [CQL_COMPILE] Could not resolve library name FHIRHelpers. (hint: libraries using FHIR must include FHIRHelpers: add \`include FHIRHelpers version '4.0.1'\`)`],
    },
  ];
  it.each(cases)('$name', async ({ sources, want }) => {
    const result = await compiler.compile(sources, []);
    expect(rendered(result)).toEqual(want);
    const failing = new Set(result.problems.map((p) => p.file));
    expect(result.libraries.filter((l) => failing.has(l.file))).toEqual([]);
  });
});

describe('compile: FHIR libraries', () => {
  it('compiles FHIRHelpers itself with zero errors and warnings', async () => {
    const result = await compiler.compile([text('cql/FHIRHelpers.cql', readFileSync(join(ROOT, 'cql/FHIRHelpers.cql'), 'utf8'))], []);
    expect(rendered(result)).toEqual([]);
    expect(result.warnings).toEqual([]);
  });

  it('FHIRHelpers defines every conversion the FHIR 4.0.1 model info names', async () => {
    const result = await compiler.compile(cql('basic/ObservationRules.cql'), []);
    const helpers = result.libraries.find((l) => l.name === 'FHIRHelpers');
    expect(helpers?.file).toBe('cql/FHIRHelpers.cql');
    const statements = (helpers?.elm.library as { statements?: { def?: { name: string; type?: string; operand?: { operandTypeSpecifier?: { name?: string } }[] }[] } }).statements?.def ?? [];
    const defined = new Set(statements.filter((s) => s.type === 'FunctionDef').map((s) => `${s.name}(${s.operand?.[0]?.operandTypeSpecifier?.name ?? ''})`));
    const xml = readFileSync(fhirModelInfoPath(), 'utf8');
    const wanted = [...xml.matchAll(/<conversionInfo functionName="FHIRHelpers\.(\w+)" fromType="FHIR\.([\w.]+)"/g)]
      .map((m) => `${m[1]}({http://hl7.org/fhir}${m[2]})`);
    expect(wanted.length).toBeGreaterThan(250);
    expect(wanted.filter((w) => !defined.has(w))).toEqual([]);
  });

  it('compiles a FHIR library using FHIRHelpers implicitly; retrieves carry prefetch metadata', async () => {
    const result = await compiler.compile(cql('basic/ObservationRules.cql'), []);
    expect(rendered(result)).toEqual([]);
    expect(result.libraries.map((l) => `${l.name}@${l.version} ${l.source}`)).toEqual(['FHIRHelpers@4.0.1 cql', 'ObservationRules@1.0.0 cql']);
    const elmText = JSON.stringify(result.libraries[1]?.elm);
    expect(elmText).toContain('"name":"ToQuantity","libraryName":"FHIRHelpers"');
    expect(elmText).toContain('"name":"ToString","libraryName":"FHIRHelpers"');
    expect(elmText).toMatch(/"type":"Retrieve","localId":"\d+","locator":"13:3-13:26","dataType":"\{http:\/\/hl7.org\/fhir\}Observation","templateId":"http:\/\/hl7.org\/fhir\/StructureDefinition\/Observation","codeProperty":"code"/);
    expect(elmText).toContain('"type":"Annotation"');
  });
});

describe.skipIf(!existsSync(ECQM_ELM))('compile: prebuilt eCQM ELM', () => {
  if (!existsSync(ECQM_ELM)) console.warn(`skipped: ${ECQM_ELM} is absent (the shared fixtures are not checked out next to this repo)`);

  it('loads every ELM file with zero problems', async () => {
    const prebuilt = elmFolder(ECQM_ELM);
    const result = await compiler.compile([], prebuilt);
    expect(rendered(result)).toEqual([]);
    expect(result.libraries).toHaveLength(prebuilt.length);
    expect(result.libraries.every((l) => l.source === 'elm')).toBe(true);
  });

  it('a prebuilt include that is not loaded is CQL_INCLUDE with its JSON path', async () => {
    const prebuilt = elmFolder(ECQM_ELM).filter((s) => !s.file.includes('QICoreCommon'));
    const problem = (await compiler.compile([], prebuilt)).problems.find((p) => p.file?.endsWith('Hospice-6.12.000.json'));
    expect(problem && formatProblem({ ...problem, file: 'Hospice-6.12.000.json' })).toBe(
      "Hospice-6.12.000.json $.library.includes.def[1] [CQL_INCLUDE] Library Hospice version '6.12.000' includes QICoreCommon version '2.1.000', which is not loaded.",
    );
  });
});

describe('compile: prebuilt ELM shape', () => {
  const cases = [
    { name: 'not an object', elm: 'nope' as unknown, want: 'elm/bad.json $ [CQL_COMPILE] Not an ELM library document' },
    { name: 'no identifier id', elm: { library: { identifier: {} } } as unknown, want: 'elm/bad.json $.library.identifier.id [CQL_COMPILE] Not an ELM library document' },
  ];
  it.each(cases)('$name', async ({ elm, want }) => {
    const result = await compiler.compile([], [{ file: 'elm/bad.json', elm }]);
    expect(rendered(result)).toHaveLength(1);
    expect(rendered(result)[0]).toContain(want);
  });
});

describe('compile: ELM cache', () => {
  const shared = (answer: number): CqlSource => text('cql/Shared.cql', `library Shared version '1.0.0'\ndefine "Answer": ${answer}`);
  const user = cql('shared/UsesShared.cql')[0] as CqlSource;

  it('a warm start does not recompile; an edited include recompiles its dependents', async () => {
    const cacheDir = join(scratch, 'cache-warm');
    const cold = await createCqlCompiler({ cacheDir }).compile([shared(42), user], []);
    expect(rendered(cold)).toEqual([]);
    expect(cold.stats).toEqual({ translated: ['Shared', 'UsesShared'], cacheHits: [] });

    const warm = await createCqlCompiler({ cacheDir }).compile([shared(42), user], []);
    expect(warm.stats).toEqual({ translated: [], cacheHits: ['Shared', 'UsesShared'] });
    expect(warm.libraries).toEqual(cold.libraries);

    const edited = await createCqlCompiler({ cacheDir }).compile([shared(43), user], []);
    expect(edited.stats).toEqual({ translated: ['Shared', 'UsesShared'], cacheHits: [] });
  });

  it('a warm start never loads the translator (a process whose ELM is cached pays neither its ~0.7 s nor its ~22 MB)', async () => {
    const cacheDir = join(scratch, 'cache-lazy');
    await createCqlCompiler({ cacheDir }).compile([shared(42), user], []);
    // A fresh process: this one has loaded the translator for other tests.
    const script = `
      import { createCqlCompiler } from ${JSON.stringify(join(ROOT, 'src/cql-engine/compiler.ts'))};
      import { translatorRequested } from ${JSON.stringify(join(ROOT, 'src/cql-engine/translator.ts'))};
      const sources = JSON.parse(process.argv[1]);
      const warm = await createCqlCompiler({ cacheDir: ${JSON.stringify(cacheDir)} }).compile(sources, []);
      process.stdout.write(JSON.stringify({ stats: warm.stats, problems: warm.problems.length, requested: translatorRequested() }));`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, JSON.stringify([shared(42), user])], { cwd: ROOT, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ stats: { translated: [], cacheHits: ['Shared', 'UsesShared'] }, problems: 0, requested: false });
  });

  it('a corrupt cache entry is ignored and recompiled', async () => {
    const cacheDir = join(scratch, 'cache-corrupt');
    await createCqlCompiler({ cacheDir }).compile([shared(42), user], []);
    const entries = readdirSync(cacheDir);
    expect(entries).toHaveLength(2);
    const [first, second] = entries as [string, string];
    writeFileSync(join(cacheDir, first), '{"format":"cairn-elm-cache/1", truncated');
    writeFileSync(join(cacheDir, second), JSON.stringify({ format: 'cairn-elm-cache/1', key: 'other', elm: {}, warnings: [] }));

    const result = await createCqlCompiler({ cacheDir }).compile([shared(42), user], []);
    expect(rendered(result)).toEqual([]);
    expect(result.stats.translated).toEqual(['Shared', 'UsesShared']);
    expect(readdirSync(cacheDir).sort()).toEqual([...entries].sort()); // rewritten in place, no temp files left
    expect((await createCqlCompiler({ cacheDir }).compile([shared(42), user], [])).stats.cacheHits).toEqual(['Shared', 'UsesShared']);
  });
});

describe('compiled ELM runs in cql-execution with cql-exec-fhir (R4)', () => {
  const bundle = {
    resourceType: 'Bundle',
    type: 'collection',
    entry: [
      { resource: { resourceType: 'Patient', id: 'p1', birthDate: '1970-01-01' } },
      {
        resource: {
          resourceType: 'Observation',
          id: 'o1',
          status: 'final',
          subject: { reference: 'Patient/p1' },
          code: { coding: [{ system: 'http://loinc.org', code: '2339-0', display: 'Glucose [Mass/volume] in Blood' }], text: 'Blood glucose' },
          effectivePeriod: { start: '2024-03-01T08:00:00Z' },
          valueQuantity: { value: 120, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' },
        },
      },
    ],
  };

  it('evaluates FHIRHelpers conversions', async () => {
    const result = await compiler.compile(cql('exec/Conversions.cql'), []);
    expect(rendered(result)).toEqual([]);
    const main = result.libraries.find((l) => l.name === 'Conversions');
    const repository = new Repository(Object.fromEntries(result.libraries.map((l) => [l.name, l.elm])));
    const executor = new Executor(new Library(main?.elm, repository));
    const patients = PatientSource.FHIRv401();
    patients.loadBundles([bundle]);
    const results = await executor.exec(patients);
    const got = (results.patientResults as Record<string, Record<string, unknown>>).p1 ?? {};

    expect(got['Has High Glucose']).toBe(true); // 120 mg/dL > 5 mg/dL
    expect(got['Has Glucose Above 0.1 g/dL']).toBe(true); // 120 mg/dL = 0.12 g/dL, compared across units
    expect(String(got['Glucose In g/dL'])).toBe("0.12 'g/dL'");
    const period = got['Effective Interval'] as { low: unknown; high: unknown; lowClosed: boolean; highClosed: boolean };
    expect([String(period.low), period.high, period.lowClosed, period.highClosed]).toEqual(['2024-03-01T08:00:00+00:00', null, true, true]);
    expect(got['Effective During 2024']).toBe(false); // an ongoing period ends at the maximum DateTime, not within 2024
    const concept = got['Code Concept'] as { display: string; codes: { code: string; system: string }[] };
    expect([concept.display, concept.codes.map((c) => `${c.system}|${c.code}`)]).toEqual(['Blood glucose', ['http://loinc.org|2339-0']]);
    expect(got['Is Glucose']).toBe(true);
    expect(got['Status String']).toBe('final');
    expect(got['Status Upper']).toBe('FINAL');
  });
});
