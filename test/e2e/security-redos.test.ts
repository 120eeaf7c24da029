/**
 * Security: no ReDoS (docs/security.md A9, C5). A child's resource template, a child's inputSchema
 * `pattern`, and a policy `regex` condition must not let one request stall the gateway: while a
 * request that would backtrack exponentially is in flight, another server's tool answers within
 * 2 s and so does `ping`. Each case gets a gateway of its own (today the first one hangs for good;
 * closing it ends with SIGKILL and the reaper ends its children).
 */
import { afterEach, describe, expect, test } from 'vitest';
import { anyResult, call, fixture, testConfig, textOf, waitListed, type Obj, type RunningGateway, answers } from '../helpers/gateway.js';
import { Gateways, request, within } from '../helpers/security.js';

const REDOS = { id: 'redos', ...fixture('hostile-redos.js') };
const ECHO = { id: 'echo', ...fixture('echo.js') };
const LOOSE = { id: 'loose', ...fixture('hostile-loose.js') };
const PATIENT = { limits: { listWaitMs: 30_000 } };
const EVIL = `${'a'.repeat(40)}b`;

const gateways = new Gateways();
afterEach(() => gateways.closeAll());

/** echo__echo and ping both answer within 2 s each, while the hostile request is in flight. */
async function stillAnswers(gw: RunningGateway): Promise<void> {
  const echoed = await within(2_000, 'echo__echo', call(gw.client, 'echo__echo', { message: 'still here' }));
  expect(textOf(echoed)).toBe('still here');
  await within(2_000, 'ping', answers(gw));
}

/** Starts a request without awaiting it; its outcome is kept (a result or an error). */
function inFlight(promise: Promise<unknown>): { settled: () => boolean } {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  return { settled: () => done };
}

describe('while a request that backtracks exponentially is in flight, the gateway still answers', () => {
  test('resources/read of redos://x/ + 40 "a" (a template of 16 {+v} then "!")', async () => {
    const gw = await gateways.start({ config: testConfig({ ...PATIENT, servers: [REDOS, ECHO] }) });
    await waitListed(gw.client, ['echo__echo', 'redos__match']);
    const templates = (await request(gw.client, 'resources/templates/list', {}))['resourceTemplates'] as Obj[];
    expect(templates.map((t) => String(t['uriTemplate']))).toContainEqual(expect.stringMatching(/^redos:\/\/x\/\{\+v0\}/));

    inFlight(request(gw.client, 'resources/read', { uri: `redos://x/${'a'.repeat(40)}` }));
    await stillAnswers(gw);
  });

  test('tools/call redos__match { s: 40 "a" then "b" } (inputSchema pattern ^(a|a)*$)', async () => {
    const gw = await gateways.start({ config: testConfig({ ...PATIENT, servers: [REDOS, ECHO] }) });
    await waitListed(gw.client, ['echo__echo', 'redos__match']);

    inFlight(
      gw.client.request({ method: 'tools/call', params: { name: 'redos__match', arguments: { s: EVIL } } } as never, anyResult, {
        timeout: 600_000,
      }),
    );
    await stillAnswers(gw);
  });

  test('a policy condition args.s: { regex: "(a|a)*" } on an allow rule, called with 40 "a" then "b"', async () => {
    const gw = await gateways.start({
      config: testConfig(
        {
          ...PATIENT,
          servers: [LOOSE, ECHO],
          policies: [
            {
              id: 'users',
              roles: ['user'],
              rules: [
                { server: 'echo', action: 'allow' },
                { server: 'loose', tool: 'take', action: 'allow', when: { 'args.s': { regex: '(a|a)*' } } },
              ],
            },
          ],
        },
        ['user'],
      ),
    });
    await waitListed(gw.client, ['echo__echo', 'loose__take']);

    inFlight(
      gw.client.request({ method: 'tools/call', params: { name: 'loose__take', arguments: { s: EVIL } } } as never, anyResult, {
        timeout: 600_000,
      }),
    );
    await stillAnswers(gw);
  });
});
