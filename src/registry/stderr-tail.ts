/**
 * A child's stderr is always read (an unread pipe stalls the child, sdk-notes.md). The last lines
 * are kept for `server_status`, and lines are passed on to the log at a bounded rate so a child
 * that floods stderr cannot flood the gateway's log.
 *
 * With a redactor, a secret the child writes across a line break (or across the 1000-character
 * cut of a long line) is redacted as a whole: `snapshot()` redacts the kept lines together, and
 * each line waits before it is logged until enough text has followed it to hold the rest of any
 * secret that starts in it (usually just the next line), or until `holdMs` has passed, then is
 * logged redacted together with its neighbours. Still not caught: a secret written in pieces
 * further apart in time than the wait (the earlier piece is logged before the later one arrives),
 * in pieces more than MAX_CONTEXT_LINES lines apart, split across the oldest kept line of the
 * snapshot and lines that fell out of it long ago, or written in pieces on different streams or
 * messages (stdout and stderr, two tool results).
 */

import { StringDecoder } from 'node:string_decoder';
import type { Redactor } from '../secrets/redactor.js';

const MAX_LINE_CHARS = 1_000;
/** A line that reads as an error: `Error: …`, `TypeError: …`, `ModuleNotFoundError`, `fatal:`, `panic:`, `Traceback`. */
const ERROR_LINE = /\b(?:[A-Z]\w{0,40}(?:Error|Exception)|Error|ERROR|error|[Ff]atal|FATAL|panic|Traceback)\b/;

/** The most lines kept only as context of a secret split across lines (bounds memory and work). */
const MAX_CONTEXT_LINES = 64;

/** A line waiting to be logged (`log` false: rate-limited, kept as its neighbours' context), or a note. */
type Held = { readonly seq: number; readonly line: string; readonly log: boolean } | { readonly seq: number; readonly note: string };

/** The bounded, rate-limited, optionally redacted record of one child's stderr. */
export class StderrTail {
  /** The last `keep` lines, raw, after up to MAX_CONTEXT_LINES older ones a secret in them may start in. */
  private readonly lines: string[] = [];
  private partial = '';
  private windowStart = 0;
  private inWindow = 0;
  private suppressed = 0;
  /** Keeps a multi-byte character split between two chunks whole. */
  private readonly decoder = new StringDecoder('utf8');
  /** Characters of context a secret can need on either side of a position (0: no redaction here). */
  private readonly context: number;
  /** Lines not yet passed to `onLine`, oldest first. */
  private readonly held: Held[] = [];
  /** The last lines passed on, raw: the context before the next held one. */
  private readonly passed: string[] = [];
  private seq = 0;
  private timer: NodeJS.Timeout | null = null;
  private firstErrorLine: string | null = null;

  /**
   * Keeps the last `keep` lines and passes lines to `onLine` at most `maxLinesPerSecond` a second
   * (by `now`). With a non-empty `redactor`, lines reach `snapshot()` and `onLine` redacted across
   * line breaks, and each is held up to `holdMs` (at most twice that) waiting for the next.
   */
  constructor(
    private readonly keep: number,
    private readonly onLine: (line: string) => void,
    private readonly maxLinesPerSecond = 20,
    private readonly now: () => number = Date.now,
    private readonly redactor?: Redactor,
    private readonly holdMs = 250,
  ) {
    this.context = redactor && !redactor.empty ? redactor.maxSpan - 1 : 0;
  }

  /** Takes the next chunk of the child's stderr. */
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

  /** The last lines written (oldest first), with an unfinished last line; redacted when a redactor is set. */
  snapshot(): string[] {
    const partial = this.partial.slice(0, MAX_LINE_CHARS + this.context);
    const raw = partial ? [...this.lines, partial] : [...this.lines];
    if (this.context === 0) return raw;
    const shown = Math.min(raw.length, this.keep + (partial ? 1 : 0));
    return this.redactor!.lines(raw)
      .slice(raw.length - shown)
      .map((l) => l.slice(0, MAX_LINE_CHARS));
  }

