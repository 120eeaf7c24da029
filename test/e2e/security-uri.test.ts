/**
 * Security: resource policy decides on normalised URIs, and path arguments are normalised before
 * a `path` condition matches (docs/security.md A4). hostile-files.js resolves what it is asked
 * the way a naive server does (decodeURIComponent, then path.posix.normalize), so an encoded or
 * dotted URI that an allow rule for file:///srv/files/public/** lets through reaches
 * /srv/files/payroll.txt ("PAYROLL-SECRET"). The gateway must decide on the RFC 3986-normalised
 * URI and forward exactly that, and refuse URIs it cannot normalise unambiguously (encoded "/" or
 * "\", double-encoded dots, invalid %-encoding) with INVALID_ARGUMENTS.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { call, errorCode, fixture, tempDir, testConfig, textOf, waitListed, type Obj, type RunningGateway } from '../helpers/gateway.js';
import { Gateways, auditRows, request } from '../helpers/security.js';

const SECRET = 'PAYROLL-SECRET';
const PUBLIC = '/srv/files/public/';
const gateways = new Gateways();
afterAll(() => gateways.closeAll());

interface Received {
  readonly kind: 'read' | 'tool';
  readonly asked: unknown;
  readonly resolved: string | null;
}

/** The files server, logging every request it receives to `<dir>/requests.log`. */
function filesServer(dir: string): Obj {
  return { id: 'files', ...fixture('hostile-files.js'), env: { FIXTURE_MARKER_DIR: dir } };
}

function receivedBy(dir: string): Received[] {
  const log = path.join(dir, 'requests.log');
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Received);
}

/** What a resources/read ended with: its result, or its JSON-RPC error. */
async function read(gw: RunningGateway, uri: string): Promise<{ result?: Obj; error?: { code: number; data?: Obj } }> {
  try {
    return { result: await request(gw.client, 'resources/read', { uri }) };
  } catch (err) {
    return { error: err as { code: number; data?: Obj } };
  }
}

