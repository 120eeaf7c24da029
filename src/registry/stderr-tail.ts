/**
 * A child's stderr is always read (an unread pipe stalls the child, sdk-notes.md). The last lines
 * are kept for `server_status`, and lines are passed on to the log at a bounded rate so a child
 * that floods stderr cannot flood the gateway's log.
 */

import { StringDecoder } from 'node:string_decoder';

const MAX_LINE_CHARS = 1_000;

export class StderrTail {
  private readonly lines: string[] = [];
  private partial = '';
  private windowStart = 0;
  private inWindow = 0;
  private suppressed = 0;
  /** Keeps a multi-byte character split between two chunks whole. */
  private readonly decoder = new StringDecoder('utf8');

  constructor(
    private readonly keep: number,
    private readonly onLine: (line: string) => void,
    private readonly maxLinesPerSecond = 20,
    private readonly now: () => number = Date.now,
  ) {}

  push(chunk: Buffer): void {
    const text = this.partial + this.decoder.write(chunk);
    const parts = text.split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.add(line);
    // After the complete lines it follows, so the tail keeps the child's order.
    if (this.partial.length > MAX_LINE_CHARS) {
      this.add(this.partial);
      this.partial = '';
    }
  }

  /** The last lines written (oldest first). */
  snapshot(): string[] {
    return this.partial ? [...this.lines, this.partial.slice(0, MAX_LINE_CHARS)] : [...this.lines];
  }

  private add(raw: string): void {
    const line = raw.replace(/\r$/, '').slice(0, MAX_LINE_CHARS);
    if (line.trim() === '') return;
    this.lines.push(line);
    if (this.lines.length > this.keep) this.lines.shift();
    const now = this.now();
    if (now - this.windowStart >= 1_000) {
      if (this.suppressed > 0) this.onLine(`(${this.suppressed} more stderr lines not logged)`);
      this.windowStart = now;
      this.inWindow = 0;
      this.suppressed = 0;
    }
    if (this.inWindow++ < this.maxLinesPerSecond) this.onLine(line);
    else this.suppressed++;
  }
}
