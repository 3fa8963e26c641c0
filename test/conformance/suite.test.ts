import { describe, expect, it } from 'vitest';
import { parseSuite } from '../../scripts/cql-conformance/suite.ts';

const SUITE = `<?xml version="1.0" encoding="utf-8"?>
<tests xmlns="http://hl7.org/fhirpath/tests" name="TinyTest" version="1.0">
  <capability code="arithmetic-operators"/>
  <group name="Add" version="1.0">
    <test name="AddNull"><expression>1 + null</expression><output>null</output></test>
    <!-- <test name="Hidden"><expression>1</expression><output>1</output></test> -->
    <test name="Overflow"><expression invalid="true">maximum Integer + 1</expression></test>
    <test name="Bad" ordered="false"><expression invalid="semantic">1 + 'a'</expression></test>
    <test name="Syntax"><expression invalid="syntax">1 +</expression><output>null</output></test>
    <test name="Compare"><expression>2 &gt; 1</expression><output>true</output></test>
  </group>
</tests>`;

describe('parseSuite', () => {
  const suite = parseSuite(SUITE, 'TinyTest.xml');
  const tests = suite.groups.flatMap((g) => g.tests);

  it('reads every test that is not commented out, with ids suite/group/test', () => {
    expect(suite.name).toBe('TinyTest');
    expect(tests.map((t) => t.id)).toEqual([
      'TinyTest/Add/AddNull',
      'TinyTest/Add/Overflow',
      'TinyTest/Add/Bad',
      'TinyTest/Add/Syntax',
      'TinyTest/Add/Compare',
    ]);
  });

  it('maps invalid= to what the test expects', () => {
    expect(tests.map((t) => t.expectation)).toEqual(['value', 'runtime-error', 'semantic-error', 'syntax-error', 'value']);
  });

  it('keeps expressions and outputs as CQL text, decoded and trimmed', () => {
    const compare = tests.find((t) => t.name === 'Compare');
    expect(compare?.expression).toBe('2 > 1');
    expect(compare?.outputs).toEqual(['true']);
    expect(tests.find((t) => t.name === 'Overflow')?.outputs).toEqual([]);
  });

  it('reads ordered="false"', () => {
    expect(tests.map((t) => t.ordered)).toEqual([true, true, false, true, true]);
  });

  it('rejects an unknown invalid= value and duplicate test ids', () => {
    expect(() => parseSuite(SUITE.replace('invalid="true"', 'invalid="maybe"'), 'x.xml')).toThrow(/unknown invalid="maybe"/);
    expect(() => parseSuite(SUITE.replace('name="Compare"', 'name="AddNull"'), 'x.xml')).toThrow(/duplicate test id/);
  });
});
