/**
 * The cql-tests file format (tests/testSchema.xsd, namespace http://hl7.org/fhirpath/tests) read
 * into plain records: suite -> group -> test, each test with its expression text, the kind of
 * failure it expects, and its expected outputs as CQL text.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { childElements, parseXml, textContent, type XmlElement } from './xml.ts';

/** What a test expects: a value, a runtime error, or a compile-time (semantic/syntax) error. */
export type Expectation = 'value' | 'runtime-error' | 'semantic-error' | 'syntax-error';

export interface ConformanceTest {
  /** id is `<suite>/<group>/<test>`, the key used by the skip list. */
  readonly id: string;
  readonly suite: string;
  readonly group: string;
  readonly name: string;
  readonly expression: string;
  readonly expectation: Expectation;
  /** outputs are CQL expressions whose values the expression must equal (usually exactly one). */
  readonly outputs: readonly string[];
  /** ordered is false when the test allows list results in any order (schema `ordered`). */
  readonly ordered: boolean;
}

export interface ConformanceGroup {
  readonly name: string;
  readonly tests: readonly ConformanceTest[];
}

export interface ConformanceSuite {
  readonly name: string;
  readonly file: string;
  readonly groups: readonly ConformanceGroup[];
}

const INVALID_TO_EXPECTATION: Readonly<Record<string, Expectation>> = {
  false: 'value',
  true: 'runtime-error',
  execution: 'runtime-error',
  semantic: 'semantic-error',
  syntax: 'syntax-error',
};

function single(parent: XmlElement, name: string, where: string): XmlElement {
  const found = childElements(parent, name);
  if (found.length !== 1 || !found[0]) throw new Error(`${where}: expected one <${name}>, found ${found.length}`);
  return found[0];
}

function readTest(element: XmlElement, suite: string, group: string): ConformanceTest {
  const name = element.attributes['name'];
  if (!name) throw new Error(`${suite}/${group}: <test> without a name`);
  const id = `${suite}/${group}/${name}`;
  const expression = single(element, 'expression', id);
  const invalid = expression.attributes['invalid'] ?? 'false';
  const expectation = INVALID_TO_EXPECTATION[invalid];
  if (!expectation) throw new Error(`${id}: unknown invalid="${invalid}"`);
  return {
    id,
    suite,
    group,
    name,
    expression: textContent(expression).trim(),
    expectation,
    outputs: childElements(element, 'output').map((o) => textContent(o).trim()),
    ordered: element.attributes['ordered'] !== 'false',
  };
}

/** parseSuite reads one test file's text; `file` is used for the suite name fallback and messages. */
export function parseSuite(xml: string, file: string): ConformanceSuite {
  const root = parseXml(xml);
  if (root.name !== 'tests') throw new Error(`${file}: root element is <${root.name}>, expected <tests>`);
  const suite = root.attributes['name'] ?? path.basename(file, '.xml');
  const groups = childElements(root, 'group').map((g): ConformanceGroup => {
    const name = g.attributes['name'];
    if (!name) throw new Error(`${file}: <group> without a name`);
    return { name, tests: childElements(g, 'test').map((t) => readTest(t, suite, name)) };
  });
  const ids = new Set<string>();
  for (const test of groups.flatMap((g) => g.tests)) {
    if (ids.has(test.id)) throw new Error(`${file}: duplicate test id ${test.id}`);
    ids.add(test.id);
  }
  return { name: suite, file: path.basename(file), groups };
}

/** loadSuites parses every *.xml file in `dir`, sorted by file name. */
export function loadSuites(dir: string): ConformanceSuite[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.xml'))
    .sort()
    .map((f) => parseSuite(readFileSync(path.join(dir, f), 'utf8'), f));
}
