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
}

class StderrLogger implements Logger {
  constructor(
    protected readonly state: { level: number; redactor: Redactor; sink: LogSink },
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
    const scope = this.scope ? ` [${this.scope}]` : '';
    const text = this.state.redactor.text(message).replace(/\r?\n/g, '\n    ');
    this.state.sink.write(`${new Date().toISOString()} mcp-gateway ${level}${scope} ${text}\n`);
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
  const name = (options.level ?? process.env['MCP_GATEWAY_LOG_LEVEL'] ?? 'info').toLowerCase();
  const level = name in ORDER ? ORDER[name as LogLevel] : ORDER.info;
  const state = { level, redactor: options.redactor ?? new Redactor([]), sink: options.sink ?? process.stderr };
  return new RootLogger(state, '');
}

/** A logger that writes nothing (tests, library use). */
export const silentLogger: Logger = createLogger({ level: 'silent' });
