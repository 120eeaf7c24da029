/**
 * Scale-out (issue 14): three `serve --http` replicas on one PostgreSQL database and one Redis,
 * behind a round-robin without affinity, as real processes. Agents' requests alternate between
 * replicas; the audit rows of all of them form one gapless chain that `audit verify` checks; one
 * bucket is exact across replicas; a key revoked with the CLI is refused by every replica on its
 * next request; SIGKILL of a replica under load loses no committed record of an answered call;
 * and PostgreSQL or Redis going away (a TCP gate in front of each, cut by the test) gives clear
 * errors, forwards nothing unrecorded, and recovers when they return.
 * Skipped, with a message naming the service, where PostgreSQL or Redis does not answer.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { call, errorCode, fixture, textOf, waitFor, waitListed, type Obj } from '../helpers/gateway.js';
import {
  HttpHarness,
  LEGACY_PROTOCOL,
  inSession,
  mcpHeaders,
  raw,
  staticKey,
  staticKeyEntry,
  type HttpGateway,
  type ModernClient,
} from '../helpers/http.js';
import { freshDatabase, pgAnswers, pgQuery, type FreshDatabase } from '../helpers/pg.js';
import { dropRedisPrefix, redisAnswers, redisPrefix, REDIS_URL } from '../helpers/redis.js';
import { RoundRobin, TcpGate } from '../helpers/replicas.js';
import { cli } from '../helpers/security.js';

const pgUp = await pgAnswers('replicas e2e');
const redisUp = await redisAnswers('replicas e2e');
const up = pgUp && redisUp;

const h = new HttpHarness();
const PREFIX = redisPrefix('replicas');
let db: FreshDatabase | undefined;
const proxies: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  if (up) db = await freshDatabase('replicas');
});
afterEach(async () => {
  await h.closeAll();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});
afterAll(async () => {
  await db?.drop();
  if (redisUp) await dropRedisPrefix(PREFIX);
});

const ADMIN = { id: 'admin', roles: ['admin'], rules: [{ action: 'allow' }, { server: 'gateway', action: 'allow' }] };
const ALICE_KEY = staticKey('alice1');

function replicaConfig(database: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    database,
    auth: { apiKeys: { static: [staticKeyEntry('alice1', 'alice', ['admin']), staticKeyEntry('bob1', 'bob', ['admin'])] } },
    policies: [ADMIN],
    rateLimit: { enabled: false },
    redis: { url: REDIS_URL, keyPrefix: PREFIX },
    servers: [{ id: 'echo', ...fixture('echo.js') }],
    ...overrides,
  };
}

/** `n` replicas on one config, and a round-robin in front of them. */
async function replicas(n: number, config: Record<string, unknown>, tool = 'echo__echo'): Promise<{ gws: HttpGateway[]; lb: RoundRobin }> {
  const gws: HttpGateway[] = [];
  // Started together: they migrate one schema between them.
  gws.push(...(await Promise.all(Array.from({ length: n }, () => h.start({ config })))));
  const alive = () => gws.filter((g) => g.process.exitCode === null && g.process.signalCode === null);
  const lb = await RoundRobin.start(alive);
  proxies.push(lb);
  for (const gw of gws) await waitListed(await h.modern(gw, ALICE_KEY), tool);
  return { gws, lb };
}

/** Waits (up to 10 s) until the agent's calls are answered again. */
async function answersAgain(agent: ModernClient): Promise<void> {
  await waitFor(
    async () => ((await call(agent, 'echo__echo', { message: 'back' }).then(textOf, () => '')) === 'back' ? true : undefined),
    10_000,
    'calls answered again',
  );
}

async function verify(configFile: string, env: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  const run = await cli(['audit', 'verify', '--config', configFile], { env });
  return { code: run.code, out: run.stdout + run.stderr };
}

