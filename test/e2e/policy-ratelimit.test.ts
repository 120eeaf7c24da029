/**
 * Rate limits and argument conditions through a real `mcp-gateway serve` process (design §4, §5,
 * §10): a refused call is not forwarded and says when to retry, rule buckets limit only what they
 * match, `enabled: false` really disables, and `when` conditions with `${consumer.id}` decide per
 * call. The child here counts the calls it receives, so "not forwarded" is checked at the child.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import {
  ROOT,
  TEST_KEY,
  errorCode,
  startGateway,
  tempDir,
  type RunningGateway,
  type Obj,
  call,
  toolNames,
  waitListed,
} from '../helpers/gateway.js';

const textOf = (result: Obj) => ((result['content'] as { type: string; text?: string }[] | undefined) ?? [])[0]?.text ?? '';
const errorMeta = (result: Obj) => (result['_meta'] as Obj | undefined)?.['mcp-gateway/error'] as Obj | undefined;

/**
 * A child that counts what it receives: `hit` returns how many `hit` calls reached it (this one
 * included); `add` adds; `read` returns the owner it was asked for. Written to a temp folder and
 * importing the SDK by absolute URL.
 */
function writeCounterFixture(dir: string): { command: string; args: string[] } {
  const mod = (p: string) => pathToFileURL(path.join(ROOT, 'node_modules', p)).href;
  const file = path.join(dir, 'counting-server.mjs');
  writeFileSync(
    file,
    `import { McpServer } from '${mod('@modelcontextprotocol/sdk/dist/esm/server/mcp.js')}';
import { StdioServerTransport } from '${mod('@modelcontextprotocol/sdk/dist/esm/server/stdio.js')}';
import { z } from '${mod('zod/index.js')}';
let hits = 0;
const text = (t) => ({ content: [{ type: 'text', text: String(t) }] });
const server = new McpServer({ name: 'counting', version: '1.0.0' });
server.registerTool('hit', { description: 'Count this call', inputSchema: {} }, async () => text(++hits));
server.registerTool('add', { description: 'Add', inputSchema: { a: z.number(), b: z.number() } }, async ({ a, b }) => text(a + b));
server.registerTool('read', { description: 'Read a record of an owner', inputSchema: { owner: z.string() } }, async ({ owner }) => text('record of ' + owner));
process.stdin.on('end', () => process.exit(0));
await server.connect(new StdioServerTransport());
`,
  );
  return { command: process.execPath, args: [file] };
}

/** One static key (consumer "tester", roles [user]); `TEST_KEY` comes from the harness env. */
function config(counter: { command: string; args: string[] }, overrides: Obj): Obj {
  return {
    database: './gateway.db',
    servers: [{ id: 'echo', ...counter }],
    auth: { apiKeys: { static: [{ id: 'testkey1', consumerId: 'tester', roles: ['user'], key: '${TEST_KEY}' }] } },
    policies: [{ id: 'users', roles: ['user'], rules: [{ server: 'echo', action: 'allow' }] }],
    ...overrides,
  };
}

const running: RunningGateway[] = [];
async function start(cfg: Obj, dir: string, listed = 'echo__hit'): Promise<RunningGateway> {
  const gw = await startGateway({ config: cfg, dir, key: TEST_KEY });
  running.push(gw);
  await waitListed(gw.client, listed);
  return gw;
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((gw) => gw.close().catch(() => {})));
});

