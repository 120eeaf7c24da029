/**
 * Stopping on a signal (issue 13 §7): SIGTERM stops taking requests (they are answered
 * SERVER_UNAVAILABLE), lets those in progress finish within `limits.shutdownGraceMs`, records
 * them, and exits 0. A request still running at the end of the grace is ended and recorded too.
 */
import type { ChildProcess } from 'node:child_process';
import { expect, test } from 'vitest';
import { errorCode, fixture, startGateway, testConfig, textOf, waitFor, waitListed } from '../helpers/gateway.js';
import { auditRows } from '../helpers/security.js';

function exited(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

test('SIGTERM: the call in progress finishes and is recorded, a new one is refused, exit 0', async () => {
  const gw = await startGateway({ config: testConfig({ servers: [{ id: 'slow', ...fixture('slow.js') }] }) });
  try {
    await waitListed(gw.client, 'slow__sleep');
    const inProgress = gw.client.callTool({ name: 'slow__sleep', arguments: { ms: 1_500 } });
    await new Promise((r) => setTimeout(r, 300));
    // The SDK transport's own process handle: the only way to the exit code.
    const proc = (gw.transport as unknown as { _process?: ChildProcess })._process!;
    const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    process.kill(gw.pid, 'SIGTERM');
    await waitFor(() => /stopping \(SIGTERM\)/.test(gw.stderr()), 5_000, 'the stop');
    const refused = await gw.client.callTool({ name: 'slow__quick', arguments: {} });
    expect(errorCode(refused)).toBe('SERVER_UNAVAILABLE');
    expect(textOf(refused)).toContain('stopping');
    expect(textOf(await inProgress)).toBe('slept 1500');
    expect(await exit).toBe(0);
    const rows = auditRows(gw.dir).filter((r) => r['name'] === 'sleep');
    expect(rows.map((r) => r['status'])).toEqual(['ok']);
  } finally {
    await gw.close();
  }
});

test('SIGTERM: a call still running after shutdownGraceMs is ended, recorded, and the gateway exits', async () => {
  const gw = await startGateway({
    config: testConfig({ limits: { shutdownGraceMs: 500 }, servers: [{ id: 'slow', ...fixture('slow.js') }] }),
  });
  try {
    await waitListed(gw.client, 'slow__hang');
    const hanging = gw.client.callTool({ name: 'slow__hang', arguments: {} }).catch((err: Error) => err);
    await new Promise((r) => setTimeout(r, 300));
    process.kill(gw.pid, 'SIGTERM');
    await waitFor(() => exited(gw.pid), 15_000, 'the gateway to exit');
    expect(gw.stderr()).toMatch(/1 request still in progress after 500 ms: ending them/);
    await hanging;
    const rows = auditRows(gw.dir).filter((r) => r['name'] === 'hang');
    expect(rows).toHaveLength(1);
    expect(rows[0]!['status']).not.toBe('ok');
  } finally {
    await gw.close();
  }
});