describe.skipIf(!up)('three replicas on PostgreSQL and Redis, no affinity', () => {
  test('requests alternate between replicas; their rows form one gapless chain that audit verify checks', async () => {
    const { gws, lb } = await replicas(3, replicaConfig(db!.url));
    const agents = await Promise.all(Array.from({ length: 4 }, () => h.modern(lb.url, ALICE_KEY)));
    const before = lb.served.length;
    const answers = await Promise.all(
      agents.flatMap((agent, a) => Array.from({ length: 15 }, (_, i) => call(agent, 'echo__echo', { message: `a${a}-${i}` }))),
    );
    expect(answers.map(textOf).sort()).toEqual(agents.flatMap((_, a) => Array.from({ length: 15 }, (_, i) => `a${a}-${i}`)).sort());
    // Every replica served some of them.
    expect(new Set(lb.served.slice(before))).toEqual(new Set([0, 1, 2]));

    const rows = await pgQuery<{ seq: number; arguments: string }>(
      db!.url,
      "SELECT seq, arguments FROM audit_log WHERE name = 'echo' ORDER BY seq",
    );
    for (const a of agents.keys()) for (let i = 0; i < 15; i++) expect(rows.some((r) => r.arguments.includes(`"a${a}-${i}"`))).toBe(true);
    const seqs = (await pgQuery<{ seq: string }>(db!.url, 'SELECT seq FROM audit_log ORDER BY seq')).map((r) => Number(r.seq));
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    const result = await verify(gws[0]!.configFile);
    expect(result.out).toMatch(/^ok: \d+ rows verified/);
    expect(result.code).toBe(0);
  });

  test('2025-era session agents through the round-robin: any replica serves their session; DELETE ends it on all', async () => {
    const { gws, lb } = await replicas(3, replicaConfig(db!.url));
    const agents = await Promise.all(Array.from({ length: 3 }, () => h.legacy(lb.url, ALICE_KEY)));
    const before = lb.served.length;
    for (const [a, agent] of agents.entries()) {
      expect((await agent.client.listTools()).tools.map((t) => t.name)).toContain('echo__echo');
      for (let i = 0; i < 6; i++)
        expect(textOf(await call(agent.client as never, 'echo__echo', { message: `s${a}-${i}` }))).toBe(`s${a}-${i}`);
    }
    expect(new Set(lb.served.slice(before))).toEqual(new Set([0, 1, 2]));

    // Each replica serves a session id it did not issue; another caller's, or a changed one, reads as unknown.
    const id = agents[0]!.sessionId;
    for (const gw of gws) expect((await inSession(gw, ALICE_KEY, id)).status).toBe(200);
    for (const gw of gws) expect((await inSession(gw, staticKey('bob1'), id)).status).toBe(404);
    const flipped = `${id.slice(0, 20)}${id[20] === 'A' ? 'B' : 'A'}${id.slice(21)}`;
    for (const gw of gws) expect((await inSession(gw, ALICE_KEY, flipped)).status).toBe(404);

    // DELETE through one replica: no replica serves the session after.
    const deleted = await raw(gws[2]!.url, {
      method: 'DELETE',
      headers: mcpHeaders(ALICE_KEY, { 'mcp-session-id': id, 'mcp-protocol-version': LEGACY_PROTOCOL }),
    });
    expect(deleted.status).toBe(200);
    for (const gw of gws) expect((await inSession(gw, ALICE_KEY, id)).status).toBe(404);
    // The other agents go on.
    expect(textOf(await call(agents[1]!.client as never, 'echo__echo', { message: 'still' }))).toBe('still');
  });

  test("a 2025-era agent's resource updates reach its GET stream from whichever replica its subscription is on (Redis pub/sub)", async () => {
    const { lb } = await replicas(
      3,
      replicaConfig(db!.url, { servers: [{ id: 'conf', ...fixture('conformance-server.js') }] }),
      'conf__test_simple_text',
    );
    let updates = 0;
    const agent = await h.legacy(lb.url, ALICE_KEY, {
      beforeConnect: (client) =>
        client.setNotificationHandler(ResourceUpdatedNotificationSchema, () => {
          updates++;
        }),
    });
    await waitFor(async () => ((await agent.client.listResources()).resources.length > 0 ? true : undefined), 20_000, 'the resources');
    // Subscribed through one replica (the next in the round-robin); the GET stream is on another.
    await agent.client.subscribeResource({ uri: 'test://watched-resource' });
    // The fixture reports an update of a subscribed resource every 2 s.
    await waitFor(() => (updates >= 2 ? true : undefined), 15_000, 'updates on the GET stream');
  });

  test("a 2026-07-28 agent's input-required retry that reaches another replica is forwarded to the one holding the call", async () => {
    const { gws, lb } = await replicas(
      3,
      replicaConfig(db!.url, { servers: [{ id: 'leaker', ...fixture('hostile-leaker.js') }] }),
      'leaker__sample',
    );
    const agent = await h.modern(lb.url, ALICE_KEY, { capabilities: { sampling: {} } });
    let asked = 0;
    agent.setRequestHandler('sampling/createMessage', async () => {
      asked++;
      return { role: 'assistant', model: 'm', content: { type: 'text', text: `answer ${asked}` } };
    });
    // The call and its retry are consecutive requests: the round-robin sends them to different replicas.
    for (let i = 1; i <= 4; i++) expect(textOf(await call(agent, 'leaker__sample', {}))).toContain(`answer ${i}`);

    // A forwarded request must carry a valid tag of these replicas.
    const forged = await raw(gws[0]!.url, {
      method: 'POST',
      headers: mcpHeaders(ALICE_KEY, { 'mcp-gateway-replica': `${Date.now()}.AAAA` }),
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
    });
    expect(forged.status).toBe(403);
  });

  test('one bucket of 20 across three replicas admits 20 calls, not 60', async () => {
    const { lb } = await replicas(
      3,
      replicaConfig(db!.url, {
        rateLimit: { store: 'redis', defaultPerMinute: 20, burst: 20 },
        redis: { url: REDIS_URL, keyPrefix: `${PREFIX}exact:` },
      }),
    );
    const agent = await h.modern(lb.url, ALICE_KEY);
    const outcomes = await Promise.all(Array.from({ length: 45 }, (_, i) => call(agent, 'echo__echo', { message: `r${i}` })));
    const codes = outcomes.map((o) => errorCode(o) ?? 'ok');
    expect(codes.filter((c) => c === 'ok')).toHaveLength(20);
    expect(codes.filter((c) => c === 'RATE_LIMITED')).toHaveLength(25);
  });

  test('a key revoked with the CLI is refused by every replica on its next request', async () => {
    const config = replicaConfig(db!.url);
    const { gws } = await replicas(3, config);
    const created = await cli(['keys', 'create', 'bob-laptop', 'bob', 'admin', '--json', '--config', gws[0]!.configFile]);
    expect(created.code).toBe(0);
    const { key, id } = JSON.parse(created.stdout) as { key: string; id: string };
    const clients: ModernClient[] = [];
    for (const gw of gws) {
      const client = await h.modern(gw, key);
      expect(textOf(await call(client, 'echo__echo', { message: 'before' }))).toBe('before');
      clients.push(client);
    }
    const revoked = await cli(['keys', 'revoke', id, '--config', gws[1]!.configFile]);
    expect(revoked.code).toBe(0);
    for (const client of clients) {
      const refused = await call(client, 'echo__echo', { message: 'after' }).catch((err: Error) => ({ thrown: err.message }));
      expect(JSON.stringify(refused)).toMatch(/revoked|not a valid gateway key|401|Unauthorized/i);
    }
  });

  test('SIGKILL of a replica under load: every answered call has its committed row, the chain verifies, agents go on', async () => {
    const { gws, lb } = await replicas(3, replicaConfig(db!.url));
    const answered = new Set<string>();
    let failures = 0;
    let stop = false;
    const agents = await Promise.all(Array.from({ length: 6 }, () => h.modern(lb.url, ALICE_KEY)));
    const load = agents.map(async (agent, a) => {
      for (let i = 0; !stop; i++) {
        const message = `kill-${a}-${i}`;
        try {
          const result = await call(agent, 'echo__echo', { message }, { timeout: 10_000 });
          if (textOf(result) === message) answered.add(message);
          else failures++;
        } catch {
          failures++;
        }
      }
    });
    await new Promise((r) => setTimeout(r, 1_500));
    const answeredBeforeKill = answered.size;
    gws[1]!.process.kill('SIGKILL');
    await gws[1]!.exited;
    await new Promise((r) => setTimeout(r, 1_500));
    const answeredAfterKill = answered.size - answeredBeforeKill;
    stop = true;
    await Promise.all(load);
    expect(answeredBeforeKill).toBeGreaterThan(20);
    // The other replicas went on serving (the round-robin skips the dead one).
    expect(answeredAfterKill).toBeGreaterThan(20);
    // At most the calls in flight at the killed replica failed.
    expect(failures).toBeLessThanOrEqual(agents.length);

    const recorded = new Set(
      (await pgQuery<{ arguments: string }>(db!.url, "SELECT arguments FROM audit_log WHERE name = 'echo'")).map(
        (r) => (JSON.parse(r.arguments) as Obj)['message'] as string,
      ),
    );
    const unrecorded = [...answered].filter((m) => !recorded.has(m));
    expect(unrecorded).toEqual([]);
    const result = await verify(gws[0]!.configFile);
    expect(result.out).toMatch(/^ok: \d+ rows verified/);

    // The next requests of the same agents succeed on the replicas left.
    for (const agent of agents) expect(textOf(await call(agent, 'echo__echo', { message: 'after' }))).toBe('after');
  });
});

