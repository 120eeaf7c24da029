/**
 * The Streamable HTTP front against hostile or careless clients (design §12), through real
 * `mcp-gateway serve --http` processes and raw HTTP where an SDK client would not misbehave:
 * missing, malformed, unknown, revoked and mis-addressed credentials; someone else's session id;
 * DNS rebinding (Host) and cross-site (Origin) requests; a huge body; a flood without credentials;
 * abandoned sessions (memory, reaping); a client that never finishes its headers; and one
 * consumer holding many requests open.
 */
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { SignJWT, type JWTPayload } from 'jose';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { call, errorCode, fixture, textOf, waitFor, waitListed, type Obj } from '../helpers/gateway.js';
import {
  HttpHarness,
  LegacyClient,
  freePort,
  initializeBody,
  inSession,
  mcpHeaders,
  metric,
  openRawSession,
  postMcp,
  raw,
  staticKey,
  staticKeyEntry,
  type RawResponse,
} from '../helpers/http.js';
import { serveJwks, type JwksServer } from '../helpers/jwks.js';
import { auditRows, cli, rssBytes } from '../helpers/security.js';

const h = new HttpHarness();
afterEach(() => h.closeAll());

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
const ADMIN = { id: 'admin', roles: ['admin'], rules: [{ action: 'allow' }, { server: 'gateway', action: 'allow' }] };
const ALICE = staticKeyEntry('alice1', 'alice', ['admin']);
const BOB = staticKeyEntry('bob1', 'bob', ['admin']);
const ALICE_KEY = staticKey('alice1');
const BOB_KEY = staticKey('bob1');

function hostileConfig(http: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    database: './gateway.db',
    auth: { apiKeys: { static: [ALICE, BOB] } },
    policies: [ADMIN],
    rateLimit: { enabled: false },
    servers: [{ id: 'echo', ...fixture('echo.js') }],
    http,
    ...overrides,
  };
}

const TOOLS_LIST = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });

/** The JSON-RPC error code of a raw error reply. */
function rpcCode(res: RawResponse): number | undefined {
  return (JSON.parse(res.body) as { error?: { code?: number } }).error?.code;
}

/**
 * POSTs a body of `total` bytes (a JSON string full of "x") in 64 KiB pieces, as a client
 * that notices an early answer does: it stops sending once the response has come. Declared: with
 * Content-Length, and nothing of the body until the gateway answered the headers (or 2 s passed).
 * Resolves with the response, or with the connection error that came before any response.
 */
