/**
 * Security: a server's secret never reaches the agent or the database (docs/security.md C2, D2).
 * hostile-leaker.js tries every way out with the value of its env LEAK_SECRET: in the names it
 * lists (tool, prompt, resource URI), encoded in results (base64, base64url, hex, percent-encoded,
 * base64 inside a longer string), inside sampling and elicitation requests to the agent, split
 * over two stderr lines, and, with `start: lazy`, in the catalog the gateway remembers in its
 * database. Nothing the agent receives may hold the secret or any of those encodings.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { JSONRPCMessage } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { call, fixture, testConfig, waitListed, type Obj, type RunningGateway } from '../helpers/gateway.js';
import { Gateways, request, statusOf, token } from '../helpers/security.js';

const SECRET = token('LeakS3cret', 24);
const LEAKER = { id: 'leaker', ...fixture('hostile-leaker.js'), env: { LEAK_SECRET: SECRET } };
const PATIENT = { limits: { listWaitMs: 30_000 } };

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const bytes = Buffer.from(SECRET, 'utf8');
/** The secret and every encoding of it the leaker uses. */
const NEEDLES: Record<string, string> = {
  secret: SECRET,
  base64: bytes.toString('base64'),
  base64url: bytes.toString('base64url'),
  'hex upper case': bytes.toString('hex').toUpperCase(),
  'hex lower case': bytes.toString('hex'),
  'percent-encoded': [...bytes].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  'percent-encoded, lower case': [...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join(''),
  'base64 mid-string': b64(`ab${SECRET}cd`),
};

/** The names of the needles found in `value` (as JSON text). */
function leaks(value: unknown): string[] {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return Object.entries(NEEDLES)
    .filter(([, needle]) => text.includes(needle))
    .map(([name]) => name);
}

const gateways = new Gateways();
afterAll(() => gateways.closeAll());

describe('a leaking server, to an agent that supports sampling and elicitation', () => {
  let gw: RunningGateway;
  const received: JSONRPCMessage[] = [];
  const sampling: Obj[] = [];
  const elicitation: Obj[] = [];

  beforeAll(async () => {
    gw = await gateways.start({
      config: testConfig({ ...PATIENT, servers: [LEAKER, { id: 'echo', ...fixture('echo.js') }] }),
      capabilities: { sampling: {}, elicitation: {} },
      beforeConnect: (client) => {
        client.setRequestHandler('sampling/createMessage', async (req) => {
          sampling.push(req.params as Obj);
          return { role: 'assistant', model: 'agent-model', content: { type: 'text', text: 'sampled' } };
        });
        client.setRequestHandler('elicitation/create', async (req) => {
          elicitation.push(req.params as Obj);
          return { action: 'decline' };
        });
      },
    });
    // Everything the agent's transport receives, for the final sweep.
    const onmessage = gw.transport.onmessage!;
    gw.transport.onmessage = (message) => {
      received.push(message);
      onmessage(message);
    };
    await waitListed(gw.client, ['leaker__encoded', 'echo__echo']);
  });

  test('tools/list, prompts/list, resources/list and list_tools hold no trace of the secret', async () => {
    const lists = {
      tools: await request(gw.client, 'tools/list', {}),
      prompts: await request(gw.client, 'prompts/list', {}),
      resources: await request(gw.client, 'resources/list', {}),
      templates: await request(gw.client, 'resources/templates/list', {}),
      list_tools: await call(gw.client, 'list_tools', {}),
    };
    // The leaker's other tools are still listed and usable.
    expect(JSON.stringify(lists.tools)).toContain('leaker__encoded');
    for (const [name, list] of Object.entries(lists)) expect(leaks(list), name).toEqual([]);
  });

  test('the result of `encoded` holds none of base64, base64url, hex, percent-encoding or embedded base64 of the secret', async () => {
    const result = await call(gw.client, 'leaker__encoded', {});
    expect((result['content'] as Obj[]).length).toBe(5);
    expect(leaks(result)).toEqual([]);
  });

  test('the sampling request the agent gets holds no trace of the secret', async () => {
    const result = await call(gw.client, 'leaker__sample', {});
    expect(sampling.length, JSON.stringify(result)).toBe(1);
    expect(leaks(sampling)).toEqual([]);
    expect(leaks(result)).toEqual([]);
  });

  test('the elicitation request the agent gets holds no trace of the secret', async () => {
    const result = await call(gw.client, 'leaker__elicit', {});
    expect(elicitation.length, JSON.stringify(result)).toBe(1);
    expect(leaks(elicitation)).toEqual([]);
    expect(leaks(result)).toEqual([]);
  });

  test('server_status: the stderr tail (the secret split over two lines) does not give the secret back', async () => {
    const status = await statusOf(gw.client, 'leaker');
    const tail = status['stderrTail'] as string[];
    expect(tail.length).toBeGreaterThan(0);
    expect(leaks(tail.join(''))).toEqual([]);
    expect(leaks(tail.join('\n'))).toEqual([]);
    expect(leaks(status)).toEqual([]);
  });

  test('nothing the agent received in the whole session holds the secret or an encoding of it', () => {
    expect(received.length).toBeGreaterThan(0);
    const found = received.flatMap((m) => leaks(m).map((what) => `${what} in ${JSON.stringify(m).slice(0, 200)}`));
    expect(found).toEqual([]);
  });
});

describe('a leaking server with start: lazy', () => {
  test('the database file (and its -wal) never holds the secret: not in the remembered catalog, not anywhere', async () => {
    const gw = await gateways.start({ config: testConfig({ ...PATIENT, servers: [{ ...LEAKER, start: 'lazy' }] }) });
    // A list starts a lazy server whose catalog is not known yet; its catalog is then remembered.
    await waitListed(gw.client, 'leaker__encoded');
    await call(gw.client, 'leaker__encoded', {});
    const db = path.join(gw.dir, 'gateway.db');
    const holdsSecret = () =>
      ['', '-wal']
        .filter((x) => existsSync(db + x) && readFileSync(db + x).includes(Buffer.from(SECRET, 'utf8')))
        .map((x) => `gateway.db${x}`);

    expect(holdsSecret(), 'while the gateway runs').toEqual([]);
    await gw.close();
    expect(holdsSecret(), 'after the gateway stopped').toEqual([]);
  });
});
