/**
 * The gateway's log: one line per event on stderr (stdout carries only MCP messages in stdio
 * mode), every line passed through the redactor. Level from MCP_GATEWAY_LOG_LEVEL, else the
 * config's `log.level` (debug | info | warn | error | silent; default info). `log.format: json`
 * (or MCP_GATEWAY_LOG_FORMAT=json) writes one JSON object a line, for log collectors.
 */
import { Redactor } from './secrets/redactor.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFormat = 'text' | 'json';
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
  format: LogFormat;
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
      state.sink.write(line(state.format, now, 'warn', '', `${state.dropped} log lines dropped: stderr was not being read`));
      state.dropped = 0;
    }
    state.sink.write(line(state.format, now, level, this.scope, state.redactor.text(message)));
  }
}

/** One log line: `<time> mcp-gateway <level> [scope] <text>`, or a JSON object. */
function line(format: LogFormat, time: string, level: LogLevel, scope: string, text: string): string {
  if (format === 'json')
    return `${JSON.stringify(scope ? { time, level, service: 'mcp-gateway', scope, msg: text } : { time, level, service: 'mcp-gateway', msg: text })}\n`;
  return `${time} mcp-gateway ${level}${scope ? ` [${scope}]` : ''} ${text.replace(/\r?\n/g, '\n    ')}\n`;
}

/** The process's logger; its redactor is set once the config (and so the secrets) are known. */
export class RootLogger extends StderrLogger {
  /** Redact with `redactor` in every later line. */
  setRedactor(redactor: Redactor): void {
    this.state.redactor = redactor;
  }

  /** The format lines are written in. */
  get format(): LogFormat {
    return this.state.format;
  }

  /**
   * Applies the config's `log` section once it is loaded: its level unless MCP_GATEWAY_LOG_LEVEL
   * chose one, its format unless MCP_GATEWAY_LOG_FORMAT did.
   */
  configure(config: { level?: LogLevel | undefined; format?: LogFormat | undefined }, env: NodeJS.ProcessEnv = process.env): void {
    if (config.level !== undefined && !env['MCP_GATEWAY_LOG_LEVEL']?.trim()) this.state.level = ORDER[config.level];
    if (config.format !== undefined && !env['MCP_GATEWAY_LOG_FORMAT']?.trim()) this.state.format = config.format;
  }
}

export function createLogger(options: { level?: string | undefined; sink?: LogSink; redactor?: Redactor } = {}): RootLogger {
  const name = (options.level ?? process.env['MCP_GATEWAY_LOG_LEVEL'] ?? '').toLowerCase().trim() || 'info';
  const known = Object.hasOwn(ORDER, name);
  const formatName = (process.env['MCP_GATEWAY_LOG_FORMAT'] ?? '').toLowerCase().trim() || 'text';
  const state: LogState = {
    level: known ? ORDER[name as LogLevel] : ORDER.info,
    format: formatName === 'json' ? 'json' : 'text',
    redactor: options.redactor ?? new Redactor([]),
    sink: options.sink ?? process.stderr,
    dropped: 0,
  };
  const logger = new RootLogger(state, '');
  if (!known) logger.warn(`MCP_GATEWAY_LOG_LEVEL "${name}" is not a level (${Object.keys(ORDER).join(', ')}); logging at info`);
  if (formatName !== 'json' && formatName !== 'text')
    logger.warn(`MCP_GATEWAY_LOG_FORMAT "${formatName}" is not a format (text, json); logging as text`);
  return logger;
}

/** A logger that writes nothing (tests, library use). */
export const silentLogger: Logger = createLogger({ level: 'silent' });
