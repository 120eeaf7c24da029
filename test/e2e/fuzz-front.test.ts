/**
 * Fuzzes the agent-facing front of a real `mcp-gateway serve` process with fast-check: random JSON,
 * random bytes (invalid UTF-8 included), and valid requests mutated in every way a broken or
 * hostile agent might (wrong types, missing fields, huge and odd ids, unknown methods, deep
 * nesting, extra fields, oversized lines). The gateway must never crash, must answer every
 * request that carries a usable id exactly once, must audit every tool call that reached it, and
 * must forward nothing it refused. FUZZ_MESSAGES sets how many messages (default 20,000).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BIN, fixture, tempDir, TEST_KEY, TEST_KEY_ID, waitFor, writeConfig } from '../helpers/gateway.js';

const MESSAGES = Number(process.env['FUZZ_MESSAGES'] ?? 20_000);
const MAX_MESSAGE_BYTES = 1_048_576;

type Id = string | number;
interface Sent {
  readonly line: Buffer;
  /** The id a reply must carry, when one is due. */
  readonly expectReplyFor?: Id | undefined;
  /** A tools/call request (its reply, if a result, came from the pipeline). */
  readonly isToolCall: boolean;
  /** Carries an id JSON-RPC cannot use (null, a float, an unsafe integer, an object): an error reply with id null is due. */
  readonly unusableId?: boolean;
}

let gateway: ChildProcessWithoutNullStreams;
let dir: string;
const replies = new Map<string, number>();
const resultReplies = new Set<string>();
const nullReplies = { count: 0 };
const stdoutGarbage: string[] = [];
let stderr = '';

function keyOf(id: Id): string {
  return `${typeof id}:${String(id)}`;
}

async function send(data: Buffer | string): Promise<void> {
  if (!gateway.stdin.write(data)) await new Promise((r) => gateway.stdin.once('drain', r));
}

