/**
 * Identity and policy through real `mcp-gateway serve` processes (design §3, §4, §10, §11): API keys
 * made and revoked by the CLI against a shared database, static config keys, anonymous callers,
 * JWTs (a secret, a JWKS served on loopback), refusals at startup (exit 1 with one line on stderr),
 * and what readers and admins see and may call on server-everything.
 */
import { spawn } from 'node:child_process';
import { exportSPKI, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import {
  BIN,
  EVERYTHING,
  errorCode,
  fixture,
  startGateway,
  tempDir,
  writeConfig,
  type RunningGateway,
  type Obj,
  call,
  waitListed,
} from '../helpers/gateway.js';
import { serveJwks, type JwksServer } from '../helpers/jwks.js';

// ---------------------------------------------------------------------------------------------
// helpers

/** The JSON-RPC error a request was refused with. */
async function rpcError(promise: Promise<unknown>): Promise<{ code: number; data?: Obj }> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the request should have failed').toBeDefined();
  return err as { code: number; data?: Obj };
}

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI (as a user would) and collects its output. */
function cli(args: string[], input?: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

interface CreatedKey {
  readonly key: string;
  readonly id: string;
  readonly expiresAt: string | null;
}

async function createKey(configFile: string, name: string, consumer: string, roles: string, ...extra: string[]): Promise<CreatedKey> {
  const r = await cli(['keys', 'create', name, consumer, roles, '--json', '--config', configFile, ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as CreatedKey;
}

/** Log lines of the gateway have this form; anything else on stderr is the one-line reason. */
const LOG_LINE = /^\d{4}-\d\d-\d\dT\S+ mcp-gateway (debug|info|warn|error) /;

/**
 * Starts `serve` with only this environment (no agent talks to it; stdin stays open) and waits
 * for it to exit on its own.
 */
function serveExit(configFile: string, env: Record<string, string>, ms = 30_000): Promise<{ code: number | null; reason: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'serve', '--config', configFile], {
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not exit within ${ms} ms; stderr:\n${stderr}`));
    }, ms);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      // Nothing but MCP messages on stdout, and no agent spoke: nothing at all.
      expect(stdout).toBe('');
      const reason = stderr.split('\n').filter((line) => line !== '' && !LOG_LINE.test(line));
      resolve({ code, reason });
    });
  });
}

/** Refused at startup: exit 1 with exactly one line of reason on stderr. */
async function expectRefusedAtStartup(configFile: string, env: Record<string, string>): Promise<string> {
  const { code, reason } = await serveExit(configFile, env);
  expect(code).toBe(1);
  expect(reason, `stderr reason lines: ${JSON.stringify(reason)}`).toHaveLength(1);
  expect(reason[0]).toMatch(/^mcp-gateway: /);
  return reason[0]!;
}

const running: RunningGateway[] = [];
async function start(options: Parameters<typeof startGateway>[0]): Promise<RunningGateway> {
  const gw = await startGateway(options);
  running.push(gw);
  return gw;
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((gw) => gw.close().catch(() => {})));
});

const EVERYTHING_SERVER = { id: 'everything', command: process.execPath, args: [EVERYTHING, 'stdio'] };
const ECHO_SERVER = { id: 'echo', ...fixture('echo.js') };

const READER_ADMIN_POLICIES = [
  {
    id: 'reader',
    roles: ['reader'],
    rules: [
      { tool: 'get-*', action: 'allow' },
      { tool: 'echo', action: 'allow' },
    ],
  },
  { id: 'admin', roles: ['admin'], rules: [{ action: 'allow' }, { server: 'gateway', action: 'allow' }] },
];

/** The gateway's own tools other than the entry points `call` and `list_tools`. */
const ADMIN_ONLY_GATEWAY_TOOLS = ['list_servers', 'server_status'];

// ---------------------------------------------------------------------------------------------

describe('reader vs admin against server-everything', () => {
  let dir: string;
  let configFile: string;
  let reader: CreatedKey;
  let admin: CreatedKey;
  const config = {
    database: './gateway.db',
    servers: [EVERYTHING_SERVER],
    policies: READER_ADMIN_POLICIES,
    rateLimit: { enabled: false },
  };

  beforeAll(async () => {
    dir = tempDir('mcpgw-auth-');
    configFile = writeConfig(dir, config);
    [reader, admin] = await Promise.all([
      createKey(configFile, 'Reader', 'rita', 'reader'),
      createKey(configFile, 'Admin', 'adam', 'admin'),
    ]);
  });

  test('a reader lists exactly the allowed tools, list_tools agrees, and other tools are FORBIDDEN', async () => {
    const adminGw = await start({ config, dir, key: admin.key });
    const adminNames = await waitListed(adminGw.client, 'everything__echo');
    const everythingTools = adminNames.filter((n) => n.startsWith('everything__')).map((n) => n.slice('everything__'.length));
    const allowed = everythingTools.filter((t) => t.startsWith('get-') || t === 'echo').map((t) => `everything__${t}`);
    const notAllowed = everythingTools.filter((t) => !t.startsWith('get-') && t !== 'echo').map((t) => `everything__${t}`);
    expect(allowed.length).toBeGreaterThan(3);
    expect(notAllowed.length).toBeGreaterThan(2);
    await adminGw.close();

    const gw = await start({ config, dir, key: reader.key });
    const names = await waitListed(gw.client, 'everything__echo');
    // Exactly the allowed direct tools, plus the entry points that only reach them.
    expect(names).toEqual([...allowed, 'call', 'list_tools'].sort());
    for (const t of ADMIN_ONLY_GATEWAY_TOOLS) expect(names).not.toContain(t);
    expect(names.some((n) => n.startsWith('audit_') || n === 'usage')).toBe(false);

    // list_tools shows the same set.
    const listed = await call(gw.client, 'list_tools');
    expect(listed['isError']).not.toBe(true);
    const structured = listed['structuredContent'] as { tools: { name: string }[] };
    expect(structured.tools.map((t) => t.name).sort()).toEqual([...allowed].sort());

    // Allowed calls work, directly and through `call`.
    const sum = await call(gw.client, 'everything__get-sum', { a: 2, b: 3 });
    expect(sum['isError']).not.toBe(true);
    expect(JSON.stringify(sum['content'])).toContain('5');
    const echoed = await call(gw.client, 'call', { tool: 'everything__echo', arguments: { message: 'hi reader' } });
    expect(echoed['isError']).not.toBe(true);
    expect(JSON.stringify(echoed['content'])).toContain('hi reader');

    // Every tool not listed is refused, by any route, as if it did not exist (no existence oracle).
    for (const name of notAllowed) expect(errorCode(await call(gw.client, name, {}))).toBe('UNKNOWN_TOOL');
    expect(errorCode(await call(gw.client, 'call', { tool: notAllowed[0]!, arguments: {} }))).toBe('UNKNOWN_TOOL');
    for (const name of ADMIN_ONLY_GATEWAY_TOOLS) expect(errorCode(await call(gw.client, name, {}))).toBe('UNKNOWN_TOOL');

    // The rules name tools only: no prompts or resources are listed, and reading one is FORBIDDEN.
    const prompts = (await gw.client.listPrompts()).prompts;
    expect(prompts).toEqual([]);
    expect((await gw.client.listResources()).resources).toEqual([]);
    expect((await gw.client.listResourceTemplates()).resourceTemplates).toEqual([]);
  });

  test('an admin sees and calls everything, including the gateway tools', async () => {
    const gw = await start({ config, dir, key: admin.key });
    const names = await waitListed(gw.client, 'everything__echo');
    for (const t of ['call', 'list_tools', ...ADMIN_ONLY_GATEWAY_TOOLS, 'everything__get-sum', 'everything__toggle-simulated-logging']) {
      expect(names).toContain(t);
    }
    expect((await call(gw.client, 'everything__get-sum', { a: 1, b: 1 }))['isError']).not.toBe(true);
    expect((await call(gw.client, 'everything__toggle-simulated-logging', {}))['isError']).not.toBe(true);
    const status = await call(gw.client, 'server_status', {});
    expect(status['isError']).not.toBe(true);
    const servers = await call(gw.client, 'list_servers', {});
    expect(JSON.stringify(servers['structuredContent'])).toContain('everything');
    expect((await gw.client.listPrompts()).prompts.length).toBeGreaterThan(0);
    expect((await gw.client.listResources()).resources.length).toBeGreaterThan(0);
    // list_tools shows every direct tool.
    const listed = (await call(gw.client, 'list_tools'))['structuredContent'] as { tools: { name: string }[] };
    expect(listed.tools.map((t) => t.name).sort()).toEqual(names.filter((n) => n.startsWith('everything__')));
  });

  test('a reader reading a resource it may never read gets the JSON-RPC error of one that does not exist', async () => {
    const adminGw = await start({ config, dir, key: admin.key });
    await waitListed(adminGw.client, 'everything__echo');
    const uri = (await adminGw.client.listResources()).resources[0]!.uri;
    await adminGw.close();

    const gw = await start({ config, dir, key: reader.key });
    await waitListed(gw.client, 'everything__echo');
    const err = await rpcError(gw.client.readResource({ uri }));
    const nowhere = await rpcError(gw.client.readResource({ uri: 'nosuch://nothing/here' }));
    expect(err.data?.['code']).toBe('UNKNOWN_TOOL');
    expect(err.code).toBe(nowhere.code);
  });
});

// ---------------------------------------------------------------------------------------------

describe('database keys managed by the CLI while gateways run', () => {
  let dir: string;
  let configFile: string;
  const config = {
    database: './gateway.db',
    servers: [ECHO_SERVER],
    policies: [{ id: 'users', roles: ['user'], rules: [{ server: 'echo', action: 'allow' }] }],
    rateLimit: { enabled: false },
  };

  beforeAll(() => {
    dir = tempDir('mcpgw-keys-');
    configFile = writeConfig(dir, config);
  });

  test('a key revoked by `keys revoke` mid-session: the very next call and list are UNAUTHENTICATED', async () => {
    const created = await createKey(configFile, 'Laptop', 'ana', 'user');
    const gw = await start({ config, dir, key: created.key });
    await waitListed(gw.client, 'echo__echo');
    expect((await call(gw.client, 'echo__echo', { message: 'before' }))['isError']).not.toBe(true);

    const revoked = await cli(['keys', 'revoke', created.id, '--config', configFile]);
    expect(revoked.code, revoked.stderr).toBe(0);

    expect(errorCode(await call(gw.client, 'echo__echo', { message: 'after' }))).toBe('UNAUTHENTICATED');
    expect(errorCode(await call(gw.client, 'list_tools'))).toBe('UNAUTHENTICATED');
    expect(errorCode(await call(gw.client, 'call', { tool: 'echo__echo', arguments: { message: 'x' } }))).toBe('UNAUTHENTICATED');
    expect((await rpcError(gw.client.listTools())).data?.['code']).toBe('UNAUTHENTICATED');
    expect((await rpcError(gw.client.listPrompts())).data?.['code']).toBe('UNAUTHENTICATED');
    expect((await rpcError(gw.client.listResources())).data?.['code']).toBe('UNAUTHENTICATED');

    // Revoking again is not an error; a new session with the key is refused at startup.
    expect((await cli(['keys', 'revoke', created.id, '--config', configFile])).code).toBe(0);
    await expectRefusedAtStartup(configFile, { MCP_GATEWAY_API_KEY: created.key });
    // An unknown id cannot be revoked.
    expect((await cli(['keys', 'revoke', 'nosuchkey', '--config', configFile])).code).toBe(1);
  });

  test("`keys rotate`: the old key's session is refused on its next call; a new gateway with the new key works", async () => {
    const created = await createKey(configFile, 'CI', 'ci', 'user', '--rate', '500');
    const old = await start({ config, dir, key: created.key });
    await waitListed(old.client, 'echo__echo');
    expect((await call(old.client, 'echo__echo', { message: 'x' }))['isError']).not.toBe(true);

    const rotated = await cli(['keys', 'rotate', created.id, '--json', '--config', configFile]);
    expect(rotated.code, rotated.stderr).toBe(0);
    const fresh = JSON.parse(rotated.stdout) as CreatedKey & { consumerId: string; roles: string[]; ratePerMinute: number };
    expect(fresh.id).not.toBe(created.id);
    expect(fresh.key).not.toBe(created.key);
    expect(fresh).toMatchObject({ consumerId: 'ci', roles: ['user'], ratePerMinute: 500 });

    expect(errorCode(await call(old.client, 'echo__echo', { message: 'x' }))).toBe('UNAUTHENTICATED');

    const next = await start({ config, dir, key: fresh.key });
    await waitListed(next.client, 'echo__echo');
    expect((await call(next.client, 'echo__echo', { message: 'y' }))['isError']).not.toBe(true);

    await expectRefusedAtStartup(configFile, { MCP_GATEWAY_API_KEY: created.key });
    // The old key, revoked by the rotation, cannot be rotated again.
    expect((await cli(['keys', 'rotate', created.id, '--config', configFile])).code).toBe(1);
  });

  test('an expired key: calls work until it expires, then the next call is UNAUTHENTICATED; serve refuses it', async () => {
    // Generous: bcrypt and process start on a busy machine must fit before the expiry.
    const created = await createKey(configFile, 'Short', 'temp', 'user', '--expires', '8s');
    expect(created.expiresAt).not.toBeNull();
    const gw = await start({ config, dir, key: created.key });
    await waitListed(gw.client, 'echo__echo');
    expect((await call(gw.client, 'echo__echo', { message: 'x' }))['isError']).not.toBe(true);

    const wait = Date.parse(created.expiresAt!) - Date.now() + 250;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    expect(errorCode(await call(gw.client, 'echo__echo', { message: 'x' }))).toBe('UNAUTHENTICATED');
    expect((await rpcError(gw.client.listTools())).data?.['code']).toBe('UNAUTHENTICATED');

    await expectRefusedAtStartup(configFile, { MCP_GATEWAY_API_KEY: created.key });
    // An expired key is not rotated into a key that is born expired.
    expect((await cli(['keys', 'rotate', created.id, '--config', configFile])).code).toBe(1);
  });

  test('serve refuses a wrong, malformed, unknown or missing key: exit 1 and one line on stderr', async () => {
    const created = await createKey(configFile, 'Right', 'ana', 'user');
    const wrongSecret = `gw_${created.id}_${'A'.repeat(43)}`;
    const unknownId = created.key.replace(created.id, 'nosuchkey1');
    const [wrong, malformed, unknown, none, blank] = await Promise.all([
      expectRefusedAtStartup(configFile, { MCP_GATEWAY_API_KEY: wrongSecret }),
      expectRefusedAtStartup(configFile, { MCP_GATEWAY_API_KEY: 'sk-not-a-gateway-key' }),
      expectRefusedAtStartup(configFile, { MCP_GATEWAY_API_KEY: unknownId }),
      expectRefusedAtStartup(configFile, {}),
      expectRefusedAtStartup(configFile, { MCP_GATEWAY_API_KEY: '  ' }),
    ]);
    // No credential: the reason says what to set.
    expect(none).toContain('MCP_GATEWAY_API_KEY');
    expect(blank).toContain('MCP_GATEWAY_API_KEY');
    // A refused key is never echoed back.
    for (const line of [wrong, unknown]) {
      expect(line).not.toContain(wrongSecret.slice(-43));
      expect(line).not.toContain(created.key.slice(-43));
    }
    expect(malformed).not.toContain('sk-not-a-gateway-key');
  });

  test('`keys list --json` shows active, revoked and expired keys, never a secret or a hash', async () => {
    const listDir = tempDir('mcpgw-list-');
    const listConfig = writeConfig(listDir, {
      database: './gateway.db',
      auth: {
        apiKeys: { static: [{ id: 'ci1', consumerId: 'ci', roles: ['user'], key: 'gw_ci1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG' }] },
      },
    });
    const [active, revoked, expiring] = await Promise.all([
      createKey(listConfig, 'Active', 'a', 'user'),
      createKey(listConfig, 'Revoked', 'b', 'user'),
      createKey(listConfig, 'Expiring', 'c', 'user', '--expires', '1s'),
    ]);
    expect((await cli(['keys', 'revoke', revoked.id, '--config', listConfig])).code).toBe(0);
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(expiring.expiresAt!) - Date.now() + 100)));

    const listed = await cli(['keys', 'list', '--json', '--config', listConfig]);
    expect(listed.code, listed.stderr).toBe(0);
    const { keys } = JSON.parse(listed.stdout) as { keys: Obj[] };
    const state = (id: string) => keys.find((k) => k['id'] === id)?.['state'];
    expect(state(active.id)).toBe('active');
    expect(state(revoked.id)).toBe('revoked');
    expect(state(expiring.id)).toBe('expired');
    expect(state('ci1')).toBe('active');
    for (const k of keys) {
      expect(Object.keys(k)).not.toContain('hash');
      expect(Object.keys(k)).not.toContain('key');
      expect(Object.keys(k)).not.toContain('secret');
    }
    for (const key of [active.key, revoked.key, expiring.key, 'gw_ci1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG']) {
      expect(listed.stdout).not.toContain(key.slice(-43));
    }
    expect(listed.stdout).not.toMatch(/\$2[aby]\$/);
    // The table form holds no secret either.
    const table = await cli(['keys', 'list', '--config', listConfig]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(active.id);
    expect(table.stdout).not.toMatch(/gw_[A-Za-z0-9]+_[A-Za-z0-9_-]{43}/);
    expect(table.stdout).not.toMatch(/\$2[aby]\$/);
  });

  test('`keys create` and `keys rotate` print the key exactly once, with the MCP_GATEWAY_API_KEY= line', async () => {
    const KEY = /gw_[A-Za-z0-9]{1,32}_[A-Za-z0-9_-]{43}/g;
    const created = await cli(['keys', 'create', 'Desktop', 'ana', 'user,reader', '--config', configFile]);
    expect(created.code, created.stderr).toBe(0);
    const keys = created.stdout.match(KEY) ?? [];
    expect(keys).toHaveLength(1);
    expect(created.stdout.split('\n').some((line) => line.trim() === `MCP_GATEWAY_API_KEY=${keys[0]}`)).toBe(true);
    expect(created.stderr).not.toContain(keys[0]!);

    const id = /^gw_([A-Za-z0-9]+)_/.exec(keys[0]!)![1]!;
    const rotated = await cli(['keys', 'rotate', id, '--config', configFile]);
    expect(rotated.code, rotated.stderr).toBe(0);
    const rotatedKeys = rotated.stdout.match(KEY) ?? [];
    expect(rotatedKeys).toHaveLength(1);
    expect(rotatedKeys[0]).not.toBe(keys[0]);
    expect(rotated.stdout).toContain(`MCP_GATEWAY_API_KEY=${rotatedKeys[0]}`);

    // The printed key works.
    const gw = await start({ config, dir, key: rotatedKeys[0]! });
    await waitListed(gw.client, 'echo__echo');
  });

  test('`keys create` refuses bad input with exit 2', async () => {
    expect((await cli(['keys', 'create', 'x', 'ana', ' , ', '--config', configFile])).code).toBe(2);
    expect((await cli(['keys', 'create', 'x', 'ana', 'user', '--expires', 'soon', '--config', configFile])).code).toBe(2);
    expect((await cli(['keys', 'create', 'x', 'ana', 'user', '--rate', '-1', '--config', configFile])).code).toBe(2);
    expect((await cli(['keys', 'create', 'x', 'ana', 'user', '--expires', '2001-01-01', '--config', configFile])).code).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------

describe('static keys in the config, and anonymous callers', () => {
  const HASHED_KEY = 'gw_ci1_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';
  const ENV_KEY = 'gw_env1_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG';

  test('`hash:` from `keys hash` (key on stdin) and `key: ${ENV}` both authenticate; wrong secrets are refused', async () => {
    const hashed = await cli(['keys', 'hash'], `${HASHED_KEY}\n`);
    expect(hashed.code, hashed.stderr).toBe(0);
    const hash = hashed.stdout.trim();
    expect(hash).toMatch(/^\$2[aby]\$12\$.{53}$/);
    expect(hashed.stdout).not.toContain(HASHED_KEY);

    const dir = tempDir('mcpgw-static-');
    const config = {
      database: './gateway.db',
      servers: [ECHO_SERVER],
      auth: {
        apiKeys: {
          static: [
            { id: 'ci1', consumerId: 'ci', roles: ['user'], hash },
            { id: 'env1', consumerId: 'envbot', roles: ['user'], key: '${ENV_BOT_KEY}' },
            { id: 'off1', consumerId: 'off', roles: ['user'], key: '${ENV_BOT_KEY}', enabled: false },
          ],
        },
      },
      policies: [{ id: 'users', roles: ['user'], rules: [{ server: 'echo', tool: 'echo', action: 'allow' }] }],
      rateLimit: { enabled: false },
    };
    const configFile = writeConfig(dir, config);

    for (const key of [HASHED_KEY, ENV_KEY]) {
      const gw = await start({ config, dir, key, env: { ENV_BOT_KEY: ENV_KEY } });
      expect(await waitListed(gw.client, 'echo__echo')).toEqual(['call', 'echo__echo', 'list_tools']);
      expect((await call(gw.client, 'echo__echo', { message: 'static' }))['isError']).not.toBe(true);
      await gw.close();
    }

    await Promise.all([
      expectRefusedAtStartup(configFile, { MCP_GATEWAY_API_KEY: HASHED_KEY.replace(/G$/, 'H'), ENV_BOT_KEY: ENV_KEY }),
      expectRefusedAtStartup(configFile, { MCP_GATEWAY_API_KEY: ENV_KEY.replace(/G$/, 'H'), ENV_BOT_KEY: ENV_KEY }),
      // Same secret, but under a disabled key's id.
      expectRefusedAtStartup(configFile, { MCP_GATEWAY_API_KEY: ENV_KEY.replace('env1', 'off1'), ENV_BOT_KEY: ENV_KEY }),
    ]);

    // `keys hash` with nothing on stdin is a usage error.
    expect((await cli(['keys', 'hash'], '')).code).toBe(2);
  });

  test('anonymous: true lets a caller without a credential in, as consumer "anonymous" with role "anonymous"', async () => {
    const dir = tempDir('mcpgw-anon-');
    const config = {
      database: './gateway.db',
      servers: [ECHO_SERVER],
      auth: { anonymous: true },
      policies: [{ id: 'public', roles: ['anonymous'], rules: [{ server: 'echo', tool: 'echo', action: 'allow' }] }],
      rateLimit: { enabled: false },
    };
    const gw = await start({ config, dir, key: null });
    expect(await waitListed(gw.client, 'echo__echo')).toEqual(['call', 'echo__echo', 'list_tools']);
    expect((await call(gw.client, 'echo__echo', { message: 'hello' }))['isError']).not.toBe(true);
    expect(errorCode(await call(gw.client, 'echo__add', { a: 1, b: 2 }))).toBe('UNKNOWN_TOOL');
    // The same config without anonymous refuses to start without a credential.
    const closedDir = tempDir('mcpgw-anon-off-');
    const closedFile = writeConfig(closedDir, { ...config, auth: { anonymous: false } });
    await expectRefusedAtStartup(closedFile, {});
  });
});

// ---------------------------------------------------------------------------------------------

describe('JWT sessions via MCP_GATEWAY_TOKEN', () => {
  const SECRET = 'an-hs256-secret-for-the-e2e-tests-0123456789';
  const ISSUER = 'https://login.example.test/';
  const AUDIENCE = 'mcp-gateway';
  const now = () => Math.floor(Date.now() / 1000);

  async function token(
    key: CryptoKey | Uint8Array,
    alg: string,
    claims: JWTPayload,
    options: { kid?: string; exp?: number; aud?: string } = {},
  ): Promise<string> {
    return new SignJWT(claims)
      .setProtectedHeader({ alg, ...(options.kid ? { kid: options.kid } : {}) })
      .setIssuer(ISSUER)
      .setAudience(options.aud ?? AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(options.exp ?? now() + 3_600)
      .sign(key);
  }

  describe('HS256 from a secret', () => {
    let dir: string;
    let configFile: string;
    const secret = new TextEncoder().encode(SECRET);
    const config = {
      database: './gateway.db',
      servers: [EVERYTHING_SERVER],
      auth: {
        jwt: {
          secret: '${JWT_SECRET}',
          algorithms: ['HS256'],
          issuer: ISSUER,
          audience: AUDIENCE,
          consumerClaim: 'sub',
          rolesClaim: 'realm_access.roles',
        },
      },
      policies: READER_ADMIN_POLICIES,
      rateLimit: { enabled: false },
    };
    const env = (t: string) => ({ JWT_SECRET: SECRET, MCP_GATEWAY_TOKEN: t });

    beforeAll(() => {
      dir = tempDir('mcpgw-jwt-');
      configFile = writeConfig(dir, config);
    });

    test('the roles claim controls what is listed and allowed', async () => {
      const readerToken = await token(secret, 'HS256', { sub: 'rita', realm_access: { roles: ['reader'] } });
      const adminToken = await token(secret, 'HS256', { sub: 'adam', realm_access: { roles: ['admin'] } });

      const admin = await start({ config, dir, key: null, env: env(adminToken) });
      const adminNames = await waitListed(admin.client, 'everything__echo');
      expect(adminNames).toContain('server_status');
      expect(adminNames).toContain('everything__toggle-simulated-logging');
      await admin.close();

      const reader = await start({ config, dir, key: null, env: env(readerToken) });
      const names = await waitListed(reader.client, 'everything__echo');
      const expected = adminNames.filter((n) => /^everything__(get-.*|echo)$/.test(n));
      expect(names).toEqual([...expected, 'call', 'list_tools'].sort());
      expect((await call(reader.client, 'everything__get-sum', { a: 1, b: 2 }))['isError']).not.toBe(true);
      expect(errorCode(await call(reader.client, 'everything__toggle-simulated-logging', {}))).toBe('UNKNOWN_TOOL');
      expect(errorCode(await call(reader.client, 'server_status', {}))).toBe('UNKNOWN_TOOL');
    });

    test('a token that expires mid-session: the next call is UNAUTHENTICATED', async () => {
      // exp in the near future; the default clock tolerance (30 s) would stretch it, so set 0.
      const strictDir = tempDir('mcpgw-jwt-strict-');
      const strict = { ...config, servers: [ECHO_SERVER], policies: [{ id: 'all', roles: ['reader'], rules: [{ action: 'allow' }] }] };
      strict.auth = { jwt: { ...config.auth.jwt, clockToleranceSec: 0 } } as typeof config.auth;
      const exp = now() + 10;
      const t = await token(secret, 'HS256', { sub: 'rita', realm_access: { roles: ['reader'] } }, { exp });
      const gw = await start({ config: strict, dir: strictDir, key: null, env: env(t) });
      await waitListed(gw.client, 'echo__echo');
      expect((await call(gw.client, 'echo__echo', { message: 'x' }))['isError']).not.toBe(true);
      await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now() + 300)));
      expect(errorCode(await call(gw.client, 'echo__echo', { message: 'x' }))).toBe('UNAUTHENTICATED');
    });

    test('expired, bad signature, alg none, wrong audience, no token: exit 1 with one line', async () => {
      const good = await token(secret, 'HS256', { sub: 'rita', realm_access: { roles: ['reader'] } });
      const [h, p] = good.split('.');
      const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
      const none = `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`;
      const badSig = `${h}.${p}.${'A'.repeat(43)}`;
      const expired = await token(secret, 'HS256', { sub: 'rita' }, { exp: now() - 3_600 });
      const wrongAud = await token(secret, 'HS256', { sub: 'rita' }, { aud: 'someone-else' });
      const otherSecret = await token(new TextEncoder().encode('x'.repeat(48)), 'HS256', { sub: 'rita' });
      const results = await Promise.all(
        [expired, badSig, none, wrongAud, otherSecret].map((t) => expectRefusedAtStartup(configFile, env(t))),
      );
      for (const line of results) expect(line).toContain('MCP_GATEWAY_TOKEN');
      // Without any credential, the reason names both variables (auth.jwt is configured).
      const missing = await expectRefusedAtStartup(configFile, { JWT_SECRET: SECRET });
      expect(missing).toContain('MCP_GATEWAY_API_KEY');
      expect(missing).toContain('MCP_GATEWAY_TOKEN');
    });
  });

  describe('RS256 from a JWKS served on loopback', () => {
    let jwks: JwksServer;
    let jwksUri: string;
    let a: JwksServer['a'];
    let b: JwksServer['b'];

    beforeAll(async () => {
      jwks = await serveJwks();
      ({ uri: jwksUri, a, b } = jwks);
    });

    afterAll(() => jwks.close());

    test('kid A verifies; a key B added to the JWKS later verifies; forgeries and unknown kids exit 1', async () => {
      const dir = tempDir('mcpgw-jwks-');
      const config = {
        database: './gateway.db',
        servers: [ECHO_SERVER],
        auth: { jwt: { jwksUri, algorithms: ['RS256'], issuer: ISSUER, audience: AUDIENCE } },
        policies: [{ id: 'readers', roles: ['reader'], rules: [{ server: 'echo', tool: 'echo', action: 'allow' }] }],
        rateLimit: { enabled: false },
      };
      const configFile = writeConfig(dir, config);
      const claims = { sub: 'rita', roles: ['reader'] };

      const gwA = await start({
        config,
        dir,
        key: null,
        env: { MCP_GATEWAY_TOKEN: await token(a.privateKey, 'RS256', claims, { kid: 'A' }) },
      });
      expect(await waitListed(gwA.client, 'echo__echo')).toEqual(['call', 'echo__echo', 'list_tools']);
      expect((await call(gwA.client, 'echo__echo', { message: 'a' }))['isError']).not.toBe(true);

      const tokenB = await token(b.privateKey, 'RS256', claims, { kid: 'B' });
      // Not published yet.
      await expectRefusedAtStartup(configFile, { MCP_GATEWAY_TOKEN: tokenB });
      await jwks.publishB();
      const gwB = await start({ config, dir, key: null, env: { MCP_GATEWAY_TOKEN: tokenB } });
      expect((await call(gwB.client, 'echo__echo', { message: 'b' }))['isError']).not.toBe(true);
      // The running session with kid A is unaffected.
      expect((await call(gwA.client, 'echo__echo', { message: 'a' }))['isError']).not.toBe(true);

      const pem = await exportSPKI(a.publicKey);
      const confusion = await token(new TextEncoder().encode(pem), 'HS256', claims, { kid: 'A' });
      const wrongKey = await token(b.privateKey, 'RS256', claims, { kid: 'A' });
      const wrongAud = await token(a.privateKey, 'RS256', claims, { kid: 'A', aud: 'other' });
      const expired = await token(a.privateKey, 'RS256', claims, { kid: 'A', exp: now() - 3_600 });
      await Promise.all([confusion, wrongKey, wrongAud, expired].map((t) => expectRefusedAtStartup(configFile, { MCP_GATEWAY_TOKEN: t })));
    });

    test('HS/RS confusion with a PEM public key config: an HS256 token keyed with the PEM exits 1', async () => {
      const dir = tempDir('mcpgw-pem-');
      const pem = await exportSPKI(a.publicKey);
      const config = {
        database: './gateway.db',
        servers: [ECHO_SERVER],
        auth: { jwt: { publicKey: pem, algorithms: ['RS256'], audience: AUDIENCE } },
        policies: [{ id: 'readers', roles: ['reader'], rules: [{ server: 'echo', action: 'allow' }] }],
        rateLimit: { enabled: false },
      };
      const configFile = writeConfig(dir, config);
      const claims = { sub: 'rita', roles: ['reader'] };
      await expectRefusedAtStartup(configFile, { MCP_GATEWAY_TOKEN: await token(new TextEncoder().encode(pem), 'HS256', claims) });
      const gw = await start({ config, dir, key: null, env: { MCP_GATEWAY_TOKEN: await token(a.privateKey, 'RS256', claims) } });
      expect(await waitListed(gw.client, 'echo__echo')).toContain('echo__echo');
    });
  });
});
