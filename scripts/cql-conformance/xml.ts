/**
 * A small, strict XML reader for the cql-tests files: elements, attributes, text, entity and
 * character references, comments, CDATA and processing instructions. Namespace prefixes are
 * dropped from names (the suite uses one default namespace). No DTDs: a DOCTYPE is rejected
 * rather than half-understood.
 */

export interface XmlElement {
  readonly name: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly children: readonly XmlNode[];
}

export type XmlNode = XmlElement | string;

/** XmlSyntaxError is thrown by parseXml with the 1-based line of the problem. */
export class XmlSyntaxError extends Error {
  constructor(message: string, readonly line: number) {
    super(`${message} (line ${line})`);
    this.name = 'XmlSyntaxError';
  }
}

const NAMED_ENTITIES: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

class Reader {
  pos = 0;
  constructor(readonly text: string) {}

  fail(message: string): never {
    const line = this.text.slice(0, this.pos).split('\n').length;
    throw new XmlSyntaxError(message, line);
  }

  startsWith(s: string): boolean {
    return this.text.startsWith(s, this.pos);
  }

  expect(s: string): void {
    if (!this.startsWith(s)) this.fail(`expected '${s}'`);
    this.pos += s.length;
  }

  skipUntil(end: string): string {
    const at = this.text.indexOf(end, this.pos);
    if (at < 0) this.fail(`unterminated construct, missing '${end}'`);
    const body = this.text.slice(this.pos, at);
    this.pos = at + end.length;
    return body;
  }

  skipSpace(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos] ?? '')) this.pos++;
  }

  readName(): string {
    const match = /^[A-Za-z_:][\w.:-]*/.exec(this.text.slice(this.pos, this.pos + 200));
    if (!match) this.fail('expected a name');
    this.pos += match[0].length;
    return match[0];
  }
}

/** decodeEntities replaces the five XML entities and numeric character references. */
export function decodeEntities(raw: string, onError: (message: string) => never): string {
  return raw.replace(/&([^;\s&]*);?/g, (whole, ref: string) => {
    if (!whole.endsWith(';')) onError(`unterminated reference '${whole}'`);
    if (ref.startsWith('#x')) return String.fromCodePoint(parseInt(ref.slice(2), 16));
    if (ref.startsWith('#')) return String.fromCodePoint(parseInt(ref.slice(1), 10));
    const named = NAMED_ENTITIES[ref];
    if (named === undefined) onError(`unknown entity '&${ref};'`);
    return named;
  });
}

function localName(qualified: string): string {
  const colon = qualified.indexOf(':');
  return colon < 0 ? qualified : qualified.slice(colon + 1);
}

/** Skips comments, processing instructions and whitespace outside the root element. */
function skipMisc(r: Reader): void {
  for (;;) {
    r.skipSpace();
    if (r.startsWith('<!--')) {
      r.pos += 4;
      r.skipUntil('-->');
    } else if (r.startsWith('<?')) {
      r.pos += 2;
      r.skipUntil('?>');
    } else if (r.startsWith('<!DOCTYPE')) {
      r.fail('DOCTYPE is not supported');
    } else {
      return;
    }
  }
}

function readAttributes(r: Reader): Record<string, string> {
  const attributes: Record<string, string> = {};
  for (;;) {
    r.skipSpace();
    if (r.startsWith('/>') || r.startsWith('>')) return attributes;
    const name = r.readName();
    r.skipSpace();
    r.expect('=');
    r.skipSpace();
    const quote = r.text[r.pos];
    if (quote !== '"' && quote !== "'") r.fail(`attribute '${name}' value must be quoted`);
    r.pos++;
    const raw = r.skipUntil(quote);
    if (raw.includes('<')) r.fail(`'<' in value of attribute '${name}'`);
    // Namespace declarations are not data for this reader.
    if (name === 'xmlns' || name.startsWith('xmlns:')) continue;
    const key = localName(name);
    if (key in attributes) r.fail(`duplicate attribute '${name}'`);
    attributes[key] = decodeEntities(raw, (m) => r.fail(m));
  }
}

function readElement(r: Reader): XmlElement {
  r.expect('<');
  const qualified = r.readName();
  const attributes = readAttributes(r);
  if (r.startsWith('/>')) {
    r.pos += 2;
    return { name: localName(qualified), attributes, children: [] };
  }
  r.expect('>');
  const children: XmlNode[] = [];
  let text = '';
  const flushText = (): void => {
    if (text !== '') children.push(text);
    text = '';
  };
  for (;;) {
    if (r.pos >= r.text.length) r.fail(`element <${qualified}> is not closed`);
    if (r.startsWith('</')) {
      r.pos += 2;
      const closing = r.readName();
      if (closing !== qualified) r.fail(`expected </${qualified}> but found </${closing}>`);
      r.skipSpace();
      r.expect('>');
      flushText();
      return { name: localName(qualified), attributes, children };
    }
    if (r.startsWith('<!--')) {
      r.pos += 4;
      r.skipUntil('-->');
    } else if (r.startsWith('<![CDATA[')) {
      r.pos += 9;
      text += r.skipUntil(']]>');
    } else if (r.startsWith('<?')) {
      r.pos += 2;
      r.skipUntil('?>');
    } else if (r.startsWith('<')) {
      flushText();
      children.push(readElement(r));
    } else {
      const next = r.text.indexOf('<', r.pos);
      const end = next < 0 ? r.text.length : next;
      text += decodeEntities(r.text.slice(r.pos, end), (m) => r.fail(m));
      r.pos = end;
    }
  }
}

/** parseXml parses a whole document and returns its root element; throws XmlSyntaxError. */
export function parseXml(text: string): XmlElement {
  const r = new Reader(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  skipMisc(r);
  if (!r.startsWith('<')) r.fail('expected the root element');
  const root = readElement(r);
  skipMisc(r);
  if (r.pos < r.text.length) r.fail('content after the root element');
  return root;
}

/** childElements returns the element children of `element`, optionally only those named `name`. */
export function childElements(element: XmlElement, name?: string): XmlElement[] {
  return element.children.filter(
    (c): c is XmlElement => typeof c !== 'string' && (name === undefined || c.name === name),
  );
}

/** textContent concatenates the text of `element` and its descendants. */
export function textContent(element: XmlElement): string {
  return element.children.map((c) => (typeof c === 'string' ? c : textContent(c))).join('');
}