beforeAll(async () => {
  dir = tempDir('mcpgw-fuzz-');
  const counter = fixture('counter.js');
  const config = writeConfig(dir, {
    database: './gateway.db',
    auth: { apiKeys: { static: [{ id: TEST_KEY_ID, consumerId: 'fuzzer', roles: ['agent'], key: '${TEST_KEY}' }] } },
    servers: [{ id: 'counter', ...counter, env: { FIXTURE_MARKER_DIR: dir } }],
    policies: [
      {
        id: 'agent',
        roles: ['agent'],
        rules: [
          { server: 'counter', tool: 'count', action: 'forbid', when: { 'args.n': { gt: 100 } } },
          { server: 'counter', action: 'allow' },
        ],
      },
    ],
    rateLimit: { enabled: false },
    limits: { maxMessageBytes: MAX_MESSAGE_BYTES },
  });
  gateway = spawn(process.execPath, [BIN, 'serve', '--config', config], {
    env: { PATH: process.env['PATH'] ?? '', TEST_KEY, MCP_GATEWAY_API_KEY: TEST_KEY, MCP_GATEWAY_LOG_LEVEL: 'error' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  gateway.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let buffer = '';
  gateway.stdout.on('data', (d: Buffer) => {
    buffer += d.toString('utf8');
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      let msg: { id?: Id | null; jsonrpc?: string; result?: unknown };
      try {
        msg = JSON.parse(line);
      } catch {
        stdoutGarbage.push(line.slice(0, 200));
        continue;
      }
      if (msg.jsonrpc !== '2.0') stdoutGarbage.push(line.slice(0, 200));
      if (msg.id === null || msg.id === undefined) nullReplies.count++;
      else {
        replies.set(keyOf(msg.id), (replies.get(keyOf(msg.id)) ?? 0) + 1);
        if (msg.result !== undefined) resultReplies.add(keyOf(msg.id));
      }
    }
  });
  await send(
    `${JSON.stringify({ jsonrpc: '2.0', id: 'init', method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'fuzzer', version: '1' } } })}\n`,
  );
  await waitFor(() => replies.get(keyOf('init')), 15_000, 'initialize reply');
  await send(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
  await send(`${JSON.stringify({ jsonrpc: '2.0', id: 'list', method: 'tools/list' })}\n`);
  await waitFor(() => replies.get(keyOf('list')), 15_000, 'tools/list reply');
}, 60_000);

afterAll(() => {
  gateway?.kill('SIGKILL');
});

// ------------------------------------------------------------------ generators

const validTemplates: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({
    method: fc.constant('tools/call'),
    params: fc.record({ name: fc.constant('counter__echo'), arguments: fc.record({ message: fc.string() }) }),
  }),
  fc.record({
    method: fc.constant('tools/call'),
    params: fc.record({ name: fc.constant('counter__count'), arguments: fc.record({ n: fc.integer({ min: 0, max: 200 }) }) }),
  }),
  fc.record({
    method: fc.constant('tools/call'),
    params: fc.record({ name: fc.constantFrom('call', 'list_tools', 'nope__x', 'counter__nope', 'server_status'), arguments: fc.object() }),
  }),
  fc.record({ method: fc.constantFrom('tools/list', 'ping', 'resources/list', 'prompts/list', 'resources/templates/list') }),
  fc.record({ method: fc.constantFrom('prompts/get', 'resources/read', 'completion/complete', 'logging/setLevel'), params: fc.object() }),
  fc.record({ method: fc.string(), params: fc.object() }),
);

type Mutation = (m: Record<string, unknown>, n: number) => Record<string, unknown>;
const deep = (depth: number): unknown => {
  let v: unknown = 'bottom';
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { k: v };
  return v;
};
const mutations: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constant<Mutation>((m) => m),
  fc.constant<Mutation>((m) => ({ ...m, params: 'not an object' })),
  fc.constant<Mutation>((m) => ({ ...m, params: [1, 2, 3] })),
  fc.constant<Mutation>((m) => ({ ...m, method: 42 })),
  fc.constant<Mutation>((m) => {
    const { method: _, ...rest } = m;
    return rest;
  }),
  fc.constant<Mutation>((m) => ({ ...m, jsonrpc: '1.0' })),
  fc.constant<Mutation>((m) => ({ ...m, extra: { field: true } })),
  fc.constant<Mutation>((m) => ({ ...m, params: { ...(m['params'] as object), name: 123 } })),
  fc.constant<Mutation>((m) => ({ ...m, params: { ...(m['params'] as object), arguments: 'str' } })),
  fc.constant<Mutation>((m) => ({ ...m, params: { ...(m['params'] as object), _meta: { progressToken: { bad: 1 } } } })),
  fc
    .integer({ min: 10, max: 400 })
    .map<Mutation>((d) => (m) => ({ ...m, params: { ...(m['params'] as object), arguments: { message: 'x', deep: deep(d) } } })),
  fc.string({ maxLength: 50 }).map<Mutation>((s) => (m) => ({ ...m, params: { ...(m['params'] as object), arguments: { [s]: s } } })),
);
const ids: fc.Arbitrary<(n: number) => unknown> = fc.oneof(
  fc.constant((n: number) => `f${n}`),
  fc.constant((n: number) => n + 1_000_000),
  fc.constant((n: number) => -n - 1),
  fc.constant((n: number) => `${'x'.repeat(5_000)}${n}`),
  fc.constant(() => 1e308),
  fc.constant(() => 2 ** 53 + 2),
  fc.constant(() => 1.5),
  fc.constant(() => null),
  fc.constant(() => ({ id: 1 })),
  fc.constant(() => undefined),
);

const message: fc.Arbitrary<(n: number) => Sent> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(validTemplates, mutations, ids).map(
      ([t, mutate, id]) =>
        (n: number) =>
          build(mutate({ jsonrpc: '2.0', ...t }, n), id(n)),
    ),
  },
  { weight: 1, arbitrary: fc.jsonValue().map((v) => () => ({ line: Buffer.from(`${JSON.stringify(v)}\n`), isToolCall: false })) },
  {
    weight: 1,
    arbitrary: fc
      .uint8Array({ minLength: 1, maxLength: 300 })
      .map((b) => () => ({ line: Buffer.concat([Buffer.from(b.filter((x) => x !== 10)), Buffer.from('\n')]), isToolCall: false })),
  },
  {
    weight: 1,
    arbitrary: fc.string({ maxLength: 200 }).map((s) => () => ({ line: Buffer.from(`${s.replace(/\n/g, ' ')}\n`), isToolCall: false })),
  },
);

