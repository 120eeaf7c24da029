#!/usr/bin/env node
// npm run soak: a bounded soak of the full audited pipeline, and a cold start of many children.
//  1. SOAK_CALLS (default 200,000) audited calls at 32 in flight through one gateway to the echo
//     fixture: errors, the gateway's RSS at start / after warm-up / middle / end, then the audit
//     chain verified and the usage totals compared with the number of calls.
//  2. CHILDREN (default 20) servers starting at once: time from spawning the gateway until every
//     one is ready.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { verifyChain } from '../dist/audit/verify.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = path.join(ROOT, 'bin/mcp-gateway.js');
const ECHO = path.join(ROOT, 'test/fixtures/echo.js');
const KEY = 'gw_soakkey_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';
const CALLS = Number(process.env.SOAK_CALLS ?? 200_000);
const CHILDREN = Number(process.env.CHILDREN ?? 20);
const IN_FLIGHT = 32;

const rssMb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

async function start(dir, config) {
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, stringify(config));
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'serve', '--config', file],
    env: { PATH: process.env.PATH, SOAK_KEY: KEY, MCP_GATEWAY_API_KEY: KEY, MCP_GATEWAY_LOG_LEVEL: 'warn' },
    stderr: 'inherit',
  });
  const client = new Client({ name: 'soak', version: '1.0.0' });
  await client.connect(transport);
  return { client, pid: transport.pid };
}

const auth = { apiKeys: { static: [{ id: 'soakkey', consumerId: 'soak', roles: ['admin'], key: '${SOAK_KEY}' }] } };
const policies = [{ id: 'admin', roles: ['admin'], rules: [{ action: 'allow' }, { server: 'gateway', action: 'allow' }] }];

async function soak(dir) {
  const db = path.join(dir, 'soak.db');
  const { client, pid } = await start(dir, {
    database: db,
    auth,
    servers: [{ id: 'echo', command: process.execPath, args: [ECHO] }],
    policies,
    rateLimit: { enabled: false },
  });
  const rss = { start: rssMb(pid) };
  let next = 0;
  let errors = 0;
  const marks = { warm: Math.min(20_000, CALLS / 10), middle: CALLS / 2 };
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < CALLS) {
        const n = next++;
        const r = await client.callTool({ name: 'echo__echo', arguments: { message: `call ${n}` } });
        if (r.isError || r.content?.[0]?.text !== `call ${n}`) errors++;
        if (n === marks.warm) rss.warm = rssMb(pid);
        if (n === marks.middle) rss.middle = rssMb(pid);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  rss.end = rssMb(pid);
  await client.close();

  const handle = new Database(db, { readonly: true });
  const verify = verifyChain(handle, { hmacKey: null });
  const rows = handle.prepare('SELECT count(*) AS n FROM audit_log').get().n;
  const usage = handle.prepare("SELECT sum(calls) AS calls, sum(errors) AS errors FROM usage_hourly WHERE server = 'echo'").get();
  handle.close();
  console.log(
    `soak: ${CALLS} audited calls, ${IN_FLIGHT} in flight, ${seconds.toFixed(1)} s (${Math.round(CALLS / seconds)} calls/s), ${errors} errors`,
  );
  console.log(
    `  gateway RSS: start ${rss.start.toFixed(0)} MB, after ${marks.warm} calls ${rss.warm.toFixed(0)} MB, middle ${rss.middle.toFixed(0)} MB, end ${rss.end.toFixed(0)} MB` +
      ` (growth after warm-up ${(((rss.end - rss.warm) / rss.warm) * 100).toFixed(1)}%)`,
  );
  console.log(
    `  audit: ${rows} rows, chain ${verify.ok ? `verifies (${verify.rows} rows)` : `BROKEN at seq ${verify.seq}: ${verify.reason}`}`,
  );
  console.log(
    `  usage: calls ${usage.calls} (= ${usage.calls === CALLS ? 'the number of calls' : `NOT ${CALLS}`}), errors ${usage.errors}`,
  );
  return errors === 0 && verify.ok && rows === CALLS && usage.calls === CALLS;
}

async function coldStart(dir) {
  const servers = Array.from({ length: CHILDREN }, (_, i) => ({ id: `echo${i}`, command: process.execPath, args: [ECHO] }));
  const t0 = performance.now();
  const { client } = await start(dir, { database: path.join(dir, 'cold.db'), auth, servers, policies });
  const initMs = performance.now() - t0;
  let ready = 0;
  while (ready < CHILDREN) {
    const status = await client.callTool({ name: 'server_status', arguments: {} });
    ready = status.structuredContent.servers.filter((s) => s.state === 'ready').length;
    if (ready < CHILDREN) await new Promise((r) => setTimeout(r, 20));
  }
  const allMs = performance.now() - t0;
  await client.close();
  console.log(
    `cold start: ${CHILDREN} children; initialize answered after ${initMs.toFixed(0)} ms, all ${CHILDREN} ready after ${allMs.toFixed(0)} ms`,
  );
}

const dir = mkdtempSync(path.join(tmpdir(), 'mcpgw-soak-'));
try {
  const ok = await soak(dir);
  await coldStart(dir);
  process.exitCode = ok ? 0 : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
