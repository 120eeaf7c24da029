/**
 * The stdio framing of MCP (one JSON-RPC message per line, as the SDK's `ReadBuffer` /
 * `serializeMessage`), with two things the SDK's reader lacks and a gateway needs:
 * - linear cost for large lines (the SDK concatenates the whole buffer on every chunk, which is
 *   quadratic for a 100 MB line), and
 * - a size limit that skips the one oversized line and carries on with the next, instead of
 *   clearing the buffer mid-line and parsing the rest of that line as garbage.
 */
import { serializeMessage } from '@modelcontextprotocol/server';

export { serializeMessage };

const NEWLINE = 0x0a;
/** How much of an oversized or unparsable line is kept to report (and to find its id). */
const PREFIX_BYTES = 512;

export type InvalidLine =
  | { readonly kind: 'parse'; readonly prefix: string; readonly tail: string; readonly error: string }
  | { readonly kind: 'oversize'; readonly prefix: string; readonly tail: string; readonly bytes: number }
  | { readonly kind: 'depth'; readonly prefix: string; readonly tail: string; readonly message: unknown };

/**
 * How deeply a message may nest. JSON.parse accepts any depth, but JSON.stringify (which sends
 * every message on, and writes the audit row) overflows the stack at a few thousand levels: a
 * deeper message could not be relayed or recorded, so it is refused where it arrives.
 */
export const MAX_DEPTH = 128;

export interface JsonLineHandlers {
  /** A line that parsed as JSON (not yet checked to be JSON-RPC). */
  onMessage(message: unknown): void;
  /** A line that was not JSON, or exceeded the limit; the reader has skipped it. */
  onInvalid(invalid: InvalidLine): void;
}

export class JsonLineReader {
  private chunks: Buffer[] = [];
  private pending = 0;
  /** While skipping an oversized line: its first and last bytes, and the bytes seen so far. */
  private skipping: { prefix: string; tail: Buffer; bytes: number } | null = null;

  constructor(
    private readonly maxLineBytes: number,
    private readonly handlers: JsonLineHandlers,
    private readonly maxDepth = MAX_DEPTH,
  ) {}

  /** Feeds a chunk read from the stream; calls the handlers for every complete line in it. */
  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl === -1 ? chunk.length : nl;
      if (nl !== -1 && this.pending === 0 && this.chunks.length === 0 && !this.skipping && end - start <= this.maxLineBytes) {
        // The common case, a whole line inside this chunk: decoded in place, no copy.
        this.parseLine(chunk.toString('utf8', start, end));
        start = nl + 1;
        continue;
      }
      if (this.skipping) {
        this.skipping.bytes += end - start;
        this.skipping.tail = lastBytes(Buffer.concat([this.skipping.tail, chunk.subarray(start, end)]));
      } else if (this.pending + (end - start) > this.maxLineBytes) {
        const line = Buffer.concat([...this.chunks, chunk.subarray(start, end)]);
        this.skipping = {
          prefix: line.subarray(0, PREFIX_BYTES).toString('utf8'),
          tail: lastBytes(line),
          bytes: line.length,
        };
        this.chunks = [];
        this.pending = 0;
      } else if (end > start || nl !== -1) {
        this.chunks.push(chunk.subarray(start, end));
        this.pending += end - start;
      }
      if (nl === -1) return;
      this.endLine();
      start = nl + 1;
    }
  }

  /** Drops a partial line (the stream ended or restarted). */
  reset(): void {
    this.chunks = [];
    this.pending = 0;
    this.skipping = null;
  }

  private endLine(): void {
    if (this.skipping) {
      const { prefix, tail, bytes } = this.skipping;
      this.skipping = null;
      this.handlers.onInvalid({ kind: 'oversize', prefix, tail: tail.toString('utf8'), bytes });
      return;
    }
    const line = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.pending);
    this.chunks = [];
    this.pending = 0;
    this.parseLine(line.toString('utf8'));
  }

  private parseLine(text: string): void {
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (text.trim() === '') return;
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch (err) {
      this.handlers.onInvalid({
        kind: 'parse',
        prefix: text.slice(0, PREFIX_BYTES),
        tail: text.slice(-PREFIX_BYTES),
        error: (err as Error).message,
      });
      return;
    }
    // A message can nest no deeper than half its length: short lines need no walk.
    if (text.length > 2 * this.maxDepth && depthExceeds(message, this.maxDepth)) {
      this.handlers.onInvalid({ kind: 'depth', prefix: text.slice(0, PREFIX_BYTES), tail: text.slice(-PREFIX_BYTES), message });
      return;
    }
    this.handlers.onMessage(message);
  }
}

/** Whether `value` nests more than `max` levels of arrays/objects (iterative: no recursion). */
export function depthExceeds(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, d + 1]);
    }
  }
  return false;
}

function lastBytes(buf: Buffer): Buffer {
  return buf.length > PREFIX_BYTES ? Buffer.from(buf.subarray(buf.length - PREFIX_BYTES)) : buf;
}

const ID = String.raw`(-?\d+|"(?:[^"\\]|\\.){0,200}")`;
const ID_AT_END = new RegExp(String.raw`"id"\s*:\s*` + ID + String.raw`\s*\}\s*$`);
const ID_AT_START = new RegExp(String.raw`^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*` + ID + String.raw`\s*[,}]`);

/**
 * The JSON-RPC id of an oversized or broken line, where it can be read at the line's end (the SDK
 * writes `id` last) or start, so the request it answers (or asked) can be failed at once instead of
 * waiting for a timeout. Only top-level positions are read, never an "id" nested in params.
 */
export function idOfInvalidLine(invalid: InvalidLine): string | number | undefined {
  if (invalid.kind === 'depth') {
    const id = (invalid.message as { id?: unknown } | null)?.id;
    return typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id)) ? id : undefined;
  }
  const m = ID_AT_END.exec(invalid.tail) ?? ID_AT_START.exec(invalid.prefix);
  if (!m) return undefined;
  try {
    return JSON.parse(m[1]!) as string | number;
  } catch {
    return undefined;
  }
}