function build(m: Record<string, unknown>, id: unknown): Sent {
  const obj = id === undefined ? m : { ...m, id };
  const line = Buffer.from(`${JSON.stringify(obj)}\n`);
  const usableId = typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id));
  const isRequest = 'method' in m;
  const expectReplyFor = isRequest && usableId && line.length <= MAX_MESSAGE_BYTES ? (id as Id) : undefined;
  const unusableId = id !== undefined && !usableId && line.length <= MAX_MESSAGE_BYTES;
  return { line, expectReplyFor, isToolCall: m['method'] === 'tools/call', unusableId };
}

// ------------------------------------------------------------------ the test

describe('fuzzing the front of a running gateway', () => {
  test(`${MESSAGES} fuzzed messages: no crash, every due reply, every tool call audited, nothing refused forwarded`, async () => {
    const makers = fc.sample(message, { numRuns: MESSAGES, seed: 20261121 });
    const sent: Sent[] = makers.map((make, n) => make(n));
    // A few lines far over the limit (the limit is 1 MiB here; 11 MiB each).
    for (let i = 0; i < 3; i++) {
      const big = {
        jsonrpc: '2.0',
        id: `big${i}`,
        method: 'tools/call',
        params: { name: 'counter__echo', arguments: { message: 'x'.repeat(11 * 1024 * 1024) } },
      };
      sent.push({ line: Buffer.from(`${JSON.stringify(big)}\n`), expectReplyFor: `big${i}`, isToolCall: false });
    }

    for (const s of sent) await send(s.line);
    await send(`${JSON.stringify({ jsonrpc: '2.0', id: 'last', method: 'ping' })}\n`);

    const due = sent.filter((s) => s.expectReplyFor !== undefined);
    await waitFor(() => replies.get(keyOf('last')) && due.every((s) => replies.has(keyOf(s.expectReplyFor!))), 120_000, 'every due reply');

    expect(gateway.exitCode, stderr.slice(-2000)).toBeNull();
    expect(stdoutGarbage).toEqual([]);
    const missing = due.filter((s) => !replies.has(keyOf(s.expectReplyFor!)));
    expect(missing.length).toBe(0);
    const duplicated = [...replies].filter(([, n]) => n > 1);
    expect(duplicated).toEqual([]);
    // Requests whose id cannot be used still get an answer (with id null), not silence.
    expect(nullReplies.count).toBeGreaterThanOrEqual(sent.filter((s) => s.unusableId).length);

    // The gateway still serves normally after all that.
    await send(
      `${JSON.stringify({ jsonrpc: '2.0', id: 'after', method: 'tools/call', params: { name: 'counter__echo', arguments: { message: 'still here' } } })}\n`,
    );
    await waitFor(() => replies.get(keyOf('after')), 15_000, 'a normal call after the fuzzing');

    // Every tool call answered with a result went through the pipeline and has exactly one audit
    // row; what was refused never reached the child.
    await new Promise((r) => setTimeout(r, 1_500));
    const db = new Database(path.join(dir, 'gateway.db'), { readonly: true });
    const rows = db.prepare("SELECT status, server, name FROM audit_log WHERE kind IN ('tool', 'admin')").all() as {
      status: string;
      server: string | null;
      name: string;
    }[];
    db.close();
    const toolCallResults = sent.filter(
      (s) => s.isToolCall && s.expectReplyFor !== undefined && resultReplies.has(keyOf(s.expectReplyFor)),
    ).length;
    expect(rows.length).toBe(toolCallResults + 1);
    const forwarded = existsSync(path.join(dir, 'calls.log'))
      ? readFileSync(path.join(dir, 'calls.log'), 'utf8').trim().split('\n').filter(Boolean).length
      : 0;
    const okRows = rows.filter((r) => r.server === 'counter' && (r.status === 'ok' || r.status === 'error')).length;
    expect(forwarded).toBe(okRows);
    expect(rows.some((r) => r.status === 'denied')).toBe(true);
    expect(rows.some((r) => r.status === 'invalid')).toBe(true);
  }, 300_000);
});
