/**
 * Security: smaller gaps. (1) A `redactKeys` name cannot be dodged with a look-alike letter
 * (`apiKey` with U+212A KELVIN SIGN, which lower-cases to "k"). (2) A huge URI or tool name is
 * refused as INVALID_ARGUMENTS, recorded, and stored cut. (3) `serve` refused a credential exits
 * 1 with one line naming the reason even when its stdin is closed at once (never 0).
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BIN, anyResult, call, fixture, tempDir, testConfig, waitListed, writeConfig, type RunningGateway } from '../helpers/gateway.js';
import { Gateways, auditRows, cli, refusalCode, request, rpcError } from '../helpers/security.js';

const gateways = new Gateways();
afterAll(() => gateways.closeAll());

describe('a running gateway', () => {
  let gw: RunningGateway;
  beforeAll(async () => {
    gw = await gateways.start({
      config: testConfig({
        servers: [
          { id: 'loose', ...fixture('hostile-loose.js') },
          { id: 'echo', ...fixture('echo.js') },
        ],
      }),
    });
    await waitListed(gw.client, ['loose__meta', 'echo__echo']);
  });

  test('an argument named apiKey with U+212A KELVIN SIGN for the K: its value is not in the audit row', async () => {
    const kelvinKey = 'api\u212Aey';
    expect(kelvinKey.toLowerCase()).toBe('apikey');
    const value = 'kelvin-dodged-value-5d1f8a';
    // Alone in its call: a plain `apiKey` anywhere in the same arguments would send the whole value
    // through the key-by-key redaction, which happens to catch the look-alike.
    const result = await call(gw.client, 'loose__meta', { [kelvinKey]: value, note: 'hello' });
    expect(result['isError']).not.toBe(true);
    const row = auditRows(gw.dir).findLast((r) => r['name'] === 'meta')!;
    expect(row).toBeDefined();
    expect(String(row['arguments'])).toContain('hello');
    expect(String(row['arguments'])).not.toContain(value);

    // The plain spelling, for comparison (redacted today already).
    const control = 'plain-apikey-value-93be02';
    await call(gw.client, 'loose__meta', { apiKey: control });
    expect(String(auditRows(gw.dir).findLast((r) => r['name'] === 'meta')!['arguments'])).not.toContain(control);
  });

  test('resources/read of a 1.1 MB URI: INVALID_ARGUMENTS, recorded as invalid with the URI cut', async () => {
    const uri = `nowhere://x/${'a'.repeat(1_100_000)}`;
    const err = await rpcError(request(gw.client, 'resources/read', { uri }));
    expect(err.data?.['code']).toBe('INVALID_ARGUMENTS');

    const row = auditRows(gw.dir).findLast((r) => r['kind'] === 'resource')!;
    expect(row, 'an audit row for the read').toBeDefined();
    expect(row['status']).toBe('invalid');
    expect(String(row['name']).startsWith('nowhere://x/aaaa')).toBe(true);
    expect(String(row['name']).length).toBeLessThan(64 * 1024);
  });

  test('tools/call with a 1.1 MB name: INVALID_ARGUMENTS, recorded as invalid with the name cut', async () => {
    const name = `echo__${'e'.repeat(1_100_000)}`;
    // A refusal may come as an isError result or as a JSON-RPC error: either carries the code.
    const outcome = await gw.client
      .request({ method: 'tools/call', params: { name, arguments: {} } } as never, anyResult, { timeout: 60_000 })
      .catch((err: unknown) => err);
    expect(refusalCode(outcome)).toBe('INVALID_ARGUMENTS');

    const row = auditRows(gw.dir).findLast((r) => String(r['name']).includes('eeeeeeee'))!;
    expect(row, 'an audit row for the call').toBeDefined();
    expect(row['status']).toBe('invalid');
    expect(String(row['name']).length).toBeLessThan(64 * 1024);
  });
});

/** Log lines of the gateway have this form; anything else on stderr is the one-line reason. */
const LOG_LINE = /^\d{4}-\d\d-\d\dT\S+ mcp-gateway (debug|info|warn|error) /;

/** `serve` with this credential and its stdin closed at once: exit code and the non-log lines of stderr. */
function serveWithStdinClosed(configFile: string, key: string): Promise<{ code: number | null; reason: string[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'serve', '--config', configFile], {
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/', MCP_GATEWAY_API_KEY: key },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin.on('error', () => {});
    child.stdin.end();
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdout.resume();
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not exit within 30 s; stderr:\n${stderr}`));
    }, 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, reason: stderr.split('\n').filter((line) => line !== '' && !LOG_LINE.test(line)) });
    });
  });
}

describe('serve refusing a credential while its stdin is already closed', () => {
  let configFile: string;
  let created: { key: string; id: string };

  beforeAll(async () => {
    const dir = tempDir('mcpgw-sec-stdin-');
    configFile = writeConfig(dir, { database: './gateway.db', servers: [{ id: 'echo', ...fixture('echo.js') }] });
    const made = await cli(['keys', 'create', 'laptop', 'ana', 'user', '--json', '--config', configFile]);
    expect(made.code, made.stderr).toBe(0);
    created = JSON.parse(made.stdout) as { key: string; id: string };
  });

  test('a wrong key (right id, wrong secret): exit 1 and one line of reason, never 0', async () => {
    const wrong = `gw_${created.id}_${'A'.repeat(43)}`;
    const run = await serveWithStdinClosed(configFile, wrong);
    expect(run.code, run.stderr).toBe(1);
    expect(run.reason, run.stderr).toHaveLength(1);
    expect(run.reason[0]).toMatch(/^mcp-gateway: /);
  });

  test('a key revoked with `keys revoke`: exit 1 and one line of reason, never 0', async () => {
    const revokeDir = tempDir('mcpgw-sec-revoked-');
    const revokeConfig = writeConfig(revokeDir, { database: './gateway.db' });
    const made = await cli(['keys', 'create', 'old', 'ana', 'user', '--json', '--config', revokeConfig]);
    expect(made.code, made.stderr).toBe(0);
    const key = JSON.parse(made.stdout) as { key: string; id: string };
    const revoked = await cli(['keys', 'revoke', key.id, '--config', revokeConfig]);
    expect(revoked.code, revoked.stderr).toBe(0);

    const run = await serveWithStdinClosed(revokeConfig, key.key);
    expect(run.code, run.stderr).toBe(1);
    expect(run.reason, run.stderr).toHaveLength(1);
    expect(run.reason[0]).toMatch(/^mcp-gateway: /);
  });
});