describe('resources/read through an allow rule for file:///srv/files/public/**', () => {
  let gw: RunningGateway;
  let markers: string;

  beforeAll(async () => {
    markers = tempDir('mcpgw-sec-files-');
    gw = await gateways.start({
      config: testConfig(
        {
          limits: { listWaitMs: 30_000 },
          servers: [filesServer(markers)],
          policies: [
            { id: 'users', roles: ['user'], rules: [{ server: 'files', resource: 'file:///srv/files/public/**', action: 'allow' }] },
          ],
        },
        ['user'],
      ),
    });
    const listed = (await request(gw.client, 'resources/list', {}))['resources'] as Obj[];
    expect(listed.map((r) => r['uri'])).toEqual(['file:///srv/files/public/readme.txt']);
  });

  /** Every URI the child received since `since` requests resolves inside public/. */
  const childStayedInPublic = (since: number) => {
    const outside = receivedBy(markers)
      .slice(since)
      .filter((r) => r.kind === 'read' && !String(r.resolved).startsWith(PUBLIC));
    expect(outside, 'reads the child received that resolve outside public/').toEqual([]);
  };

  // Each of these can only mean /srv/files/payroll.txt, or cannot be normalised unambiguously:
  // the gateway refuses it and forwards nothing. After normalising, payroll.txt is a resource this
  // caller may never read, so it is answered as one that does not exist (UNKNOWN_TOOL, resource
  // not found: no existence oracle); what cannot be normalised is INVALID_ARGUMENTS.
  test.each([
    ['encoded dots', 'file:///srv/files/public/%2e%2e/payroll.txt'],
    ['one dot encoded, upper case', 'file:///srv/files/public/.%2E/payroll.txt'],
    ['encoded dots and slash', 'file:///srv/files/public/%2E%2E%2Fpayroll.txt'],
    ['an encoded slash', 'file:///srv/files/public/..%2fpayroll.txt'],
    ['double-encoded dots', 'file:///srv/files/public/%252e%252e/payroll.txt'],
  ])('%s (%s): refused (UNKNOWN_TOOL, FORBIDDEN or INVALID_ARGUMENTS), nothing forwarded, no secret', async (_what, uri) => {
    const before = receivedBy(markers).length;
    const outcome = await read(gw, uri);
    expect(JSON.stringify(outcome)).not.toContain(SECRET);
    expect(outcome.error, `served: ${JSON.stringify(outcome.result)}`).toBeDefined();
    expect(['UNKNOWN_TOOL', 'FORBIDDEN', 'INVALID_ARGUMENTS']).toContain(outcome.error!.data?.['code']);
    expect(receivedBy(markers).slice(before), 'what the child received for it').toEqual([]);
    childStayedInPublic(before);
  });

  test('literal dot segments are resolved before the policy decides: public/sub/../readme.txt is allowed and forwarded as public/readme.txt; public//../payroll.txt never yields the secret', async () => {
    let before = receivedBy(markers).length;
    const outcome = await read(gw, 'file:///srv/files/public/sub/../readme.txt');
    expect(outcome.error, JSON.stringify(outcome.error)).toBeUndefined();
    const content = (outcome.result!['contents'] as Obj[])[0]!;
    expect(content['text']).toBe('public readme');
    expect(content['uri']).toBe('file:///srv/files/public/readme.txt');
    expect(
      receivedBy(markers)
        .slice(before)
        .map((r) => r.asked),
    ).toEqual(['file:///srv/files/public/readme.txt']);
    childStayedInPublic(before);

    // An empty segment before "..": RFC 3986 makes it file:///srv/files/public/payroll.txt (not
    // there), a naive server /srv/files/payroll.txt. Refused, or forwarded inside public/.
    before = receivedBy(markers).length;
    const dodge = await read(gw, 'file:///srv/files/public//../payroll.txt');
    expect(JSON.stringify(dodge)).not.toContain(SECRET);
    const forwarded = receivedBy(markers).slice(before);
    if (forwarded.length === 0) {
      expect(['FORBIDDEN', 'INVALID_ARGUMENTS']).toContain(dodge.error?.data?.['code']);
    } else {
      for (const r of forwarded) expect(String(r.asked).startsWith(`file://${PUBLIC}`), String(r.asked)).toBe(true);
    }
    childStayedInPublic(before);
  });

  test('refusals of URIs that cannot be normalised are audited with status invalid', async () => {
    const uri = 'file:///srv/files/public/..%2fpayroll.txt';
    const outcome = await read(gw, uri);
    expect(outcome.error?.data?.['code']).toBe('INVALID_ARGUMENTS');
    const row = auditRows(gw.dir).findLast((r) => r['kind'] === 'resource' && /\.\.%2f/i.test(String(r['name'])));
    expect(row?.['status']).toBe('invalid');
  });
});

describe('read_file {path} allowed when args.path: { path: "/srv/files/public/**" }', () => {
  let gw: RunningGateway;
  let markers: string;

  beforeAll(async () => {
    markers = tempDir('mcpgw-sec-paths-');
    gw = await gateways.start({
      config: testConfig(
        {
          servers: [filesServer(markers)],
          policies: [
            {
              id: 'users',
              roles: ['user'],
              rules: [{ server: 'files', tool: 'read_file', action: 'allow', when: { 'args.path': { path: '/srv/files/public/**' } } }],
            },
          ],
        },
        ['user'],
      ),
    });
    await waitListed(gw.client, 'files__read_file');
  });

  test('/srv/files/public/../payroll.txt (and other ways out, and a relative path) are FORBIDDEN and never reach the child', async () => {
    for (const p of [
      '/srv/files/public/../payroll.txt',
      '/srv/files/public/sub/../../payroll.txt',
      '/srv/files/public//../payroll.txt',
      'srv/files/public/readme.txt',
    ]) {
      const result = await call(gw.client, 'files__read_file', { path: p });
      expect(JSON.stringify(result)).not.toContain(SECRET);
      expect(errorCode(result), p).toBe('FORBIDDEN');
    }
    expect(receivedBy(markers)).toEqual([]);
  });

  test('/srv/files/public/./readme.txt works', async () => {
    const result = await call(gw.client, 'files__read_file', { path: '/srv/files/public/./readme.txt' });
    expect(result['isError'], JSON.stringify(result)).not.toBe(true);
    expect(textOf(result)).toBe('public readme');
  });
});
