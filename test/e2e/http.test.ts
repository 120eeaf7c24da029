/**
 * The Streamable HTTP front (design §12) through real `mcp-gateway serve --http` processes: agents
 * of both protocol eras side by side (a 2026-07-28 one stateless, a 2025-era one in a session it
 * can end with DELETE), each request with its own bearer, so callers with different keys see
 * different catalogs and limits in one process; 50 agents at once; a child's sampling and
 * elicitation reaching only the agent whose call it is; the health, readiness, metrics and OAuth
 * metadata routes; and SIGTERM with calls in flight.
 */
import { CreateMessageRequestSchema, ElicitRequestSchema, ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { call, errorCode, fixture, tempDir, textOf, toolNames, waitFor, waitListed, type Obj } from '../helpers/gateway.js';
import {
  HttpHarness,
  freePort,
  inSession,
  initializeBody,
  mcpHeaders,
  metric,
  postMcp,
  raw,
  staticKey,
  staticKeyEntry,
  type HttpGateway,
  type LegacyAgent,
  type ModernClient,
} from '../helpers/http.js';
import { auditRows, cli } from '../helpers/security.js';

const h = new HttpHarness();
afterEach(() => h.closeAll());

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

const ADMIN = { id: 'admin', roles: ['admin'], rules: [{ action: 'allow' }, { server: 'gateway', action: 'allow' }] };
/** Readers may use echo's `echo` only, and only with a short message. */
const READER = {
  id: 'reader',
  roles: ['reader'],
  rules: [{ server: 'echo', tool: 'echo', action: 'allow', when: { 'args.message': { maxLength: 20 } } }],
};

const ALICE = staticKeyEntry('alice1', 'alice', ['admin']);
const RITA = staticKeyEntry('rita1', 'rita', ['reader']);
const ALICE_KEY = staticKey('alice1');
const RITA_KEY = staticKey('rita1');

function httpConfig(overrides: Record<string, unknown> = {}, keys: Record<string, unknown>[] = [ALICE, RITA]): Record<string, unknown> {
  return {
    database: './gateway.db',
    auth: { apiKeys: { static: keys } },
    policies: [ADMIN, READER],
    rateLimit: { enabled: false },
    servers: [{ id: 'echo', ...fixture('echo.js') }],
    ...overrides,
  };
}

/** Waits until `name` is listed to the admin (the children start with the gateway). */
async function ready(gw: HttpGateway, tool = 'echo__echo'): Promise<void> {
  const probe = await h.modern(gw, ALICE_KEY);
  await waitListed(probe, tool);
}

async function legacyNames(agent: LegacyAgent): Promise<string[]> {
  return (await agent.client.listTools()).tools.map((t) => t.name).sort();
}

describe('both eras over HTTP', () => {
  test('a 2026-07-28 agent and a 2025-era agent list and call; DELETE ends the legacy session (404 after)', async () => {
    const gw = await h.start({ config: httpConfig() });
    expect(gw.url).toBe(`${gw.base}/mcp`);

    const modern = await h.modern(gw, ALICE_KEY);
    expect(await waitListed(modern, 'echo__echo')).toContain('echo__add');
    const answer = await call(modern, 'echo__echo', { message: 'hello modern' });
    expect(answer['isError']).not.toBe(true);
    expect(textOf(answer)).toBe('hello modern');

    const legacy = await h.legacy(gw, ALICE_KEY);
    expect(legacy.sessionId).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    expect(await legacyNames(legacy)).toEqual(await toolNames(modern));
    const legacyAnswer = await legacy.client.callTool({ name: 'echo__echo', arguments: { message: 'hello legacy' } });
    expect(textOf(legacyAnswer)).toBe('hello legacy');

    // The session answers a raw request carrying its id, then DELETE ends it.
    expect((await inSession(gw, ALICE_KEY, legacy.sessionId)).status).toBe(200);
    await legacy.transport.terminateSession();
    expect(legacy.transport.sessionId).toBeUndefined();
    const after = await inSession(gw, ALICE_KEY, legacy.sessionId);
    expect(after.status).toBe(404);
    expect((JSON.parse(after.body) as { error: { code: number } }).error.code).toBe(-32001);
    // The modern agent is not affected.
    expect(textOf(await call(modern, 'echo__echo', { message: 'still here' }))).toBe('still here');
  });

  test('the sessions gauge counts legacy sessions, and DELETE takes one off it', async () => {
    const gw = await h.start({ config: httpConfig({ metrics: { token: METRICS_TOKEN } }) });
    await ready(gw);
    expect(await metric(gw, METRICS_TOKEN, 'mcp_gateway_sessions')).toBe(0);
    const a = await h.legacy(gw, ALICE_KEY);
    const b = await h.legacy(gw, RITA_KEY);
    expect(await metric(gw, METRICS_TOKEN, 'mcp_gateway_sessions')).toBe(2);
    await a.transport.terminateSession();
    expect((await inSession(gw, ALICE_KEY, a.sessionId)).status).toBe(404);
    // The front of a DELETEd session leaves the hub (ae07ab6 replaced the SDK's onclose and kept it there).
    await waitFor(async () => (await metric(gw, METRICS_TOKEN, 'mcp_gateway_sessions')) === 1, 5_000, 'the gauge to drop to 1');
    await b.transport.terminateSession();
    await waitFor(async () => (await metric(gw, METRICS_TOKEN, 'mcp_gateway_sessions')) === 0, 5_000, 'the gauge to drop to 0');
  });
});

describe('per-caller catalogs, policy and limits in one process', () => {
  test('two keys with different roles see different tools/list; a call outside the role is refused', async () => {
    const gw = await h.start({ config: httpConfig() });
    await ready(gw);
    const admin = await h.modern(gw, ALICE_KEY);
    const reader = await h.modern(gw, RITA_KEY);
    const legacyReader = await h.legacy(gw, RITA_KEY);

    const adminNames = await toolNames(admin);
    const readerNames = await toolNames(reader);
    expect(adminNames).toEqual(expect.arrayContaining(['echo__echo', 'echo__add', 'server_status']));
    expect(readerNames.filter((n) => n.startsWith('echo__'))).toEqual(['echo__echo']);
    expect(readerNames).not.toContain('server_status');
    expect(await legacyNames(legacyReader)).toEqual(readerNames);

    expect(textOf(await call(reader, 'echo__echo', { message: 'short' }))).toBe('short');
    // Never allowed to a reader: refused as if it did not exist.
    expect(errorCode(await call(reader, 'echo__add', { a: 1, b: 2 }))).toBe('UNKNOWN_TOOL');
    // Allowed with other arguments: FORBIDDEN.
    const long = await call(reader, 'echo__echo', { message: 'a message longer than twenty characters' });
    expect(long['isError']).toBe(true);
    expect(errorCode(long)).toBe('FORBIDDEN');
    // The same over the legacy session.
    const legacyLong = await legacyReader.client.callTool({ name: 'echo__echo', arguments: { message: 'x'.repeat(40) } });
    expect(legacyLong.isError).toBe(true);
    expect(errorCode(legacyLong)).toBe('FORBIDDEN');
    // The admin, in the same process, is not limited by the reader's policy.
    expect((await call(admin, 'echo__add', { a: 1, b: 2 }))['structuredContent']).toEqual({ sum: 3 });

    const rows = await waitFor(() => {
      const r = auditRows(gw.dir).filter((row) => row['consumer_id'] === 'rita');
      return r.length >= 4 ? r : undefined;
    });
    expect(rows.filter((r) => r['status'] === 'denied')).toHaveLength(3);
  });

  test('50 agents at once (both eras, 50 keys, alternating roles): every result right, every caller in the audit', async () => {
    const ids = Array.from({ length: 50 }, (_, i) => `agent${String(i).padStart(2, '0')}`);
    const keys = ids.map((id, i) => staticKeyEntry(id, `consumer-${id}`, [i % 2 === 0 ? 'admin' : 'reader']));
    const gw = await h.start({ config: httpConfig({}, [ALICE, ...keys]) });
    await ready(gw);

    const outcomes = await Promise.all(
      ids.map(async (id, i) => {
        const key = staticKey(id);
        const message = `from ${id}`;
        if (i % 4 < 2) {
          const client = await h.modern(gw, key);
          const names = await toolNames(client);
          const result = await call(client, 'echo__echo', { message });
          return { i, names, text: textOf(result), error: errorCode(result) };
        }
        const agent = await h.legacy(gw, key);
        const names = await legacyNames(agent);
        const result = await agent.client.callTool({ name: 'echo__echo', arguments: { message } });
        await agent.transport.terminateSession();
        return { i, names, text: textOf(result), error: errorCode(result) };
      }),
    );
    for (const o of outcomes) {
      expect(o.error, `agent ${o.i}`).toBeUndefined();
      expect(o.text).toBe(`from ${ids[o.i]}`);
      if (o.i % 2 === 0) expect(o.names).toContain('echo__add');
      else expect(o.names.filter((n) => n.startsWith('echo__'))).toEqual(['echo__echo']);
    }

    const rows = await waitFor(() => {
      const r = auditRows(gw.dir).filter((row) => row['name'] === 'echo' && String(row['consumer_id']).startsWith('consumer-'));
      return r.length >= 50 ? r : undefined;
    });
    expect(rows).toHaveLength(50);
    expect(new Set(rows.map((r) => r['consumer_id'])).size).toBe(50);
    for (const row of rows) {
      // Each row names the caller whose message it carries.
      const id = String(row['consumer_id']).slice('consumer-'.length);
      expect(row['key_id']).toBe(id);
      expect(String(row['arguments'])).toContain(`from ${id}`);
      expect(row['status']).toBe('ok');
    }
    // The same through the CLI, as an auditor reads it; the chain holds with 50 writers at once.
    const exported = await cli(['audit', 'export', '--config', gw.configFile]);
    expect(exported.code, exported.stderr).toBe(0);
    const lines = exported.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Obj)
      .filter((r) => r['name'] === 'echo' && String(r['consumer_id']).startsWith('consumer-'));
    expect(new Set(lines.map((r) => r['consumer_id'])).size).toBe(50);
    const verified = await cli(['audit', 'verify', '--config', gw.configFile]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
  });

  test('a key with rateLimit.perMinute 3 is RATE_LIMITED at its 4th call; another consumer is not', async () => {
    const limited = staticKeyEntry('limited1', 'lim', ['admin'], { rateLimit: { perMinute: 3 } });
    const gw = await h.start({ config: httpConfig({ rateLimit: { enabled: true, defaultPerMinute: 1_000 } }, [ALICE, limited]) });
    await ready(gw);
    const lim = await h.modern(gw, staticKey('limited1'));
    const other = await h.legacy(gw, ALICE_KEY);
    for (let i = 1; i <= 3; i++) expect(textOf(await call(lim, 'echo__echo', { message: `ok ${i}` }))).toBe(`ok ${i}`);
    const fourth = await call(lim, 'echo__echo', { message: 'one too many' });
    expect(errorCode(fourth)).toBe('RATE_LIMITED');
    expect((fourth['_meta'] as Record<string, Obj>)['mcp-gateway/error']!['retryAfterMs']).toBeGreaterThan(0);
    // Over a legacy session of the same key: the same bucket.
    const limLegacy = await h.legacy(gw, staticKey('limited1'));
    expect(errorCode(await limLegacy.client.callTool({ name: 'echo__echo', arguments: { message: 'x' } }))).toBe('RATE_LIMITED');
    for (let i = 0; i < 5; i++) {
      const r = await other.client.callTool({ name: 'echo__echo', arguments: { message: `other ${i}` } });
      expect(errorCode(r)).toBeUndefined();
      expect(textOf(r)).toBe(`other ${i}`);
    }
  });
});

describe("a child's requests to the agent", () => {
  /** A legacy agent whose sampling and elicitation handlers answer with its own name. */
  async function namedAgent(gw: HttpGateway, key: string, name: string): Promise<{ agent: LegacyAgent; asked: string[] }> {
    const asked: string[] = [];
    const agent = await h.legacy(gw, key, {
      capabilities: { sampling: {}, elicitation: {} },
      beforeConnect: (client) => {
        client.setRequestHandler(CreateMessageRequestSchema, async () => {
          asked.push('sampling');
          return { role: 'assistant', model: `model-of-${name}`, content: { type: 'text', text: `answer of ${name}` } };
        });
        client.setRequestHandler(ElicitRequestSchema, async () => {
          asked.push('elicitation');
          return name === 'alice' ? { action: 'accept', content: {} } : { action: 'decline' };
        });
      },
    });
    return { agent, asked };
  }

  test('sampling and elicitation from a child reach only the legacy agent whose call it is', async () => {
    const BOB = staticKeyEntry('bob1', 'bob', ['admin']);
    const gw = await h.start({ config: httpConfig({ servers: [{ id: 'leaker', ...fixture('hostile-leaker.js') }] }, [ALICE, BOB]) });
    await ready(gw, 'leaker__sample');
    const alice = await namedAgent(gw, ALICE_KEY, 'alice');
    const bob = await namedAgent(gw, staticKey('bob1'), 'bob');

    // One after the other: each push goes to the caller, and to no one else.
    const sampledA = textOf(await alice.agent.client.callTool({ name: 'leaker__sample', arguments: {} }));
    expect(sampledA).toContain('answer of alice');
    expect(alice.asked).toEqual(['sampling']);
    expect(bob.asked).toEqual([]);
    const sampledB = textOf(await bob.agent.client.callTool({ name: 'leaker__sample', arguments: {} }));
    expect(sampledB).toContain('answer of bob');
    expect(sampledB).not.toContain('alice');
    expect(alice.asked).toEqual(['sampling']);
    expect(bob.asked).toEqual(['sampling']);

    expect(textOf(await bob.agent.client.callTool({ name: 'leaker__elicit', arguments: {} }))).toBe('the agent answered: decline');
    expect(textOf(await alice.agent.client.callTool({ name: 'leaker__elicit', arguments: {} }))).toBe('the agent answered: accept');
    expect(alice.asked).toEqual(['sampling', 'elicitation']);
    expect(bob.asked).toEqual(['sampling', 'elicitation']);

    // At once: a push the gateway cannot attribute is refused, never sent to the other agent.
    const [a, b] = await Promise.all([
      alice.agent.client.callTool({ name: 'leaker__sample', arguments: {} }),
      bob.agent.client.callTool({ name: 'leaker__sample', arguments: {} }),
    ]);
    expect(textOf(a)).not.toContain('answer of bob');
    expect(textOf(b)).not.toContain('answer of alice');
    if (a.isError !== true) expect(textOf(a)).toContain('answer of alice');
    if (b.isError !== true) expect(textOf(b)).toContain('answer of bob');
    expect(alice.asked.filter((x) => x === 'sampling').length).toBeLessThanOrEqual(2);
    expect(bob.asked.filter((x) => x === 'sampling').length).toBeLessThanOrEqual(2);
  });

  test("a 2026-07-28 agent's call gets its own push (input-required), never a legacy agent connected beside it", async () => {
    const BOB = staticKeyEntry('bob1', 'bob', ['admin']);
    const gw = await h.start({ config: httpConfig({ servers: [{ id: 'leaker', ...fixture('hostile-leaker.js') }] }, [ALICE, BOB]) });
    await ready(gw, 'leaker__sample');
    const bob = await namedAgent(gw, staticKey('bob1'), 'bob');

    // With a sampling handler: the child's request comes back to it with its call's answer.
    const modernAsked: string[] = [];
    const modern = await h.modern(gw, ALICE_KEY, { capabilities: { sampling: {} } });
    modern.setRequestHandler('sampling/createMessage', async () => {
      modernAsked.push('sampling');
      return { role: 'assistant', model: 'model-of-modern', content: { type: 'text', text: 'answer of modern' } };
    });
    const sampled = await call(modern, 'leaker__sample', {});
    expect(textOf(sampled)).toContain('answer of modern');
    expect(modernAsked).toEqual(['sampling']);

    // Without one: refused for that call alone.
    const plain = await h.modern(gw, ALICE_KEY);
    const refused = await call(plain, 'leaker__sample', {});
    expect(textOf(refused)).not.toContain('answer of');
    expect(bob.asked).toEqual([]);
    expect(modernAsked).toEqual(['sampling']);
  });
});

describe('health, readiness, metrics', () => {
  test('/healthz without auth; /readyz once the servers are ready; /metrics 404 without metrics.token', async () => {
    const gw = await h.start({ config: httpConfig() });
    expect((await raw(`${gw.base}/healthz`)).status).toBe(200);
    await waitFor(async () => (await raw(`${gw.base}/readyz`)).status === 200, 30_000, '/readyz 200');
    const readiness = JSON.parse((await raw(`${gw.base}/readyz`)).body) as Obj;
    expect(readiness).toEqual({ status: 'ready', checks: { store: 'ok', 'server:echo': 'ok' } });
    expect((await raw(`${gw.base}/metrics`)).status).toBe(404);
    expect((await raw(`${gw.base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).status).toBe(404);
    expect((await raw(`${gw.base}/metrics`, { headers: { authorization: `Bearer ${ALICE_KEY}` } })).status).toBe(404);
  });

  test('/metrics with metrics.token: 401 without it, 401 with an MCP key, 200 with it', async () => {
    const gw = await h.start({ config: httpConfig({ metrics: { token: METRICS_TOKEN } }) });
    const without = await raw(`${gw.base}/metrics`);
    expect(without.status).toBe(401);
    expect(without.headers['www-authenticate']).toMatch(/^Bearer/);
    expect((await raw(`${gw.base}/metrics`, { headers: { authorization: `Bearer ${ALICE_KEY}` } })).status).toBe(401);
    const ok = await raw(`${gw.base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(ok.headers['content-type']).toContain('text/plain');
    expect(ok.body).toContain('mcp_gateway_sessions');
    // /healthz needs no token even then.
    expect((await raw(`${gw.base}/healthz`)).status).toBe(200);
  });
});

describe('OAuth protected-resource metadata (RFC 9728)', () => {
  test('both metadata paths name publicUrl and the authorization servers; a 401 points at them', async () => {
    const port = await freePort();
    const publicUrl = `http://127.0.0.1:${port}/mcp`;
    const gw = await h.start({
      listen: `127.0.0.1:${port}`,
      config: httpConfig({
        http: {
          publicUrl,
          oauth: { authorizationServers: ['https://auth.example.com'], requiredScopes: ['mcp:tools'] },
        },
      }),
    });
    expect(gw.url).toBe(publicUrl);
    for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
      const res = await raw(`${gw.base}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers['content-type']).toContain('application/json');
      const body = JSON.parse(res.body) as Obj;
      expect(body['resource']).toBe(publicUrl);
      expect(body['authorization_servers']).toEqual(['https://auth.example.com']);
      expect(body['scopes_supported']).toEqual(['mcp:tools']);
      expect(body['bearer_methods_supported']).toEqual(['header']);
    }
    const unauthenticated = await raw(`${gw.base}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: '{}',
    });
    expect(unauthenticated.status).toBe(401);
    const challenge = String(unauthenticated.headers['www-authenticate']);
    expect(challenge).toMatch(/^Bearer /);
    expect(challenge).toContain(`resource_metadata="http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp"`);
    // A static key is not an OAuth token: no scopes asked of it.
    const agent = await h.modern(gw.base + '/mcp', ALICE_KEY);
    expect(await waitListed(agent, 'echo__echo')).toContain('echo__echo');
  });

  test('without http.oauth the metadata is 404', async () => {
    const gw = await h.start({ config: httpConfig() });
    expect((await raw(`${gw.base}/.well-known/oauth-protected-resource`)).status).toBe(404);
    expect((await raw(`${gw.base}/.well-known/oauth-protected-resource/mcp`)).status).toBe(404);
  });
});

describe('SIGTERM under HTTP load', () => {
  test('20 slow calls in flight: each one answered is in the audit log, and the gateway exits 0', async () => {
    const gw = await h.start({
      config: httpConfig({ servers: [{ id: 'slow', ...fixture('slow.js') }], limits: { shutdownGraceMs: 10_000 } }),
    });
    await ready(gw, 'slow__sleep');
    const moderns: ModernClient[] = await Promise.all(Array.from({ length: 2 }, () => h.modern(gw, ALICE_KEY)));
    const legacies: LegacyAgent[] = await Promise.all(Array.from({ length: 2 }, () => h.legacy(gw, ALICE_KEY)));
    const calls = Array.from({ length: 20 }, (_, i) =>
      (i % 4 < 2
        ? call(moderns[i % 2]!, 'slow__sleep', { ms: 1_500 + i * 10 })
        : legacies[i % 2]!.client.callTool({ name: 'slow__sleep', arguments: { ms: 1_500 + i * 10 } })
      ).then(
        (result) => ({ i, ok: true as const, text: textOf(result), error: errorCode(result) }),
        (err: unknown) => ({ i, ok: false as const, err: String(err) }),
      ),
    );
    await new Promise((r) => setTimeout(r, 500));
    gw.process.kill('SIGTERM');
    await waitFor(() => /stopping \(SIGTERM\)/.test(gw.stderr()), 5_000, 'the stop');
    // New requests are refused while those in flight finish: 503 on a kept-alive connection, or no
    // new connection at all.
    const late = await call(moderns[0]!, 'slow__quick', {}).then(
      (result) => errorCode(result) ?? textOf(result),
      () => 'refused',
    );
    expect(late).not.toBe('ok');
    const lateRaw = await postMcp(gw, ALICE_KEY, initializeBody()).then(
      (res) => res.status,
      (err: NodeJS.ErrnoException) => err.code,
    );
    expect([503, 'ECONNREFUSED', 'ECONNRESET']).toContain(lateRaw);
    const outcomes = await Promise.all(calls);
    const exit = await gw.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    const answered = outcomes.filter((o) => o.ok && o.error === undefined);
    expect(answered.length, JSON.stringify(outcomes)).toBe(20);
    for (const o of answered) expect(o.ok && o.text).toBe(`slept ${1_500 + o.i * 10}`);
    const rows = auditRows(gw.dir).filter((r) => r['name'] === 'sleep');
    expect(rows.filter((r) => r['status'] === 'ok')).toHaveLength(answered.length);
    const recorded = new Set(rows.map((r) => JSON.parse(String(r['arguments'])).ms as number));
    for (const o of answered) expect(recorded.has(1_500 + o.i * 10)).toBe(true);
    expect(auditRows(gw.dir).filter((r) => r['name'] === 'quick' && r['status'] === 'ok')).toEqual([]);
  });
});

describe('subscriptions of several agents to one shared server', () => {
  test("one agent's unsubscribe does not end another's subscription at the server", async () => {
    const gw = await h.start({
      config: httpConfig({ servers: [{ id: 'conf', ...fixture('conformance-server.js') }] }),
    });
    const updates = { a: 0, b: 0 };
    const agent = (who: 'a' | 'b') =>
      h.legacy(gw, ALICE_KEY, {
        beforeConnect: (client) =>
          client.setNotificationHandler(ResourceUpdatedNotificationSchema, () => {
            updates[who]++;
          }),
      });
    const a = await agent('a');
    const b = await agent('b');
    await waitFor(async () => ((await a.client.listResources()).resources.length > 0 ? true : undefined), 20_000, 'the resources');
    await a.client.subscribeResource({ uri: 'test://watched-resource' });
    await b.client.subscribeResource({ uri: 'test://watched-resource' });
    // The fixture reports an update of a subscribed resource every 2 s.
    await waitFor(() => (updates.a > 0 && updates.b > 0 ? true : undefined), 10_000, 'an update to both');
    await a.client.unsubscribeResource({ uri: 'test://watched-resource' });
    const seen = updates.b;
    await waitFor(() => (updates.b > seen ? true : undefined), 10_000, 'another update to b after a unsubscribed');
    // Both requests went through the pipeline and were recorded.
    const rows = auditRows(gw.dir).filter((r) => r['method'] === 'resources/unsubscribe');
    expect(rows.map((r) => r['status'])).toEqual(['ok']);
  });
});

describe('a 2026-07-28 agent listening for resource updates over HTTP', () => {
  test('subscribed through the pipeline; updates reach only callers allowed the resource, and end with the stream', async () => {
    const gw = await h.start({
      config: httpConfig({
        servers: [{ id: 'conf', ...fixture('conformance-server.js') }],
        policies: [
          ADMIN,
          { id: 'reader', roles: ['reader'], rules: [{ resource: 'test://watched-resource', action: 'deny' }, { action: 'allow' }] },
        ],
      }),
    });
    const alice = await h.modern(gw, ALICE_KEY);
    const rita = await h.modern(gw, RITA_KEY);
    await waitFor(async () => ((await alice.listResources()).resources.length > 0 ? true : undefined), 20_000, 'the resources');
    const updated = { alice: 0, rita: 0 };
    alice.setNotificationHandler('notifications/resources/updated', async () => {
      updated.alice++;
    });
    rita.setNotificationHandler('notifications/resources/updated', async () => {
      updated.rita++;
    });
    const ritaListen = await rita.listen({ resourceSubscriptions: ['test://watched-resource'] });
    const aliceListen = await alice.listen({ resourceSubscriptions: ['test://watched-resource'] });
    // The fixture reports an update of a subscribed resource every 2 s.
    await waitFor(() => (updated.alice >= 2 ? true : undefined), 15_000, 'updates to alice');
    expect(updated.rita).toBe(0);
    expect(ritaListen.honoredFilter.resourceSubscriptions ?? []).toEqual([]);
    const rows = auditRows(gw.dir).filter((r) => r['method'] === 'resources/subscribe');
    expect(rows.map((r) => [r['consumer_id'], r['status']])).toEqual(
      expect.arrayContaining([
        ['alice', 'ok'],
        ['rita', 'denied'],
      ]),
    );
    // The stream ends: so does the subscription at the server (recorded).
    await aliceListen.close();
    await waitFor(
      () => (auditRows(gw.dir).some((r) => r['method'] === 'resources/unsubscribe' && r['consumer_id'] === 'alice') ? true : undefined),
      10_000,
      'the unsubscribe',
    );
  });
});

describe('TLS (http.tls)', () => {
  test('serves HTTPS with the certificate and key the config names (paths relative to the config file)', async () => {
    const dir = tempDir('mcpgw-tls-');
    mkdirSync(path.join(dir, 'tls'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout',
        path.join(dir, 'tls/key.pem'),
        '-out',
        path.join(dir, 'tls/cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    // Started elsewhere: the paths are the config file's, not the working folder's.
    const gw = await h.start({
      dir,
      cwd: tempDir('mcpgw-cwd-'),
      config: httpConfig({ http: { tls: { cert: 'tls/cert.pem', key: 'tls/key.pem' } } }),
    });
    expect(gw.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const ca = readFileSync(path.join(dir, 'tls/cert.pem'));
    const answer = await new Promise<{ status: number; session: unknown }>((resolve, reject) => {
      const req = httpsRequest(gw.url, { method: 'POST', ca, headers: mcpHeaders(ALICE_KEY) }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, session: res.headers['mcp-session-id'] }));
      });
      req.on('error', reject);
      req.end(initializeBody());
    });
    expect(answer.status).toBe(200);
    expect(typeof answer.session).toBe('string');
    // Plain HTTP to the TLS port gets no MCP answer.
    const plain = await raw(`http://127.0.0.1:${new URL(gw.url).port}/healthz`).then(
      (r) => r.status,
      (err: NodeJS.ErrnoException) => err.code ?? 'error',
    );
    expect(plain).not.toBe(200);
  });
});
