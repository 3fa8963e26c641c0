/**
 * The CQL System model (CQL spec §Appendix: Types) as model-info XML, which the in-process
 * compiler needs registered before it can resolve any library. Built from a table so every
 * type is listed once and the XML cannot drift from it.
 */
type Element = readonly [name: string, type: string, list?: 'list'];
type TypeInfo = readonly [name: string, base: string | null, elements?: readonly Element[], abstract?: boolean];

const SYSTEM_TYPES: readonly TypeInfo[] = [
  ['Any', null],
  ['Boolean', 'Any'],
  ['Integer', 'Any'],
  ['Long', 'Any'],
  ['Decimal', 'Any'],
  ['String', 'Any'],
  ['Date', 'Any'],
  ['DateTime', 'Any'],
  ['Time', 'Any'],
  ['Quantity', 'Any', [['value', 'Decimal'], ['unit', 'String']]],
  ['Ratio', 'Any', [['numerator', 'Quantity'], ['denominator', 'Quantity']]],
  ['Code', 'Any', [['code', 'String'], ['display', 'String'], ['system', 'String'], ['version', 'String']]],
  ['Concept', 'Any', [['codes', 'Code', 'list'], ['display', 'String']]],
  ['Vocabulary', 'Any', [['id', 'String'], ['version', 'String'], ['name', 'String']], true],
  ['ValueSet', 'Vocabulary', [['codesystems', 'CodeSystem', 'list']]],
  ['CodeSystem', 'Vocabulary', []],
];

function elementXml([name, type, list]: Element): string {
  if (list) {
    return `    <element name="${name}"><elementTypeSpecifier xsi:type="ListTypeSpecifier" elementType="System.${type}"/></element>`;
  }
  return `    <element name="${name}" elementType="System.${type}"/>`;
}

function typeInfoXml([name, base, elements, abstract]: TypeInfo): string {
  const baseAttr = base ? ` baseType="System.${base}"` : '';
  if (!elements) return `  <typeInfo xsi:type="SimpleTypeInfo" name="System.${name}"${baseAttr}/>`;
  const abstractAttr = abstract ? ' abstract="true"' : '';
  const body = elements.map(elementXml).join('\n');
  return [
    `  <typeInfo xsi:type="ClassInfo" namespace="System" name="${name}"${baseAttr}${abstractAttr} retrievable="false">`,
    body,
    '  </typeInfo>',
  ].filter((line) => line !== '').join('\n');
}

/** SYSTEM_MODEL_INFO_XML is the System model info the compiler resolves `System` (version 1.0.0) to. */
export const SYSTEM_MODEL_INFO_XML = [
  '<?xml version="1.0" encoding="UTF-8"?>',
  '<modelInfo xmlns="urn:hl7-org:elm-modelinfo:r1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"',
  '  name="System" version="1.0.0" url="urn:hl7-org:elm-types:r1" targetQualifier="system">',
  ...SYSTEM_TYPES.map(typeInfoXml),
  '</modelInfo>',
].join('\n');
