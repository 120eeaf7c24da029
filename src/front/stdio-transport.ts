/**
 * The agent-facing stdio Transport, in place of the SDK's `StdioServerTransport`, for what a
 * gateway needs beyond it: a line that is not JSON gets a Parse error reply and a malformed
 * request an Invalid Request reply (the SDK drops both silently and the agent waits forever), a
 * message over `maxMessageBytes` is refused without being buffered, and the end of stdin closes
 * the transport (which stops the gateway).
 */
import type { JSONRPCMessage, RequestId, Transport } from '@modelcontextprotocol/server';
import { JSONRPCMessageSchema } from '@modelcontextprotocol/core';
import { JsonLineReader, MAX_DEPTH, idOfInvalidLine, serializeMessage } from '../transport/json-lines.js';
import { WriteBatcher } from '../transport/write-batcher.js';
import type { Logger } from '../log.js';

export class AgentStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private readonly reader: JsonLineReader;
  private readonly writer: WriteBatcher;
  private closed = false;
  private readonly onData = (chunk: Buffer) => this.reader.push(chunk);
  private readonly onEnd = () => void this.close();

  constructor(
    private readonly options: {
      readonly maxMessageBytes: number;
      readonly log: Logger;
      readonly stdin?: NodeJS.ReadableStream;
      readonly stdout?: NodeJS.WritableStream;
      /**
       * Called once when the connection ends (stdin closed, stdout broken, or `close()`), whoever
       * owns `onclose`: the serving entry sets that one, the gateway stops on this one.
       */
      readonly onEnd?: () => void;
      /** Sees every well-formed inbound message before it is delivered (subscriptions bookkeeping). */
      readonly observe?: (message: JSONRPCMessage) => void;
    },
  ) {
    this.writer = new WriteBatcher(
      (data) => this.stdout.write(data),
      (resolve) => this.stdout.once('drain', resolve),
    );
    this.reader = new JsonLineReader(options.maxMessageBytes, {
      onMessage: (message) => this.receive(message),
      onInvalid: (invalid) => {
        if (invalid.kind === 'parse') {
          this.options.log.warn(`agent sent a line that is not JSON (${invalid.error})`);
          this.replyError(null, -32700, `Parse error: ${invalid.error}`);
        } else if (invalid.kind === 'depth') {
          this.options.log.warn(`agent sent a message nested more than ${MAX_DEPTH} levels deep`);
          const isRequest = typeof (invalid.message as { method?: unknown })?.method === 'string';
          const id = idOfInvalidLine(invalid);
          if (isRequest && id !== undefined) {
            this.replyError(id, -32600, `Invalid Request: the message nests more than ${MAX_DEPTH} levels deep`);
          }
        } else {
          const id = idOfInvalidLine(invalid) ?? null;
          this.options.log.warn(`agent sent a ${invalid.bytes}-byte message, over the limit of ${this.options.maxMessageBytes}`);
          this.replyError(
            id,
            -32600,
            `Invalid Request: the message is ${invalid.bytes} bytes, over the gateway's limit of ${this.options.maxMessageBytes} bytes (limits.maxMessageBytes)`,
          );
        }
      },
    });
  }

  private get stdin(): NodeJS.ReadableStream {
    return this.options.stdin ?? process.stdin;
  }
  private get stdout(): NodeJS.WritableStream {
    return this.options.stdout ?? process.stdout;
  }

  async start(): Promise<void> {
    this.stdin.on('data', this.onData);
    this.stdin.on('end', this.onEnd);
    this.stdin.on('close', this.onEnd);
    this.stdin.on('error', (err: Error) => this.onerror?.(err));
    this.stdout.on('error', (err: Error) => {
      // EPIPE: the agent went away. Nothing more can be said to it.
      this.onerror?.(err);
      void this.close();
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.writer.push(serializeMessage(message));
  }

  /** Bytes written for the agent that it has not read yet (held by the stream and the batcher). */
  backlogBytes(): number {
    return ((this.stdout as NodeJS.WritableStream & { writableLength?: number }).writableLength ?? 0) + this.writer.pendingChars;
  }

  /** Calls `callback` once the agent has read everything written so far (at once if it has). */
  onceDrained(callback: () => void): void {
    if (this.backlogBytes() === 0 || this.closed) queueMicrotask(callback);
    else this.stdout.once('drain', () => this.onceDrained(callback));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.writer.flush();
    this.stdin.off('data', this.onData);
    this.stdin.off('end', this.onEnd);
    this.stdin.off('close', this.onEnd);
    this.reader.reset();
    this.onclose?.();
    this.options.onEnd?.();
  }

  private receive(message: unknown): void {
    if (isWellFormed(message)) {
      this.deliver(message as JSONRPCMessage);
      return;
    }
    // The slow, exact check only for what the quick one did not accept.
    const parsed = JSONRPCMessageSchema.safeParse(message);
    if (parsed.success) {
      this.deliver(parsed.data as JSONRPCMessage);
      return;
    }
    const obj = (typeof message === 'object' && message !== null ? message : {}) as Record<string, unknown>;
    const id = obj['id'];
    const validId = typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id)) ? (id as RequestId) : null;
    // A broken response from the agent needs no reply; anything else we cannot read is answered,
    // with its id when it has a usable one, so the agent never waits for nothing.
    if (!('method' in obj) && 'id' in obj && ('result' in obj || 'error' in obj)) return;
    const detail = parsed.error.issues[0];
    const where = detail && detail.path.length > 0 ? ` at ${detail.path.join('.')}` : '';
    this.replyError(validId, -32600, `Invalid Request: not a valid JSON-RPC 2.0 message${where}`);
  }

  private deliver(message: JSONRPCMessage): void {
    this.options.observe?.(message);
    this.onmessage?.(message);
  }

  private replyError(id: RequestId | null, code: number, message: string): void {
    // JSON-RPC allows id null for errors about unreadable requests; the SDK's types do not.
    void this.send({ jsonrpc: '2.0', id: id as RequestId, error: { code, message } });
  }
}

/**
 * A quick structural check of the common, valid messages (the exact zod check costs several
 * microseconds per message on the hot path). Anything it does not accept gets the exact check.
 */
function isWellFormed(m: unknown): boolean {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return false;
  const o = m as Record<string, unknown>;
  if (o['jsonrpc'] !== '2.0') return false;
  const params = o['params'];
  if (params !== undefined) {
    if (typeof params !== 'object' || params === null || Array.isArray(params)) return false;
    const meta = (params as Record<string, unknown>)['_meta'];
    if (meta !== undefined) {
      if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return false;
      const token = (meta as Record<string, unknown>)['progressToken'];
      if (token !== undefined && typeof token !== 'string' && !(typeof token === 'number' && Number.isSafeInteger(token))) return false;
    }
  }
  const id = o['id'];
  const hasId = id !== undefined;
  if (hasId && typeof id !== 'string' && !(typeof id === 'number' && Number.isSafeInteger(id))) return false;
  let keys = 2; // jsonrpc + method|result|error
  if (hasId) keys++;
  if (params !== undefined) keys++;
  if (typeof o['method'] === 'string') return Object.keys(o).length === keys;
  if (!hasId) return false;
  const result = o['result'];
  if (result !== undefined) return typeof result === 'object' && result !== null && !Array.isArray(result) && Object.keys(o).length === 3;
  return false; // error responses take the exact path (rare)
}