function sendBody(
  gw: { base: string },
  bearer: string,
  total: number,
  declared: boolean,
): Promise<{ status: number; response: RawResponse } | { status: 'reset'; code: string }> {
  return new Promise((resolve) => {
    let answered = false;
    let sent = 0;
    const headers: Record<string, string | number> = {
      authorization: `Bearer ${bearer}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(declared ? { 'content-length': total } : { 'transfer-encoding': 'chunked' }),
    };
    const url = new URL(`${gw.base}/mcp`);
    const req = httpRequest({ host: url.hostname, port: url.port, path: '/mcp', method: 'POST', agent: false, headers }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      const done = () =>
        resolve({
          status: res.statusCode ?? 0,
          response: { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') },
        });
      res.on('end', done);
      res.on('aborted', done);
      res.on('error', done);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (!answered) resolve({ status: 'reset', code: err.code ?? err.message });
    });
    const piece = Buffer.alloc(64 * 1024, 'x');
    const pump = (): void => {
      if (answered) return;
      if (sent >= total) return void req.end();
      sent += piece.length;
      if (req.write(piece)) setImmediate(pump);
      else req.once('drain', () => setImmediate(pump));
    };
    if (declared) {
      req.flushHeaders();
      setTimeout(pump, 2_000);
    } else pump();
  });
}

describe('credentials', () => {
  test('no token, a malformed Authorization header, an unknown key or a wrong secret: 401 with a Bearer challenge', async () => {
    const gw = await h.start({ config: hostileConfig({ unauthenticatedPerMinute: 1_000 }) });
    const cases: [string, Record<string, string>][] = [
      ['no Authorization', {}],
      ['Basic', { authorization: 'Basic YWxpY2U6c2VjcmV0' }],
      ['Bearer without a token', { authorization: 'Bearer' }],
      ['Bearer with two tokens', { authorization: `Bearer ${ALICE_KEY} ${ALICE_KEY}` }],
      ['the key without Bearer', { authorization: ALICE_KEY }],
      ['not a gateway key', { authorization: 'Bearer not-a-key' }],
      ['an unknown key id', { authorization: `Bearer ${staticKey('nosuch1')}` }],
      ['a known id, a wrong secret', { authorization: `Bearer gw_alice1_${'w'.repeat(43)}` }],
    ];
    for (const [what, headers] of cases) {
      const res = await postMcp(gw, undefined, initializeBody(), headers);
      expect(res.status, what).toBe(401);
      expect(String(res.headers['www-authenticate']), what).toMatch(/^Bearer\b/);
      expect(res.headers['mcp-session-id'], what).toBeUndefined();
      // The challenge never repeats the credential.
      const credential = headers['authorization']?.split(' ').pop() ?? '';
      if (credential.length >= 8) expect(JSON.stringify(res.headers) + res.body, what).not.toContain(credential);
    }
    // The valid key still works.
    expect((await postMcp(gw, ALICE_KEY, initializeBody())).status).toBe(200);
  });

  describe('JWTs (a JWKS on loopback, http.publicUrl as the audience, required scopes)', () => {
    let jwks: JwksServer;
    beforeAll(async () => {
      jwks = await serveJwks();
    });
    afterAll(() => jwks?.close());

    const now = () => Math.floor(Date.now() / 1000);
    function jwt(claims: JWTPayload, aud: string, exp = now() + 3_600): Promise<string> {
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: 'A' })
        .setAudience(aud)
        .setIssuedAt()
        .setExpirationTime(exp)
        .sign(jwks.a.privateKey);
    }

    test('wrong aud 401, expired 401, a missing required scope 403 insufficient_scope; the right token passes', async () => {
      const port = await freePort();
      const publicUrl = `http://127.0.0.1:${port}/mcp`;
      const gw = await h.start({
        listen: `127.0.0.1:${port}`,
        config: hostileConfig(
          {
            publicUrl,
            unauthenticatedPerMinute: 1_000,
            oauth: { authorizationServers: ['https://auth.example.com'], requiredScopes: ['mcp:tools'] },
          },
          {
            auth: { apiKeys: { static: [ALICE] }, jwt: { jwksUri: jwks.uri, algorithms: ['RS256'], rolesClaim: 'roles' } },
          },
        ),
      });
      const claims = { sub: 'jay', roles: ['admin'], scope: 'openid mcp:tools' };
      const good = await jwt(claims, publicUrl);
      // A trailing slash on the audience is the same resource.
      const goodSlash = await jwt({ ...claims, sub: 'jay2' }, `${publicUrl}/`);
      const scp = await jwt({ sub: 'jay3', roles: ['admin'], scp: ['mcp:tools'] }, publicUrl);
      const wrongAud = await jwt(claims, 'https://other.example.com/mcp');
      const otherPort = await jwt(claims, `http://127.0.0.1:${port + 1}/mcp`);
      const expired = await jwt(claims, publicUrl, now() - 3_600);
      const noScope = await jwt({ sub: 'jay', roles: ['admin'], scope: 'openid' }, publicUrl);
      const noScopeClaim = await jwt({ sub: 'jay', roles: ['admin'] }, publicUrl);

      for (const [what, token] of [
        ['good', good],
        ['aud with a trailing slash', goodSlash],
        ['scopes in scp', scp],
      ] as const) {
        const res = await postMcp(gw, token, initializeBody());
        expect(res.status, `${what}: ${res.body}`).toBe(200);
        expect(res.headers['mcp-session-id'], what).toBeDefined();
      }
      for (const [what, token] of [
        ['wrong aud', wrongAud],
        ['aud of another port', otherPort],
        ['expired', expired],
      ] as const) {
        const res = await postMcp(gw, token, initializeBody());
        expect(res.status, what).toBe(401);
        const challenge = String(res.headers['www-authenticate']);
        expect(challenge, what).toMatch(/^Bearer /);
        expect(challenge, what).toContain('error="invalid_token"');
        expect(challenge, what).toContain(`resource_metadata="http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp"`);
      }
      for (const [what, token] of [
        ['scope without mcp:tools', noScope],
        ['no scope claim', noScopeClaim],
      ] as const) {
        const res = await postMcp(gw, token, initializeBody());
        expect(res.status, what).toBe(403);
        const challenge = String(res.headers['www-authenticate']);
        expect(challenge, what).toContain('error="insufficient_scope"');
        expect(challenge, what).toContain('scope="mcp:tools"');
      }
      // A gateway key is not an OAuth token: the required scopes are not asked of it.
      expect((await postMcp(gw, ALICE_KEY, initializeBody())).status).toBe(200);
    });

    test("a JWT session: a fresh token of the same subject continues it, another subject's is 404; it ends when its token expires", async () => {
      const gw = await h.start({
        logLevel: 'debug',
        // Sweep every 2.5 s, idle after 10 s: a session ended at ~5 s was ended for its token.
        config: hostileConfig(
          { sessions: { idleMs: 10_000 } },
          {
            auth: { jwt: { jwksUri: jwks.uri, algorithms: ['RS256'], rolesClaim: 'roles', audience: 'mcp-gateway', clockToleranceSec: 0 } },
            metrics: { token: METRICS_TOKEN },
          },
        ),
      });
      const claims = { sub: 'jay', roles: ['admin'] };
      const first = await jwt(claims, 'mcp-gateway');
      const session = await openRawSession(gw, first);
      // A refreshed token (another iat, exp) of the same subject: the same owner.
      const refreshed = await jwt({ ...claims, jti: 'refreshed' }, 'mcp-gateway', now() + 7_200);
      expect((await inSession(gw, refreshed, session)).status).toBe(200);
      const someoneElse = await jwt({ sub: 'kim', roles: ['admin'] }, 'mcp-gateway');
      expect((await inSession(gw, someoneElse, session)).status).toBe(404);

      const shortLived = await jwt(claims, 'mcp-gateway', now() + 3);
      const ending = await openRawSession(gw, shortLived);
      expect((await inSession(gw, shortLived, ending)).status).toBe(200);
      expect(await metric(gw, METRICS_TOKEN, 'mcp_gateway_sessions')).toBe(2);
      await waitFor(async () => (await inSession(gw, shortLived, ending)).status === 401, 10_000, 'the token to expire');
      await waitFor(async () => (await metric(gw, METRICS_TOKEN, 'mcp_gateway_sessions')) === 1, 10_000, 'the session to end');
      expect(gw.stderr()).toMatch(/session of "jay" ended: the token expired/);
      // The first session (same subject, a token still valid) goes on.
      expect((await inSession(gw, refreshed, session)).status).toBe(200);
    });
  });

  test('a database key revoked mid-session: the next request is 401 and its legacy session ends', async () => {
    const gw = await h.start({
      logLevel: 'debug',
      // idleMs 4 s: the sweep (which also re-checks credentials) runs every second.
      config: hostileConfig({ sessions: { idleMs: 4_000 } }, { metrics: { token: METRICS_TOKEN } }),
    });
    const created = await cli(['keys', 'create', 'revokee', 'rev', 'admin', '--json', '--config', gw.configFile]);
    expect(created.code, created.stderr).toBe(0);
    const { key, id } = JSON.parse(created.stdout) as { key: string; id: string };

    const agent = await h.legacy(gw, key);
    await waitFor(async () => (await agent.client.listTools()).tools.some((t) => t.name === 'echo__echo'), 30_000, 'echo listed');
    expect(textOf(await agent.client.callTool({ name: 'echo__echo', arguments: { message: 'before' } }))).toBe('before');
    const other = await h.legacy(gw, ALICE_KEY);
    expect(await metric(gw, METRICS_TOKEN, 'mcp_gateway_sessions')).toBe(2);

    const revoked = await cli(['keys', 'revoke', id, '--config', gw.configFile]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const refused = await agent.client.callTool({ name: 'echo__echo', arguments: { message: 'after' } }).then(
      () => undefined,
      (err: unknown) => err as { code?: number },
    );
    expect(refused, 'the call after revocation should fail').toBeDefined();
    expect(refused!.code).toBe(401);
    const rawAfter = await inSession(gw, key, agent.sessionId);
    expect(rawAfter.status).toBe(401);

    // The sweep ends the session (its GET stream kept it from idling): one session is left.
    await waitFor(async () => (await metric(gw, METRICS_TOKEN, 'mcp_gateway_sessions')) === 1, 10_000, 'the revoked session to end');
    expect(gw.stderr()).toMatch(new RegExp(`session of "rev" ended: key ${id} was revoked`));
    // The other consumer's session is untouched.
    expect(textOf(await other.client.callTool({ name: 'echo__echo', arguments: { message: 'other' } }))).toBe('other');
  });

  test("another caller's session id reads as an unknown one: 404", async () => {
    const gw = await h.start({ config: hostileConfig() });
    const alices = await openRawSession(gw, ALICE_KEY);
    expect((await inSession(gw, ALICE_KEY, alices)).status).toBe(200);
    const stolen = await inSession(gw, BOB_KEY, alices);
    const unknown = await inSession(gw, BOB_KEY, 'no-such-session-id-000000000000');
    expect(stolen.status).toBe(404);
    expect(unknown.status).toBe(404);
    expect(rpcCode(stolen)).toBe(-32001);
    expect(stolen.body).toBe(unknown.body);
    // Nor can Bob end it.
    const deleted = await raw(`${gw.base}/mcp`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${BOB_KEY}`, 'mcp-session-id': alices, 'mcp-protocol-version': '2025-06-18' },
    });
    expect(deleted.status).toBe(404);
    // Nor a GET stream on it.
    const stream = await raw(`${gw.base}/mcp`, {
      method: 'GET',
      headers: { authorization: `Bearer ${BOB_KEY}`, accept: 'text/event-stream', 'mcp-session-id': alices },
    });
    expect(stream.status).toBe(404);
    expect((await inSession(gw, ALICE_KEY, alices)).status).toBe(200);
  });
});

describe('anonymous callers (auth.anonymous: true)', () => {
  test('no Authorization header: served as consumer "anonymous" under its policy; a header that is there must be valid', async () => {
    const gw = await h.start({
      config: hostileConfig(
        {},
        {
          auth: { anonymous: true, apiKeys: { static: [ALICE, BOB] } },
          policies: [ADMIN, { id: 'anon', roles: ['anonymous'], rules: [{ tool: 'echo', action: 'allow' }] }],
          servers: [{ id: 'echo', ...fixture('echo.js'), prefix: '' }],
        },
      ),
    });
    const client = new LegacyClient({ name: 'anonymous-agent', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(gw.url)));
    try {
      let names: string[] = [];
      for (let i = 0; i < 100 && !names.includes('echo'); i++) {
        names = (await client.listTools()).tools.map((t) => t.name);
        if (!names.includes('echo')) await new Promise((r) => setTimeout(r, 100));
      }
      expect(names).toContain('echo');
      expect(names).not.toContain('whoami');
      expect(textOf(await client.callTool({ name: 'echo', arguments: { message: 'hi' } }))).toBe('hi');
      // A tool it may never use is refused as unknown, under the name the agent sees (prefix "").
      const refused = await client.callTool({ name: 'whoami', arguments: {} });
      expect(errorCode(refused)).toBe('UNKNOWN_TOOL');
      expect(textOf(refused)).toContain('"whoami"');
      expect(textOf(refused)).not.toContain('echo__');
    } finally {
      await client.close();
    }
    const rows = auditRows(gw.dir).filter((r) => r['name'] === 'echo');
    expect(rows.map((r) => r['consumer_id'])).toContain('anonymous');
    // A credential that is there is checked: a wrong one is not the anonymous caller.
    expect((await postMcp(gw, undefined, initializeBody(), { authorization: 'Bearer not-a-key' })).status).toBe(401);
    expect((await postMcp(gw, undefined, initializeBody(), { authorization: 'Basic YWxpY2U6c2VjcmV0' })).status).toBe(401);
  });
});

describe('DNS rebinding and cross-site requests', () => {
  test('bound off loopback with no allowedHosts: every MCP request is refused (403), and the log says why', async () => {
    const gw = await h.start({ config: hostileConfig(), listen: '0.0.0.0:0' });
    const res = await postMcp(gw, ALICE_KEY, initializeBody(), { host: `127.0.0.1:${gw.port}` });
    expect(res.status).toBe(403);
    expect(gw.stderr()).toMatch(/no http\.allowedHosts/);
  });

  test('a foreign Host is 403; a foreign Origin is 403; a localhost Origin passes on a loopback gateway', async () => {
    const gw = await h.start({ config: hostileConfig() });
    const post = (headers: Record<string, string>) => postMcp(gw, ALICE_KEY, initializeBody(), headers);

    expect((await post({ host: 'evil.example' })).status).toBe(403);
    expect((await post({ host: `evil.example:${gw.port}` })).status).toBe(403);
    expect((await raw(`${gw.base}/healthz`, { headers: { host: 'evil.example' } })).status).toBe(403);
    expect((await post({ host: `localhost:${gw.port}` })).status).toBe(200);
    expect((await post({ host: `127.0.0.1:${gw.port}` })).status).toBe(200);

    expect((await post({ origin: 'http://evil.example' })).status).toBe(403);
    expect((await post({ origin: 'https://evil.example' })).status).toBe(403);
    expect((await post({ origin: 'null' })).status).toBe(403);
    expect((await post({ origin: 'http://localhost:1234' })).status).toBe(200);
    expect((await post({ origin: `http://127.0.0.1:${gw.port}` })).status).toBe(200);
    // Refused before the credential is looked at: no Bearer challenge.
    const refused = await postMcp(gw, undefined, initializeBody(), { origin: 'http://evil.example' });
    expect(refused.status).toBe(403);
    expect(refused.headers['www-authenticate']).toBeUndefined();
  });
});

