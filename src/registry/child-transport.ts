/**
 * An MCP client Transport over a child process's stdio, in place of the SDK's
 * `StdioClientTransport`, for what that one cannot do (sdk-notes.md): the child runs in its own
 * process group (so an `npx` wrapper and its grandchildren are signalled together), its exit code
 * and signal are kept, stderr is always drained, and the line framing is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { JSONRPCMessage, Transport } from '@modelcontextprotocol/client';
import { JsonLineReader, MAX_DEPTH, idOfInvalidLine, serializeMessage, type InvalidLine } from '../transport/json-lines.js';
import { WriteBatcher } from '../transport/write-batcher.js';
import type { GroupWatcher } from './reaper.js';
import { resolveCommand } from './sandbox.js';

export interface ChildSpawnOptions {
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  /** The complete environment of the child (nothing is added to it). */
  readonly env: Readonly<Record<string, string>>;
  readonly maxMessageBytes: number;
  /** Every chunk the child writes to stderr. */
  readonly onStderr: (chunk: Buffer) => void;
  /** A stdout line that was not JSON or was too large (already skipped). */
  readonly onInvalidLine: (invalid: InvalidLine) => void;
  /** Told when the child's process group starts and when it is gone (the reaper). */
  readonly groups?: GroupWatcher | undefined;
  /**
   * Runs the command isolated (sandbox.ts): given the command's absolute path and its args, the
   * command line to spawn instead. The command is looked up first, so a missing one is still
   * reported as ENOENT and not as a shell's exit code 127.
   */
  readonly isolate?: ((command: string, args: readonly string[]) => { command: string; args: string[] }) | undefined;
}

