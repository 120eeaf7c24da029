/**
 * Unit tests of the stdio framing (src/transport/json-lines.ts): one JSON message per line, any
 * chunking, CRLF, empty lines, unparsable lines reported and skipped, oversized lines skipped
 * without losing the next line, and the id of a broken line found only at the top level.
 */
import { describe, expect, test } from 'vitest';
import { JsonLineReader, idOfInvalidLine, serializeMessage, type InvalidLine } from '../../src/transport/json-lines.js';

function reader(max = 1024) {
  const messages: unknown[] = [];
  const invalid: InvalidLine[] = [];
  const r = new JsonLineReader(max, { onMessage: (m) => messages.push(m), onInvalid: (i) => invalid.push(i) });
  const push = (...chunks: (string | Buffer)[]) => {
    for (const c of chunks) r.push(typeof c === 'string' ? Buffer.from(c) : c);
  };
  return { r, push, messages, invalid };
}

describe('JsonLineReader', () => {
  test('one message per line, several in one chunk', () => {
    const { push, messages, invalid } = reader();
    push('{"a":1}\n{"b":2}\n');
    expect(messages).toEqual([{ a: 1 }, { b: 2 }]);
    expect(invalid).toEqual([]);
  });

  test('a message split over many chunks, down to single bytes', () => {
    const { push, messages } = reader();
    const line = serializeMessage({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x', arguments: { s: 'héllo ✓' } } });
    const bytes = Buffer.from(line + line);
    for (let i = 0; i < bytes.length; i++) push(bytes.subarray(i, i + 1));
    expect(messages).toHaveLength(2);
    expect(messages[0]).toEqual({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x', arguments: { s: 'héllo ✓' } } });
  });

  test('nothing is delivered before the newline', () => {
    const { push, messages } = reader();
    push('{"a":1}');
    expect(messages).toEqual([]);
    push('\n');
    expect(messages).toEqual([{ a: 1 }]);
  });

  test('CRLF line ends', () => {
    const { push, messages, invalid } = reader();
    push('{"a":1}\r\n{"b":', '2}\r', '\n');
    expect(messages).toEqual([{ a: 1 }, { b: 2 }]);
    expect(invalid).toEqual([]);
    // The CR is not part of the line: a broken line is reported without it.
    push('oops\r\n');
    expect(invalid.map((i) => i.prefix)).toEqual(['oops']);
  });

  test('empty and blank lines are skipped silently', () => {
    const { push, messages, invalid } = reader();
    push('\n\n   \n\r\n{"a":1}\n\n');
    expect(messages).toEqual([{ a: 1 }]);
    expect(invalid).toEqual([]);
  });

  test('a line that is not JSON is reported as a parse error and the next line still parses', () => {
    const { push, messages, invalid } = reader();
    push('Welcome to my server v1\n{"jsonrpc": broken\n{"ok":true}\n');
    expect(messages).toEqual([{ ok: true }]);
    expect(invalid.map((i) => i.kind)).toEqual(['parse', 'parse']);
    expect(invalid[0]!.prefix).toBe('Welcome to my server v1');
    expect(invalid[1]!.kind === 'parse' && invalid[1]!.error.length > 0).toBe(true);
  });

  test('a line over the limit is skipped and the next line still parses', () => {
    const { push, messages, invalid } = reader(100);
    const big = JSON.stringify({ jsonrpc: '2.0', id: 9, result: { text: 'x'.repeat(500) } });
    push(big + '\n{"after":1}\n');
    expect(messages).toEqual([{ after: 1 }]);
    expect(invalid).toHaveLength(1);
    expect(invalid[0]).toMatchObject({ kind: 'oversize', bytes: Buffer.byteLength(big) });
    expect(invalid[0]!.prefix.startsWith('{"jsonrpc":"2.0","id":9')).toBe(true);
  });

  test('an oversized line arriving in many chunks is skipped whole (its rest is not parsed as new lines)', () => {
    const { push, messages, invalid } = reader(100);
    const big = `{"jsonrpc":"2.0","result":{"text":"${'y'.repeat(1000)}"},"id":42}`;
    for (let i = 0; i < big.length; i += 37) push(big.slice(i, i + 37));
    push('\n{"next":2}\n');
    expect(messages).toEqual([{ next: 2 }]);
    expect(invalid).toHaveLength(1);
    expect(invalid[0]).toMatchObject({ kind: 'oversize', bytes: big.length });
    expect(invalid[0]!.tail.endsWith('"id":42}')).toBe(true);
    expect(idOfInvalidLine(invalid[0]!)).toBe(42);
  });

  test('a line of exactly the limit is accepted; one byte more is not', () => {
    const exact = JSON.stringify({ s: 'a'.repeat(50) });
    const ok = reader(exact.length);
    ok.push(exact + '\n');
    expect(ok.messages).toHaveLength(1);
    const over = reader(exact.length - 1);
    over.push(exact + '\n');
    expect(over.messages).toHaveLength(0);
    expect(over.invalid[0]!.kind).toBe('oversize');
  });

  test('reset drops a partial line', () => {
    const { r, push, messages, invalid } = reader();
    push('{"partial":');
    r.reset();
    push('{"fresh":1}\n');
    expect(messages).toEqual([{ fresh: 1 }]);
    expect(invalid).toEqual([]);
  });

  test('serializeMessage writes one line', () => {
    const line = serializeMessage({ jsonrpc: '2.0', method: 'notifications/initialized' });
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
  });
});

describe('idOfInvalidLine', () => {
  const oversize = (text: string): InvalidLine => ({
    kind: 'oversize',
    prefix: text.slice(0, 512),
    tail: text.slice(-512),
    bytes: text.length,
  });

  test('finds a numeric or string id at the end (the SDK writes it last)', () => {
    expect(idOfInvalidLine(oversize(`{"jsonrpc":"2.0","result":{"t":"${'x'.repeat(2000)}"},"id":17}`))).toBe(17);
    expect(idOfInvalidLine(oversize(`{"jsonrpc":"2.0","result":{"t":"${'x'.repeat(2000)}"},"id":"req-\\"7\\""} `))).toBe('req-"7"');
    expect(idOfInvalidLine(oversize(`{"jsonrpc":"2.0","result":{},"id":-3}`))).toBe(-3);
  });

  test('finds an id at the start', () => {
    expect(idOfInvalidLine(oversize(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"t":"${'x'.repeat(2000)}"`))).toBe(5);
    expect(idOfInvalidLine(oversize(`{"id":"abc","jsonrpc":"2.0","params":{"t":"${'x'.repeat(2000)}`))).toBe('abc');
    expect(idOfInvalidLine(oversize(`  { "id" : 8 , "x": 1`))).toBe(8);
  });

  test('does not take an id nested in params or result', () => {
    expect(idOfInvalidLine(oversize(`{"jsonrpc":"2.0","result":{"items":[{"id":99}]},"x":1`))).toBeUndefined();
    expect(idOfInvalidLine(oversize(`{"jsonrpc":"2.0","result":{"item":{"id":99}}}`))).toBeUndefined();
    expect(idOfInvalidLine(oversize(`{"jsonrpc":"2.0","method":"x","params":{"id":3,"t":"${'x'.repeat(2000)}"}}`))).toBeUndefined();
    expect(idOfInvalidLine(oversize(`{"jsonrpc":"2.0","result":{"text":"\\"id\\":5}"}}`))).toBeUndefined();
  });

  test('no id at all', () => {
    expect(idOfInvalidLine(oversize('x'.repeat(3000)))).toBeUndefined();
    expect(idOfInvalidLine({ kind: 'parse', prefix: 'garbage', tail: 'garbage', error: 'Unexpected token' })).toBeUndefined();
  });
});