describe('resource limits', () => {
  test('a 10 MB body is 413, declared or chunked, is never served, and the gateway keeps serving', async () => {
    const gw = await h.start({ config: hostileConfig() });
    const agent = await h.modern(gw, ALICE_KEY);
    await waitListed(agent, 'echo__echo');
    const TEN_MB = 10 * 1024 * 1024;

    // Declared: refused (what is sent is read and dropped first, so the client reads the 413).
    const declared = await sendBody(gw, ALICE_KEY, TEN_MB, true);
    expect(declared).toMatchObject({ status: 413 });
    expect(declared.status === 413 && rpcCode(declared.response)).toBe(-32000);
    expect(declared.status === 413 && declared.response.headers['connection']).toBe('close');

    // Chunked (no Content-Length): counted as it arrives, refused past maxBodyBytes (4 MB): a few
    // tries, each a 413 or a reset, never anything else, and at least one 413.
    const outcomes: string[] = [];
    for (let i = 0; i < 5 && !outcomes.includes('413'); i++) {
      const chunked = await sendBody(gw, ALICE_KEY, TEN_MB, false);
      outcomes.push(chunked.status === 413 ? '413' : chunked.status === 'reset' ? `reset (${chunked.code})` : `HTTP ${chunked.status}`);
    }
    expect(
      outcomes.every((o) => o === '413' || o.startsWith('reset')),
      outcomes.join(', '),
    ).toBe(true);
    expect(outcomes).toContain('413');

    expect(textOf(await call(agent, 'echo__echo', { message: 'still serving' }))).toBe('still serving');
    expect((await raw(`${gw.base}/healthz`)).status).toBe(200);
    // None of the huge calls reached the pipeline.
    const rows = await waitFor(() => {
      const echoes = auditRows(gw.dir).filter((r) => r['name'] === 'echo');
      return echoes.length > 0 ? echoes : undefined;
    });
    expect(rows.map((r) => (JSON.parse(String(r['arguments'])) as { message: string }).message)).toEqual(['still serving']);
  });

  // The gateway reads (and drops) the rest of an oversized body before its 413, so a client that
  // sends it all reads the answer instead of a reset.
  test('clients that send the whole 10 MB body with fetch (as the SDK transports do) are told 413, ten times out of ten', async () => {
    const gw = await h.start({ config: hostileConfig() });
    const big = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'echo__echo', arguments: { message: 'x'.repeat(10 * 1024 * 1024) } },
    });
    const outcomes: string[] = [];
    for (let i = 0; i < 10; i++) {
      outcomes.push(
        await fetch(`${gw.base}/mcp`, { method: 'POST', headers: mcpHeaders(ALICE_KEY), body: big }).then(
          async (res) => {
            await res.arrayBuffer();
            return String(res.status);
          },
          (err: Error & { cause?: { code?: string } }) => `network error (${err.cause?.code ?? err.message})`,
        ),
      );
    }
    console.log(`[http-hostile] fetch of a 10 MB body, 10 times: ${outcomes.join(', ')}`);
    expect(outcomes).toEqual(Array(10).fill('413'));
  });

  test('oversized headers 431, a body that is not JSON 400 (-32700), an unknown path 404; the gateway keeps serving', async () => {
    const gw = await h.start({ config: hostileConfig() });
    const huge = await raw(`${gw.base}/mcp`, {
      method: 'POST',
      headers: { ...mcpHeaders(ALICE_KEY), 'x-padding': 'p'.repeat(20 * 1024) },
      body: TOOLS_LIST,
    }).then(
      (res) => res.status,
      (err: NodeJS.ErrnoException) => err.code,
    );
    // Node answers 431 (or, on some versions, just closes the connection).
    expect([431, 'ECONNRESET']).toContain(huge);
    const notJson = await postMcp(gw, ALICE_KEY, '{"jsonrpc": "2.0", "id": 1, "method": ');
    expect(notJson.status).toBe(400);
    expect(rpcCode(notJson)).toBe(-32700);
    const elsewhere = await raw(`${gw.base}/mcp/../admin`, { headers: { authorization: `Bearer ${ALICE_KEY}` } });
    expect(elsewhere.status).toBe(404);
    expect((await raw(`${gw.base}/MCP`, { method: 'POST', headers: mcpHeaders(ALICE_KEY), body: initializeBody() })).status).toBe(404);
    expect((await postMcp(gw, ALICE_KEY, initializeBody())).status).toBe(200);
  });

  test('http.unauthenticatedPerMinute 5: the 6th request without a valid credential is 429, and (as built) so is a valid key from that IP', async () => {
    const gw = await h.start({ config: hostileConfig({ unauthenticatedPerMinute: 5 }) });
    for (let i = 0; i < 5; i++) expect((await postMcp(gw, `gw_alice1_${'w'.repeat(43)}`, TOOLS_LIST)).status, `bad ${i + 1}`).toBe(401);
    const sixth = await postMcp(gw, undefined, TOOLS_LIST);
    expect(sixth.status).toBe(429);
    expect(sixth.headers['retry-after']).toBe('60');
    // Current behaviour: the per-IP window is checked before the credential, so a caller with a
    // valid key behind the same address (a NAT, a proxy without trustProxy) is shut out too until
    // the minute is over. Documented here so a change to it is a decision.
    expect((await postMcp(gw, ALICE_KEY, initializeBody())).status).toBe(429);
    // Health checks are not MCP requests: not limited.
    expect((await raw(`${gw.base}/healthz`)).status).toBe(200);
  });

  test('X-Forwarded-For names the client only with http.trustProxy, and then only its last hop', async () => {
    // Without trustProxy the header is ignored: every request counts against the socket's address.
    const plain = await h.start({ config: hostileConfig({ unauthenticatedPerMinute: 3 }) });
    for (let i = 0; i < 3; i++)
      expect((await postMcp(plain, undefined, TOOLS_LIST, { 'x-forwarded-for': `10.0.0.${i}` })).status).toBe(401);
    expect((await postMcp(plain, undefined, TOOLS_LIST, { 'x-forwarded-for': '10.0.0.99' })).status).toBe(429);
    // With trustProxy the proxy's hop (the last) names the client: each has its own window, and a
    // client cannot pick another by sending hops of its own before it.
    const proxied = await h.start({ config: hostileConfig({ unauthenticatedPerMinute: 3, trustProxy: true }) });
    for (let i = 0; i < 3; i++) expect((await postMcp(proxied, undefined, TOOLS_LIST, { 'x-forwarded-for': '10.0.0.1' })).status).toBe(401);
    expect((await postMcp(proxied, undefined, TOOLS_LIST, { 'x-forwarded-for': '10.0.0.1' })).status).toBe(429);
    expect((await postMcp(proxied, undefined, TOOLS_LIST, { 'x-forwarded-for': '6.6.6.6, 10.0.0.1' })).status).toBe(429);
    expect((await postMcp(proxied, undefined, TOOLS_LIST, { 'x-forwarded-for': '10.0.0.2' })).status).toBe(401);
  });

  test('1,000 abandoned legacy sessions: memory per session, and all reaped after idleMs', async () => {
    const idleMs = 2_000;
    const gw = await h.start({
      config: hostileConfig({ sessions: { maxPerConsumer: 2_000, maxTotal: 2_000, idleMs } }, { metrics: { token: METRICS_TOKEN } }),
    });
    await waitFor(async () => (await raw(`${gw.base}/readyz`)).status === 200, 30_000, 'ready');
    // Warm-up: the code paths of a session are compiled and their modules loaded before measuring.
    for (let i = 0; i < 30; i++) await openRawSession(gw, ALICE_KEY);
    await waitFor(async () => (await metric(gw, METRICS_TOKEN, 'mcp_gateway_sessions')) === 0, 15_000, 'warm-up sessions reaped');
    await new Promise((r) => setTimeout(r, 500));
    const before = rssBytes(gw.pid)!;

    const N = 1_000;
    const open = async (): Promise<{ ids: string[]; ms: number }> => {
      const ids: string[] = [];
      const started = Date.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < N) {
            next++;
            ids.push(await openRawSession(gw, ALICE_KEY));
          }
        }),
      );
      return { ids, ms: Date.now() - started };
    };
    const sessions = () => metric(gw, METRICS_TOKEN, 'mcp_gateway_sessions');
    const MiB = (bytes: number) => (bytes / 1048576).toFixed(1);

    const first = await open();
    const after = rssBytes(gw.pid)!;
    // Sessions opened first may already be idle (idleMs 2 s) if opening took long: divide by
    // those still open (the memory of the reaped ones may not be collected yet: an upper bound).
    const live = (await sessions())!;
    const perSessionKiB = (after - before) / 1024 / Math.max(1, live);
    console.log(
      `[http-hostile] ${N} legacy sessions opened in ${first.ms} ms (${live} still open when measured): ` +
        `RSS ${MiB(before)} MiB -> ${MiB(after)} MiB, ${perSessionKiB.toFixed(1)} KiB per session`,
    );
    expect(new Set(first.ids).size).toBe(N);
    expect(live, 'most sessions should still be open when RSS is measured').toBeGreaterThan(N / 2);
    expect(perSessionKiB).toBeLessThan(64);

    // Reaped once idle: the gauge drops to 0 and an old id is unknown.
    await waitFor(async () => (await sessions()) === 0, idleMs + 10_000, 'every session reaped');
    expect((await inSession(gw, ALICE_KEY, first.ids[0]!)).status).toBe(404);
    expect((await inSession(gw, ALICE_KEY, first.ids[N - 1]!)).status).toBe(404);
    const reaped = rssBytes(gw.pid)!;

    // A second thousand, after the first were reaped: what they cost on top (a leak would show as
    // the same growth again; reused memory as little).
    const second = await open();
    const again = rssBytes(gw.pid)!;
    await waitFor(async () => (await sessions()) === 0, idleMs + 10_000, 'the second thousand reaped');
    console.log(
      `[http-hostile] after reaping: RSS ${MiB(reaped)} MiB; a second ${N} sessions (${second.ms} ms): ${MiB(again)} MiB ` +
        `(+${((again - reaped) / 1024 / N).toFixed(1)} KiB per session); reaped again: ${MiB(rssBytes(gw.pid)!)} MiB`,
    );
    expect((await inSession(gw, ALICE_KEY, second.ids[0]!)).status).toBe(404);
    // The gateway serves as before.
    expect((await postMcp(gw, ALICE_KEY, initializeBody())).status).toBe(200);
  });

  test('a client that never finishes its headers is cut off after http.headersTimeoutMs; others are served meanwhile', async () => {
    const gw = await h.start({ config: hostileConfig({ headersTimeoutMs: 1_000 }) });
    const socket = connect(gw.port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    socket.on('error', () => {});
    const opened = Date.now();
    const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - opened)));
    socket.write('POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n');

    // Meanwhile other clients are answered.
    let served = 0;
    let stillOpen = true;
    void closed.then(() => (stillOpen = false));
    while (stillOpen && Date.now() - opened < 8_000) {
      expect((await raw(`${gw.base}/healthz`)).status).toBe(200);
      served++;
      await new Promise((r) => setTimeout(r, 100));
    }
    const closedAfter = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 2_000))]);
    socket.destroy();
    expect(closedAfter, 'the slow client was not cut off').toBeGreaterThan(0);
    expect(closedAfter).toBeGreaterThanOrEqual(900);
    expect(closedAfter).toBeLessThan(5_000);
    expect(served).toBeGreaterThan(3);
    // Node answers 408 before closing (or just closes).
    if (received !== '') expect(received).toMatch(/^HTTP\/1\.1 408/);
  });

  test('http.maxConcurrentPerConsumer 2: a third request in progress is 429, another consumer is unaffected', async () => {
    const gw = await h.start({
      config: hostileConfig({ maxConcurrentPerConsumer: 2 }, { servers: [{ id: 'slow', ...fixture('slow.js') }] }),
    });
    const a1 = await h.modern(gw, ALICE_KEY);
    const a2 = await h.modern(gw, ALICE_KEY);
    const b = await h.modern(gw, BOB_KEY);
    await waitListed(a1, 'slow__sleep');

    const slow = [call(a1, 'slow__sleep', { ms: 2_500 }), call(a2, 'slow__sleep', { ms: 2_500 })];
    await new Promise((r) => setTimeout(r, 400));
    const third = await call(a1, 'slow__quick', {}).then(
      (result) => ({ ok: true as const, result }),
      (err: unknown) => ({ ok: false as const, err: err as Error & { code?: unknown; data?: Obj } }),
    );
    expect(third.ok, 'the third request of the consumer should fail').toBe(false);
    expect(!third.ok && (third.err.data as { status?: number } | undefined)?.status).toBe(429);
    const rawThird = await postMcp(gw, ALICE_KEY, TOOLS_LIST);
    expect(rawThird.status).toBe(429);
    expect(rawThird.headers['retry-after']).toBe('1');
    // Bob is another consumer: served while Alice is at her cap.
    expect(textOf(await call(b, 'slow__quick', {}))).toBe('ok');
    expect((await postMcp(gw, BOB_KEY, initializeBody())).status).toBe(200);
    for (const result of await Promise.all(slow)) expect(textOf(result)).toBe('slept 2500');
    // Alice's slots are free again.
    expect(textOf(await call(a1, 'slow__quick', {}))).toBe('ok');
    console.log(
      `[http-hostile] the client saw: ${third.ok ? 'a result' : `${third.err.name}: ${third.err.message} (${String(third.err.code)})`}`,
    );
  });

  // A session's standing GET stream (and a listen stream) is not a request in progress.
  test("idle legacy sessions' GET streams do not use up http.maxConcurrentPerConsumer", async () => {
    const gw = await h.start({ config: hostileConfig({ maxConcurrentPerConsumer: 2 }) });
    const a = await h.legacy(gw, ALICE_KEY);
    await h.legacy(gw, ALICE_KEY);
    // Both SDK clients have their GET stream open by now.
    await new Promise((r) => setTimeout(r, 1_000));
    const result = await a.client.callTool({ name: 'echo__echo', arguments: { message: 'nothing else is running' } });
    expect(textOf(result)).toBe('nothing else is running');
  });
});