function isResponse(message: unknown): boolean {
  return typeof message === 'object' && message !== null && 'id' in message && !('method' in message);
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** How long after `exit` to wait for stdout to drain before reporting the close. */
const CLOSE_AFTER_EXIT_MS = 100;

export class ChildProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private child: ChildProcess | undefined;
  private closed = false;
  private exitInfo: ExitInfo | null = null;
  private readonly exited: Promise<ExitInfo>;
  private resolveExited!: (info: ExitInfo) => void;
  private readonly reader: JsonLineReader;
  /** Whether a notification was delivered in this turn of the event loop (see the reader). */
  private notified = false;
  private readonly writer: WriteBatcher;

  constructor(private readonly options: ChildSpawnOptions) {
    this.writer = new WriteBatcher(
      (data) => {
        const stdin = this.child?.stdin;
        return stdin && !stdin.destroyed ? stdin.write(data) : undefined;
      },
      (resolve) => (this.child?.stdin ? this.child.stdin.once('drain', resolve) : resolve()),
    );
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
    this.reader = new JsonLineReader(options.maxMessageBytes, {
      onMessage: (message) => {
        // The SDK handles a notification some microtasks after it arrives but a response at once,
        // so the last progress of a request, arriving with its result, would find its handler gone
        // (typescript-sdk #2580). A response that follows a notification in the same turn is
        // therefore delivered on the next turn of the event loop, once the notification is handled.
        if (!isResponse(message)) {
          this.onmessage?.(message as JSONRPCMessage);
          if (!this.notified) {
            this.notified = true;
            setImmediate(() => (this.notified = false));
          }
        } else if (this.notified) setImmediate(() => this.onmessage?.(message as JSONRPCMessage));
        else queueMicrotask(() => this.onmessage?.(message as JSONRPCMessage));
      },
      onInvalid: (invalid) => this.handleInvalid(invalid),
    });
  }

  /** Process id of the child, which is also its process group id. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** How the child ended, once it has. */
  get exit(): ExitInfo | null {
    return this.exitInfo;
  }

  /** Resolves when the child process has exited. */
  whenExited(): Promise<ExitInfo> {
    return this.exited;
  }

  /** Spawns the child; rejects if it cannot be started (command not found, bad cwd). */
  start(): Promise<void> {
    if (this.child) throw new Error('ChildProcessTransport already started');
    const { cwd, env, isolate } = this.options;
    let { command, args } = this.options;
    if (isolate) {
      try {
        ({ command, args } = isolate(resolveCommand(command, env['PATH'], cwd), args));
      } catch (err) {
        this.markExited({ code: null, signal: null });
        this.finish();
        return Promise.reject(err);
      }
    }
    return new Promise((resolve, reject) => {
      let spawned = false;
      const child = spawn(command, [...args], {
        cwd,
        env: { ...env },
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true, // own process group: signals reach the whole tree
        shell: false,
        windowsHide: true,
      });
      this.child = child;
      child.once('spawn', () => {
        spawned = true;
        if (child.pid !== undefined) this.options.groups?.add(child.pid);
        resolve();
      });
      child.once('error', (err) => {
        if (!spawned) {
          this.markExited({ code: null, signal: null });
          reject(err);
          this.finish();
        } else this.onerror?.(err);
      });
      child.once('exit', (code, signal) => {
        this.markExited({ code, signal });
        // Orphaned grandchildren stay in the group: end them with their parent.
        this.signalGroup('SIGTERM');
        const killLater = setTimeout(() => {
          // Only a group that still exists: an empty one's id could have been reused meanwhile.
          if (this.groupExists()) this.signalGroup('SIGKILL');
          if (child.pid !== undefined) this.options.groups?.remove(child.pid);
        }, 2_000);
        killLater.unref();
        // Let stdout drain, but do not wait on a grandchild that holds the pipe open.
        const timer = setTimeout(() => this.finish(), CLOSE_AFTER_EXIT_MS);
        timer.unref();
        child.once('close', () => {
          clearTimeout(timer);
          this.finish();
        });
      });
      child.stdout!.on('data', (chunk: Buffer) => this.reader.push(chunk));
      child.stdout!.on('error', (err) => this.onerror?.(err));
      child.stderr!.on('data', (chunk: Buffer) => this.options.onStderr(chunk));
      child.stderr!.on('error', () => {});
      // EPIPE when the child died: its exit is reported through 'exit'.
      child.stdin!.on('error', () => {});
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.child?.stdin;
    if (!stdin || this.closed || this.exitInfo || stdin.destroyed) {
      return Promise.reject(new Error('Not connected'));
    }
    return this.writer.push(serializeMessage(message));
  }

  /**
   * Stops the child: closes its stdin (well-behaved stdio servers exit on that), then SIGTERM to
   * its process group after `graceMs`, then SIGKILL after another `graceMs`.
   */
  async close(graceMs = 2_000): Promise<void> {
    const child = this.child;
    if (!child || this.exitInfo) {
      this.finish();
      return;
    }
    try {
      this.writer.flush();
      child.stdin?.end();
    } catch {
      // already closed
    }
    if (await this.exitedWithin(graceMs)) return;
    this.signalGroup('SIGTERM');
    if (await this.exitedWithin(graceMs)) return;
    this.signalGroup('SIGKILL');
    await this.exitedWithin(graceMs);
  }

  /**
   * Stops reading the child's stdout (backpressure: the child blocks on a full pipe) until
   * `resumeOutput`. Messages already read are still delivered.
   */
  pauseOutput(): void {
    this.child?.stdout?.pause();
  }

  resumeOutput(): void {
    this.child?.stdout?.resume();
  }

  /** Sends a signal to the child's whole process group; synchronous, safe to call at exit. */
  signalGroup(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // the group is already gone
    }
  }

  private groupExists(): boolean {
    const pid = this.child?.pid;
    if (pid === undefined) return false;
    try {
      process.kill(-pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  private async exitedWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const done = await Promise.race([this.exited.then(() => true as const), timeout]);
    clearTimeout(timer);
    return done;
  }

  private markExited(info: ExitInfo): void {
    if (this.exitInfo) return;
    this.exitInfo = info;
    this.resolveExited(info);
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.writer.discard();
    this.reader.reset();
    this.onclose?.();
  }

  private handleInvalid(invalid: InvalidLine): void {
    this.options.onInvalidLine(invalid);
    // Fail the request an unusable reply belonged to now, rather than at its timeout. Only for a
    // line that is a response (top-level "result"/"error" before any nested object).
    if (invalid.kind === 'parse') return;
    const isResponse =
      invalid.kind === 'depth'
        ? typeof invalid.message === 'object' && invalid.message !== null && !('method' in invalid.message)
        : /^\s*\{[^{]*"(?:result|error)"\s*:/.test(invalid.prefix);
    const id = idOfInvalidLine(invalid);
    if (!isResponse || id === undefined) return;
    const message =
      invalid.kind === 'oversize'
        ? `the server's reply was ${invalid.bytes} bytes, over the gateway's limit of ${this.options.maxMessageBytes} (limits.maxMessageBytes)`
        : `the server's reply nests more than ${MAX_DEPTH} levels deep`;
    this.onmessage?.({ jsonrpc: '2.0', id, error: { code: -32603, message } });
  }
}