function auditStatuses(dir: string, name: string): Record<string, number> {
  const db = new Database(path.join(dir, 'gateway.db'), { readonly: true });
  try {
    const rows = db.prepare('SELECT status, COUNT(*) AS n FROM audit_log WHERE name = ? GROUP BY status').all(name) as {
      status: string;
      n: number;
    }[];
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------------------------

describe('rate limits through the gateway', () => {
  let dir: string;
  let counter: { command: string; args: string[] };

  beforeAll(() => {
    dir = tempDir('mcpgw-rl-');
    counter = writeCounterFixture(dir);
  });

  test('defaultPerMinute 60: the 61st quick call is RATE_LIMITED, not forwarded; a call after retryAfterMs succeeds', async () => {
    const gwDir = tempDir('mcpgw-rl-default-');
    const gw = await start(config(counter, { rateLimit: { enabled: true, defaultPerMinute: 60 } }), gwDir);
    // tools/list is not a call: the bucket is still full. 61 calls sent at once.
    const results = await Promise.all(Array.from({ length: 61 }, () => call(gw.client, 'echo__hit')));
    const ok = results.filter((r) => r['isError'] !== true);
    const limited = results.filter((r) => errorCode(r) === 'RATE_LIMITED');
    expect(ok).toHaveLength(60);
    expect(limited).toHaveLength(1);
    const meta = errorMeta(limited[0]!)!;
    expect(meta['code']).toBe('RATE_LIMITED');
    const retryAfterMs = meta['retryAfterMs'] as number;
    expect(typeof retryAfterMs).toBe('number');
    expect(retryAfterMs).toBeGreaterThan(0);
    expect(retryAfterMs).toBeLessThanOrEqual(1_000);
    // The child saw exactly the 60 admitted calls.
    expect(ok.map((r) => Number(textOf(r))).sort((a, b) => a - b)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));

    await new Promise((r) => setTimeout(r, retryAfterMs + 100));
    const after = await call(gw.client, 'echo__hit');
    expect(after['isError']).not.toBe(true);
    // The 61st call the child receives: the refused one never reached it.
    expect(textOf(after)).toBe('61');

    // The refusal is in the audit log as rate_limited, committed before the reply.
    expect(auditStatuses(gwDir, 'hit')).toEqual({ ok: 61, rate_limited: 1 });
  });

  test('a rule bucket {server: echo, tool: add, perMinute: 2} limits only that tool', async () => {
    const gw = await start(
      config(counter, {
        rateLimit: { enabled: true, defaultPerMinute: 1_000, rules: [{ server: 'echo', tool: 'add', perMinute: 2 }] },
      }),
      tempDir('mcpgw-rl-rule-'),
    );
    expect(textOf(await call(gw.client, 'echo__add', { a: 1, b: 2 }))).toBe('3');
    expect(textOf(await call(gw.client, 'echo__add', { a: 2, b: 2 }))).toBe('4');
    const third = await call(gw.client, 'echo__add', { a: 3, b: 2 });
    expect(errorCode(third)).toBe('RATE_LIMITED');
    // 2 a minute: the next token is tens of seconds away.
    expect(errorMeta(third)!['retryAfterMs']).toBeGreaterThan(10_000);
    // Through `call` it is the same tool and the same bucket.
    expect(errorCode(await call(gw.client, 'call', { tool: 'echo__add', arguments: { a: 1, b: 1 } }))).toBe('RATE_LIMITED');
    // Other tools are not limited by the rule.
    const others = await Promise.all(Array.from({ length: 20 }, () => call(gw.client, 'echo__hit')));
    expect(others.every((r) => r['isError'] !== true)).toBe(true);
    expect(textOf(await call(gw.client, 'echo__read', { owner: 'x' }))).toBe('record of x');
  });

  test('rateLimit.enabled: false → 100 quick calls all succeed', async () => {
    const gw = await start(
      config(counter, {
        rateLimit: { enabled: false, defaultPerMinute: 1, burst: 1, rules: [{ server: 'echo', perMinute: 1, per: 'global' }] },
      }),
      tempDir('mcpgw-rl-off-'),
    );
    const results = await Promise.all(Array.from({ length: 100 }, () => call(gw.client, 'echo__hit')));
    expect(results.filter((r) => r['isError'] === true)).toEqual([]);
    expect(results.map((r) => Number(textOf(r))).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  test('a denied call takes no token: refused calls do not use up the limit', async () => {
    const gw = await start(
      config(counter, {
        policies: [{ id: 'users', roles: ['user'], rules: [{ server: 'echo', tool: 'hit', action: 'allow' }] }],
        rateLimit: { enabled: true, defaultPerMinute: 60, burst: 3 },
      }),
      tempDir('mcpgw-rl-denied-'),
    );
    // echo__add is never allowed to this caller: refused as unknown (no existence oracle), audited as denied.
    for (let i = 0; i < 10; i++) expect(errorCode(await call(gw.client, 'echo__add', { a: 1, b: 1 }))).toBe('UNKNOWN_TOOL');
    const results = await Promise.all(Array.from({ length: 3 }, () => call(gw.client, 'echo__hit')));
    expect(results.every((r) => r['isError'] !== true)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------

describe('policy conditions through the gateway', () => {
  test("`when: args.owner eq ${consumer.id}` allows the caller's own records and forbids others'", async () => {
    const dir = tempDir('mcpgw-when-');
    const counter = writeCounterFixture(dir);
    const gw = await start(
      config(counter, {
        policies: [
          {
            id: 'own-records',
            roles: ['user'],
            rules: [{ server: 'echo', tool: 'read', action: 'allow', when: { 'args.owner': { eq: '${consumer.id}' } } }],
          },
        ],
        rateLimit: { enabled: false },
      }),
      dir,
      'echo__read',
    );
    // The conditional tool is listed (some arguments are allowed); the others are not.
    expect(await toolNames(gw.client)).toEqual(['call', 'echo__read', 'list_tools']);
    const own = await call(gw.client, 'echo__read', { owner: 'tester' });
    expect(own['isError']).not.toBe(true);
    expect(textOf(own)).toBe('record of tester');
    expect(errorCode(await call(gw.client, 'echo__read', { owner: 'someone-else' }))).toBe('FORBIDDEN');
    expect(errorCode(await call(gw.client, 'call', { tool: 'echo__read', arguments: { owner: 'mallory' } }))).toBe('FORBIDDEN');
    // A tool never allowed to this caller is answered as one that does not exist.
    expect(errorCode(await call(gw.client, 'echo__hit'))).toBe('UNKNOWN_TOOL');
    // The refusal names the default deny in the audit log; the allowed call names its rule.
    const db = new Database(path.join(dir, 'gateway.db'), { readonly: true });
    try {
      const rows = db.prepare("SELECT status, decided_by FROM audit_log WHERE name = 'read' ORDER BY seq").all() as Obj[];
      expect(rows.map((r) => r['status'])).toEqual(['ok', 'denied', 'denied']);
      expect(rows[0]!['decided_by']).toBe('own-records#0');
    } finally {
      db.close();
    }
  });
});
