/**
 * The gateway's log: one line per event on stderr (stdout carries only MCP messages in stdio
 * mode), every line passed through the redactor. Level from MCP_GATEWAY_LOG_LEVEL
 * (debug | info | warn | error | silent; default info).
 */
import { Redactor } from './secrets/redactor.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  /** A logger whose lines carry `[scope]`. */
  scoped(scope: string): Logger;
  /** Whether a line at `level` would be written (to skip building costly messages). */
  enabled(level: LogLevel): boolean;
}

export interface LogSink {
  write(line: string): unknown;
  /** Bytes written and not yet taken by the reader (a stream's writableLength). */
  readonly writableLength?: number;
}

/** Unread log output above which lines are dropped (and their number logged once it drains). */
const MAX_UNREAD_LOG_BYTES = 4 * 1024 * 1024;

interface LogState {
  level: number;
  redactor: Redactor;
  sink: LogSink;
  dropped: number;
}

class StderrLogger implements Logger {
  constructor(
    protected readonly state: LogState,
    private readonly scope: string,
  ) {}

  debug(message: string): void {
    this.log('debug', message);
  }
  info(message: string): void {
    this.log('info', message);
  }
  warn(message: string): void {
    this.log('warn', message);
  }
  error(message: string): void {
    this.log('error', message);
  }
  scoped(scope: string): Logger {
    return new StderrLogger(this.state, scope);
  }
  enabled(level: LogLevel): boolean {
    return ORDER[level] >= this.state.level;
  }

  private log(level: LogLevel, message: string): void {
    if (ORDER[level] < this.state.level) return;
    const state = this.state;
    // Whoever reads the gateway's stderr may stop reading; then lines are counted, not queued.
    if ((state.sink.writableLength ?? 0) > MAX_UNREAD_LOG_BYTES) {
      state.dropped++;
      return;
    }
    const now = new Date().toISOString();
    if (state.dropped > 0) {
      state.sink.write(`${now} mcp-gateway warn ${state.dropped} log lines dropped: stderr was not being read\n`);
      state.dropped = 0;
    }
    const scope = this.scope ? ` [${this.scope}]` : '';
    const text = state.redactor.text(message).replace(/\r?\n/g, '\n    ');
    state.sink.write(`${now} mcp-gateway ${level}${scope} ${text}\n`);
  }
}

/** The process's logger; its redactor is set once the config (and so the secrets) are known. */
export class RootLogger extends StderrLogger {
  /** Redact with `redactor` in every later line. */
  setRedactor(redactor: Redactor): void {
    this.state.redactor = redactor;
  }
}

export function createLogger(options: { level?: string | undefined; sink?: LogSink; redactor?: Redactor } = {}): RootLogger {
  const name = (options.level ?? process.env['MCP_GATEWAY_LOG_LEVEL'] ?? 'info').toLowerCase().trim();
  const known = Object.hasOwn(ORDER, name);
  const state: LogState = {
    level: known ? ORDER[name as LogLevel] : ORDER.info,
    redactor: options.redactor ?? new Redactor([]),
    sink: options.sink ?? process.stderr,
    dropped: 0,
  };
  const logger = new RootLogger(state, '');
  if (!known) logger.warn(`MCP_GATEWAY_LOG_LEVEL "${name}" is not a level (${Object.keys(ORDER).join(', ')}); logging at info`);
  return logger;
}

/** A logger that writes nothing (tests, library use). */
export const silentLogger: Logger = createLogger({ level: 'silent' });
