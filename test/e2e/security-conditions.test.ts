/**
 * Security: `deny` and `forbid` rules fail closed (docs/security.md A4). A condition that cannot
 * be evaluated on an argument (another type, null, missing) makes an allow rule not match, but it
 * must make a deny or forbid rule match: `forbid when n > 10` cannot be slipped past with "11",
 * [11] or null, against a tool whose schema does not pin the type of `n` (hostile-loose.js).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { call, errorCode, fixture, testConfig, waitListed, type Obj, type RunningGateway } from '../helpers/gateway.js';
import { Gateways } from '../helpers/security.js';

const LOOSE = { id: 'loose', ...fixture('hostile-loose.js') };
const gateways = new Gateways();
afterAll(() => gateways.closeAll());

/** What the child received, when the call reached it. */
const received = (result: Obj) => result['structuredContent'] as { arguments: Obj | null } | undefined;

/** Calls loose__take with these arguments. */
const take = (gw: RunningGateway, args: Obj) => call(gw.client, 'loose__take', args);

/** The calls every case also checks: a number under the limit passes, one over it is refused. */
async function controls(gw: RunningGateway): Promise<void> {
  const five = await take(gw, { n: 5 });
  expect(five['isError'], JSON.stringify(five)).not.toBe(true);
  expect(received(five)?.arguments).toEqual({ n: 5 });
  expect(errorCode(await take(gw, { n: 11 }))).toBe('FORBIDDEN');
}

/** A gateway over loose.js whose only policy (role user) has these rules. */
async function gatewayWith(rules: Obj[]): Promise<RunningGateway> {
  const gw = await gateways.start({
    config: testConfig({ servers: [LOOSE], policies: [{ id: 'users', roles: ['user'], rules }] }, ['user']),
  });
  await waitListed(gw.client, 'loose__take');
  return gw;
}

const UNEVALUABLE: [string, Obj][] = [
  ['the string "11"', { n: '11' }],
  ['the array [11]', { n: [11] }],
  ['null', { n: null }],
  ['a missing n', {}],
];

describe('forbid with a condition: allow everything on the server, forbid take when args.n > 10', () => {
  let gw: RunningGateway;
  beforeAll(async () => {
    gw = await gatewayWith([
      { server: 'loose', action: 'allow' },
      { server: 'loose', tool: 'take', action: 'forbid', when: { 'args.n': { gt: 10 } } },
    ]);
  });

  test.each(UNEVALUABLE)('n = %s is FORBIDDEN (the forbid cannot be evaluated, so it holds)', async (_what, args) => {
    const result = await take(gw, args);
    expect(errorCode(result), `reached the child: ${JSON.stringify(received(result))}`).toBe('FORBIDDEN');
    // Through the `call` entry point too.
    expect(errorCode(await call(gw.client, 'call', { tool: 'loose__take', arguments: args }))).toBe('FORBIDDEN');
    await controls(gw);
  });
});

describe('deny with a condition, first in the only policy: deny take when args.n > 10, then allow the server', () => {
  let gw: RunningGateway;
  beforeAll(async () => {
    gw = await gatewayWith([
      { server: 'loose', tool: 'take', action: 'deny', when: { 'args.n': { gt: 10 } } },
      { server: 'loose', action: 'allow' },
    ]);
  });

  test('n = "11" is refused (FORBIDDEN, decided by the deny rule), while 5 passes and 11 is refused', async () => {
    const result = await take(gw, { n: '11' });
    expect(errorCode(result), `reached the child: ${JSON.stringify(received(result))}`).toBe('FORBIDDEN');
    expect((result['_meta'] as Obj)['mcp-gateway/error']).toMatchObject({ decidedBy: 'users#0' });
    expect(errorCode(await call(gw.client, 'call', { tool: 'loose__take', arguments: { n: '11' } }))).toBe('FORBIDDEN');
    await controls(gw);
  });
});
