/**
 * servers[].isolation: consumer over the HTTP front: each consumer's calls reach a process of its
 * own (per-user state stays per user), the shared process only lists, and a consumer's process
 * ends when unused for instances.idleMs. (No sandbox here: pids are compared, and a sandbox has its own.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fixture, testConfig } from '../helpers/gateway.js';
import { HttpHarness } from '../helpers/http.js';

const harness = new HttpHarness();
afterEach(() => harness.closeAll());

const keyOf = (id: string) => `gw_${id}_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG`;

function config(isolation: 'shared' | 'consumer', idleMs = 600_000): Record<string, unknown> {
  const base = testConfig({ servers: [{ id: 'echo', ...fixture('echo.js'), sandbox: 'none', isolation, instances: { max: 4, idleMs } }] });
  const staticKeys = ['alice1', 'bobkey1', 'alice2'].map((id) => ({
    id,
    consumerId: id.startsWith('alice') ? 'alice' : 'bob',
    roles: ['admin'],
    key: keyOf(id),
  }));
  return { ...base, auth: { apiKeys: { static: staticKeys } } };
}

async function pidOf(client: { callTool: (p: { name: string; arguments: Record<string, unknown> }) => Promise<unknown> }) {
  const result = (await client.callTool({ name: 'echo__whoami', arguments: {} })) as { content: { text: string }[] };
  return (JSON.parse(result.content[0]!.text) as { pid: number }).pid;
}

describe('isolation: consumer', () => {
  it('gives each consumer its own process, the same one for all its agents and keys; shared servers keep one', async () => {
    const gw = await harness.start({ config: config('consumer') });
    const alice = await harness.modern(gw, keyOf('alice1'));
    const aliceLegacy = (await harness.legacy(gw, keyOf('alice2'))).client;
    const bob = await harness.modern(gw, keyOf('bobkey1'));
    const [a1, a2, b] = [await pidOf(alice), await pidOf(aliceLegacy), await pidOf(bob)];
    expect(a1).toBe(a2);
    expect(b).not.toBe(a1);
    expect(await pidOf(bob)).toBe(b);
    // The lists come from the shared process, the same for both.
    expect((await alice.listTools()).tools.map((t) => t.name)).toEqual((await bob.listTools()).tools.map((t) => t.name));

    const shared = await harness.start({ config: config('shared') });
    const one = await harness.modern(shared, keyOf('alice1'));
    const two = await harness.modern(shared, keyOf('bobkey1'));
    expect(await pidOf(one)).toBe(await pidOf(two));
  });

  it("ends a consumer's process once unused for instances.idleMs, and starts a new one on its next call", async () => {
    const gw = await harness.start({ config: config('consumer', 1_000) });
    const alice = await harness.modern(gw, keyOf('alice1'));
    const first = await pidOf(alice);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && isAlive(first)) await new Promise((r) => setTimeout(r, 200));
    expect(isAlive(first)).toBe(false);
    const second = await pidOf(alice);
    expect(second).not.toBe(first);
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
