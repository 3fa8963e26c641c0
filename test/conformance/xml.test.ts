import { describe, expect, it } from 'vitest';
import { childElements, parseXml, textContent, XmlSyntaxError } from '../../scripts/cql-conformance/xml.ts';

describe('parseXml', () => {
  it('reads elements, attributes, text and drops namespace prefixes and declarations', () => {
    const root = parseXml(
      '<?xml version="1.0"?>\n<t:tests xmlns:t="urn:x" xmlns="urn:y" name="S" t:flag=\'on\'><group name="G"/></t:tests>',
    );
    expect(root.name).toBe('tests');
    expect(root.attributes).toEqual({ name: 'S', flag: 'on' });
    expect(childElements(root, 'group').map((g) => g.attributes['name'])).toEqual(['G']);
  });

  const texts = [
    { name: 'entities', input: '<e>1 &lt; 2 &amp;&amp; 3 &gt; 2 &quot;&apos;</e>', want: '1 < 2 && 3 > 2 "\'' },
    { name: 'character references', input: '<e>&#65;&#x42;</e>', want: 'AB' },
    { name: 'CDATA kept verbatim', input: '<e><![CDATA[a < b & c]]></e>', want: 'a < b & c' },
    { name: 'comments dropped, even around a commented-out test', input: '<e>a<!-- <test name="x"/> -->b</e>', want: 'ab' },
    { name: 'multi-line text kept as is', input: '<e>\n  x\n  y\n</e>', want: '\n  x\n  y\n' },
  ];
  for (const { name, input, want } of texts) {
    it(`decodes text: ${name}`, () => {
      expect(textContent(parseXml(input))).toBe(want);
    });
  }

  const malformed = [
    { name: 'mismatched closing tag', input: '<a><b></a>', line: 1 },
    { name: 'unclosed element', input: '<a>\n<b/>', line: 2 },
    { name: 'unknown entity', input: '<a>&nbsp;</a>', line: 1 },
    { name: 'duplicate attribute', input: '<a x="1" x="2"/>', line: 1 },
    { name: 'unquoted attribute', input: '<a x=1/>', line: 1 },
    { name: 'content after the root', input: '<a/>\n<b/>', line: 2 },
    { name: 'DOCTYPE', input: '<!DOCTYPE a><a/>', line: 1 },
  ];
  for (const { name, input, line } of malformed) {
    it(`rejects ${name} with its line`, () => {
      expect(() => parseXml(input)).toThrow(XmlSyntaxError);
      try {
        parseXml(input);
      } catch (error) {
        expect((error as XmlSyntaxError).line).toBe(line);
      }
    });
  }
});