  /** Passes every held line on now (the child has exited, or the gateway is stopping). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.release(Infinity);
  }

  /**
   * The first line since the server last started that reads as an error (`Error: Cannot find
   * module …`), redacted: what explains a failure is often the first such line, long before the
   * last lines of a stack trace that the tail keeps.
   */
  firstError(): string | null {
    const line = this.firstErrorLine;
    if (line === null) return null;
    return (this.redactor ? this.redactor.text(line) : line).slice(0, MAX_LINE_CHARS);
  }

  /** The server (re)starts: the next error line is the one that explains this run. */
  markStart(): void {
    this.firstErrorLine = null;
  }

  private add(raw: string): void {
    // With a redactor, a line keeps `context` characters past the cut, so that a secret crossing
    // the cut is still found whole; the cut is made after redacting.
    const line = raw.replace(/\r$/, '').slice(0, MAX_LINE_CHARS + this.context);
    if (line.trim() === '') return;
    if (this.firstErrorLine === null && ERROR_LINE.test(line)) this.firstErrorLine = line;
    this.lines.push(line);
    trimOldest(this.lines, this.keep, this.context);
    const now = this.now();
    let note: string | null = null;
    if (now - this.windowStart >= 1_000) {
      if (this.suppressed > 0) note = `(${this.suppressed} more stderr lines not logged)`;
      this.windowStart = now;
      this.inWindow = 0;
      this.suppressed = 0;
    }
    const log = this.inWindow++ < this.maxLinesPerSecond;
    if (!log) this.suppressed++;
    if (this.context === 0) {
      if (note !== null) this.onLine(note);
      if (log) this.onLine(line);
      return;
    }
    if (note !== null) this.held.push({ seq: ++this.seq, note });
    this.held.push({ seq: ++this.seq, line, log });
    this.release(0);
    this.arm();
  }

  /**
   * Passes on, in order, the held lines with seq up to `upTo`, then those after them that have
   * enough text after them (or too many lines) to be redacted as surely as they can be.
   */
  private release(upTo: number): void {
    while (this.held.length > 0) {
      const head = this.held[0]!;
      if ('note' in head) {
        this.held.shift();
        this.onLine(head.note);
        continue;
      }
      let after = 0;
      let lines = 0;
      for (let i = 1; i < this.held.length && after < this.context; i++) {
        const h = this.held[i]!;
        if ('line' in h) {
          after += h.line.length;
          lines++;
        }
      }
      if (head.seq > upTo && after < this.context && lines < MAX_CONTEXT_LINES) return;
      this.held.shift();
      if (head.log) this.onLine(this.redacted(head.line));
      this.passed.push(head.line);
      trimOldest(this.passed, 0, this.context);
    }
  }

  /** `line` (just taken off `held`) redacted with the lines passed before it and those held after it. */
  private redacted(line: string): string {
    const before = this.passed;
    const after: string[] = [];
    let chars = 0;
    for (let i = 0; i < this.held.length && chars < this.context; i++) {
      const h = this.held[i]!;
      if ('line' in h) {
        after.push(h.line);
        chars += h.line.length;
      }
    }
    return this.redactor!.lines([...before, line, ...after])[before.length]!.slice(0, MAX_LINE_CHARS);
  }

  /**
   * Starts the timer that passes on the lines held now, however little has followed them: each
   * waits at least `holdMs` and less than twice that. Unref'd, so it never keeps the gateway up.
   */
  private arm(): void {
    if (this.timer || this.held.length === 0) return;
    const upTo = this.seq;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.release(upTo);
      this.arm();
    }, this.holdMs);
    this.timer.unref();
  }
}

/**
 * Drops the oldest of `lines` beyond the last `keep`, but keeps (up to MAX_CONTEXT_LINES) those a
 * secret reaching into the last `keep` could start in: enough to hold `context` characters.
 */
function trimOldest(lines: string[], keep: number, context: number): void {
  let extra = lines.length - keep;
  if (extra <= 0) return;
  // Characters in the extra lines but the oldest: the context left if the oldest is dropped.
  let rest = 0;
  for (let i = 1; i < extra; i++) rest += lines[i]!.length;
  while (extra > 0 && (rest >= context || extra > MAX_CONTEXT_LINES)) {
    lines.shift();
    extra--;
    if (extra > 0) rest -= lines[0]!.length;
  }
}