describe('session caps', () => {
  test('http.sessions.maxPerConsumer: at the cap a new session ends its own idlest one; maxTotal refuses with 429', async () => {
    const gw = await h.start({
      config: hostileConfig({ sessions: { maxPerConsumer: 2, maxTotal: 3 } }, { metrics: { token: METRICS_TOKEN } }),
    });
    const first = await openRawSession(gw, ALICE_KEY);
    await new Promise((r) => setTimeout(r, 20));
    const second = await openRawSession(gw, ALICE_KEY);
    await new Promise((r) => setTimeout(r, 20));
    // Used since: the second is now the idlest.
    expect((await inSession(gw, ALICE_KEY, first)).status).toBe(200);
    const bobs = await openRawSession(gw, BOB_KEY);
    const third = await openRawSession(gw, ALICE_KEY);
    expect((await inSession(gw, ALICE_KEY, second)).status).toBe(404);
    expect((await inSession(gw, ALICE_KEY, first)).status).toBe(200);
    expect((await inSession(gw, ALICE_KEY, third)).status).toBe(200);
    expect((await inSession(gw, BOB_KEY, bobs)).status).toBe(200);
    expect(await metric(gw, METRICS_TOKEN, 'mcp_gateway_sessions')).toBe(3);
    // maxTotal 3: Bob (below his own cap) is refused a second session.
    const refused = await postMcp(gw, BOB_KEY, initializeBody());
    expect(refused.status).toBe(429);
    expect(refused.headers['mcp-session-id']).toBeUndefined();
    // Ending one makes room.
    const ended = await raw(`${gw.base}/mcp`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ALICE_KEY}`, 'mcp-session-id': first, 'mcp-protocol-version': '2025-06-18' },
    });
    expect(ended.status).toBe(200);
    await waitFor(async () => (await postMcp(gw, BOB_KEY, initializeBody())).status === 200, 5_000, 'room for Bob');
  });
});
