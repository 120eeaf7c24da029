/**
 * Security: no existence oracle (docs/security.md A5). A caller whose policy allows only server
 * `echo` cannot tell a server it may not use (`payments`, with its tool `refund` and its resource)
 * from one that does not exist: the same code, the same message shape (equal once the requested
 * name is replaced by a placeholder), the same error fields. The audit log keeps the truth: denied
 * for what exists but is hidden, invalid for what does not exist.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { call, errorCode, fixture, testConfig, textOf, waitListed, type Obj, type RunningGateway } from '../helpers/gateway.js';
import { Gateways, auditRows, request, rpcError } from '../helpers/security.js';

const gateways = new Gateways();
afterAll(() => gateways.closeAll());

/** The message of a refusal with the requested name replaced, so two refusals can be compared. */
const shape = (result: Obj, requested: string) => textOf(result).replaceAll(requested, '<NAME>');
const errorKeys = (result: Obj) =>
  Object.keys(((result['_meta'] as Obj | undefined)?.['mcp-gateway/error'] as Obj | undefined) ?? {}).sort();

describe('a caller allowed only server echo, with payments configured beside it', () => {
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await gateways.start({
      config: testConfig(
        {
          // Lists wait for every server's first start: payments is up before anything is asked.
          limits: { listWaitMs: 30_000 },
          servers: [
            { id: 'echo', ...fixture('echo.js') },
            { id: 'payments', ...fixture('payments.js') },
          ],
          policies: [{ id: 'users', roles: ['user'], rules: [{ server: 'echo', action: 'allow' }] }],
        },
        ['user'],
      ),
    });
    await waitListed(gw.client, 'echo__echo');
  });

  test('payments__nosuchtool, payments__refund and nosuchserver__x: the same code, message shape and fields; audited truthfully', async () => {
    const asked = ['payments__nosuchtool', 'payments__refund', 'nosuchserver__x'] as const;
    const results = [
      await call(gw.client, asked[0], {}),
      await call(gw.client, asked[1], { paymentId: 'p-1' }),
      await call(gw.client, asked[2], {}),
    ];
    expect(results.map(errorCode)).toEqual(['UNKNOWN_TOOL', 'UNKNOWN_TOOL', 'UNKNOWN_TOOL']);
    const shapes = results.map((r, i) => shape(r, asked[i]!));
    expect(shapes[0]).toBe(shapes[2]);
    expect(shapes[1]).toBe(shapes[2]);
    expect(errorKeys(results[0]!)).toEqual(errorKeys(results[2]!));
    expect(errorKeys(results[1]!)).toEqual(errorKeys(results[2]!));

    // The audit log knows which was which.
    const rows = auditRows(gw.dir).filter((r) => r['kind'] === 'tool');
    const statusOf = (server: string | null, name: string) =>
      rows.filter((r) => r['server'] === server && r['name'] === name).map((r) => r['status']);
    expect(statusOf('payments', 'nosuchtool')).toEqual(['denied']);
    expect(statusOf('payments', 'refund')).toEqual(['denied']);
    expect(rows.filter((r) => String(r['name']).includes('nosuchserver')).map((r) => r['status'])).toEqual(['invalid']);
  });

  test('`call { tool: "refund" }` (a bare name only payments has) is UNKNOWN_TOOL, shaped like a name nobody has', async () => {
    const hidden = await call(gw.client, 'call', { tool: 'refund', arguments: { paymentId: 'p-1' } });
    const nowhere = await call(gw.client, 'call', { tool: 'nosuchtool', arguments: {} });
    expect(errorCode(hidden)).toBe('UNKNOWN_TOOL');
    expect(errorCode(nowhere)).toBe('UNKNOWN_TOOL');
    expect(shape(hidden, 'refund')).toBe(shape(nowhere, 'nosuchtool'));
    expect(errorKeys(hidden)).toEqual(errorKeys(nowhere));
  });

  test('reading a URI only payments serves and one nobody serves: the same JSON-RPC code and data.code; audited truthfully', async () => {
    const hidden = await rpcError(request(gw.client, 'resources/read', { uri: 'payments://ledger/2026' }));
    const nowhere = await rpcError(request(gw.client, 'resources/read', { uri: 'nowhere://ledger/2026' }));
    expect(hidden.data?.['code']).toBe(nowhere.data?.['code']);
    expect(hidden.code).toBe(nowhere.code);

    const rows = auditRows(gw.dir).filter((r) => r['kind'] === 'resource');
    expect(rows.filter((r) => r['name'] === 'payments://ledger/2026').map((r) => r['status'])).toEqual(['denied']);
    expect(rows.filter((r) => r['name'] === 'nowhere://ledger/2026').map((r) => r['status'])).toEqual(['invalid']);
  });
});