describe.skipIf(!up)('PostgreSQL or Redis going away mid-run', () => {
  test('PostgreSQL cut: the record of a call in flight waits for it; later calls are refused, not forwarded; recovery when it returns', async () => {
    const pgUrl = new URL(db!.url);
    const gate = await TcpGate.start(pgUrl.hostname, Number(pgUrl.port || 5432));
    proxies.push(gate);
    pgUrl.host = `127.0.0.1:${gate.port}`;
    const config = replicaConfig(pgUrl.toString(), {
      servers: [
        { id: 'echo', ...fixture('echo.js') },
        { id: 'slow', ...fixture('slow.js') },
      ],
    });
    const gw = await h.start({ config });
    const agent = await h.modern(gw, ALICE_KEY);
    await waitListed(agent, 'slow__sleep');
    expect(textOf(await call(agent, 'echo__echo', { message: 'up' }))).toBe('up');

    // Forwarded while the database answered; it ends after the database went away: its record waits (the reply with it).
    const inFlight = call(agent, 'slow__sleep', { ms: 1_500 });
    await new Promise((r) => setTimeout(r, 300));
    gate.cut();
    await new Promise((r) => setTimeout(r, 2_500));
    // Known to be down now: refused at once, not forwarded, saying why.
    const refused = await call(agent, 'echo__echo', { message: 'down-1' });
    expect(errorCode(refused)).toBe('INTERNAL_ERROR');
    expect(textOf(refused)).toMatch(/audit log cannot be written/);
    const ready = await raw(`${gw.base}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.body).toMatch(/store/);

    gate.restore();
    expect(textOf(await inFlight)).toBe('slept 1500');
    await answersAgain(agent);
    const inFlightRows = await pgQuery(db!.url, "SELECT seq FROM audit_log WHERE name = 'sleep' AND status = 'ok'");
    expect(inFlightRows).toHaveLength(1);
    // Nothing that was refused reached the child or the chain as a success, and the chain holds.
    const rows = await pgQuery<{ arguments: string; status: string }>(
      db!.url,
      "SELECT arguments, status FROM audit_log WHERE name = 'echo'",
    );
    expect(rows.filter((r) => /down-/.test(r.arguments))).toEqual([]);
    const result = await verify(gw.configFile);
    expect(result.out).toMatch(/^ok: \d+ rows verified/);
  });

  test('Redis cut: calls are refused SERVER_UNAVAILABLE (fail closed), recorded; admitted again when it returns', async () => {
    const gate = await TcpGate.start('127.0.0.1', Number(new URL(REDIS_URL).port || 6379));
    proxies.push(gate);
    const config = replicaConfig(db!.url, {
      rateLimit: { store: 'redis', defaultPerMinute: 1000 },
      redis: { url: `redis://127.0.0.1:${gate.port}`, keyPrefix: `${PREFIX}cut:`, timeoutMs: 300 },
    });
    const gw = await h.start({ config });
    const agent = await h.modern(gw, ALICE_KEY);
    await waitListed(agent, 'echo__echo');
    expect(textOf(await call(agent, 'echo__echo', { message: 'up' }))).toBe('up');
    gate.cut();
    const refused = await call(agent, 'echo__echo', { message: 'redis-down' });
    expect(errorCode(refused)).toBe('SERVER_UNAVAILABLE');
    gate.restore();
    await answersAgain(agent);
    const rows = await pgQuery<{ status: string; decided_by: string }>(
      db!.url,
      "SELECT status, decided_by FROM audit_log WHERE name = 'echo' AND arguments LIKE '%redis-down%'",
    );
    expect(rows.map((r) => r.decided_by)).toEqual(['ratelimit:store']);
  });
});
