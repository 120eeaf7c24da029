#!/usr/bin/env node
// `npm run bench:http`: the same child (test/fixtures/echo.js) behind three Streamable HTTP fronts,
// measured the same way in one run:
//   (a) a bare SDK v2 HTTP relay (bench/relay-http-v2.js): one handler, one shared child client;
//   (b) mcp-gateway serve --http with the full pipeline: a key per agent, policy, rate limit
//       (a bucket far above the load), audit chain and usage metering on SQLite;
//   (c) supergateway --stateful (a child per session), with 2025-era agents (its only kind).
// For 1, 16 and 64 concurrent agents (each its own client and, for (b), its own key), every agent
// calls echo__echo in a loop for BENCH_HTTP_SECONDS; throughput and p50/p99 latency are printed
// beside (a) and the ratios the targets are about. Agents are 2026-07-28 clients for (a)
// and (b) (the gateway is also measured with 2025-era session agents), 2025-era for (c).
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from '@modelcontextprotocol/client';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { stringify } from 'yaml';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ECHO = path.join(ROOT, 'test/fixtures/echo.js');
const BIN = path.join(ROOT, 'bin/mcp-gateway.js');
const RELAY = path.join(ROOT, 'bench/relay-http-v2.js');
const SUPERGATEWAY = path.join(ROOT, 'node_modules/supergateway/dist/index.js');
const SECONDS = Number(process.env.BENCH_HTTP_SECONDS ?? 6);
const WARMUP_SECONDS = Number(process.env.BENCH_HTTP_WARMUP ?? 2);
const ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 3);
const AGENTS = (process.env.BENCH_HTTP_AGENTS ?? '1,16,64').split(',').map(Number);
const MAX_AGENTS = Math.max(...AGENTS);
const keyOf = (i) => `gw_bench${String(i).padStart(3, '0')}_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG`;

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(url, ms = 20_000) {
  const until = Date.now() + ms;
  for (;;) {
    try {
      await fetch(url, { method: 'GET' });
      return;
    } catch {
      if (Date.now() > until) throw new Error(`nothing answers at ${url}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function start(command, args, options = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  return {
    child,
    stderr: () => stderr,
    stop: () => new Promise((r) => (child.exitCode !== null ? r() : (child.once('exit', r), child.kill('SIGTERM')))),
  };
}

function gatewayConfig(dir) {
  const config = {
    database: './gateway.db',
    auth: {
      apiKeys: {
        static: Array.from({ length: MAX_AGENTS }, (_, i) => ({
          id: `bench${String(i).padStart(3, '0')}`,
          consumerId: `agent${i}`,
          roles: ['admin'],
          key: keyOf(i),
        })),
      },
    },
    policies: [{ id: 'admin', roles: ['admin'], rules: [{ action: 'allow' }] }],
    rateLimit: { defaultPerMinute: 10_000_000 },
    http: { maxConcurrentPerConsumer: 1_000 },
    servers: [{ id: 'echo', command: process.execPath, args: [ECHO] }],
  };
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

async function connect(url, era, i) {
  const headers = { authorization: `Bearer ${keyOf(i)}` };
  if (era === 'modern') {
    const client = new ClientV2({ name: `agent${i}`, version: '1' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
    await client.connect(new TransportV2(new URL(url), { requestInit: { headers } }));
    return client;
  }
  const client = new ClientV1({ name: `agent${i}`, version: '1' });
  await client.connect(new TransportV1(new URL(url), { requestInit: { headers } }));
  return client;
}

async function load(clients, seconds, tool) {
  const latencies = [];
  let errors = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    clients.map(async (client) => {
      while (performance.now() < until) {
        const t0 = performance.now();
        const r = await client.callTool({ name: tool, arguments: { message: 'hi' } }).catch(() => ({ isError: true }));
        latencies.push(performance.now() - t0);
        if (r.isError) errors++;
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { rate: latencies.length / seconds, p50: at(0.5), p99: at(0.99), errors, calls: latencies.length };
}

async function measurePoint(url, era, tool, n) {
  const clients = [];
  for (let i = 0; i < n; i++) clients.push(await connect(url, era, i));
  await load(clients, WARMUP_SECONDS, tool);
  const r = await load(clients, SECONDS, tool);
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  return r;
}

const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  // The v1 client's fetches leave abort listeners until garbage collection: not ours to report.
  process.removeAllListeners('warning');
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpgw-benchhttp-'));
  console.log(
    `bench:http: ${ROUNDS} rounds (fronts interleaved in each), ${SECONDS} s per point after ${WARMUP_SECONDS} s warm-up, agents ${AGENTS.join(', ')}, Node ${process.version}, ${cpus().length} CPUs`,
  );
  const ports = { relay: await freePort(), gateway: await freePort(), supergateway: await freePort() };
  const procs = [
    start(process.execPath, [RELAY, String(ports.relay), process.execPath, ECHO]),
    start(process.execPath, [BIN, 'serve', '--http', `127.0.0.1:${ports.gateway}`, '-c', gatewayConfig(dir)], {
      cwd: dir,
      env: { ...process.env, MCP_GATEWAY_LOG_LEVEL: 'warn' },
    }),
    start(process.execPath, [
      SUPERGATEWAY,
      '--stdio',
      `${process.execPath} ${ECHO}`,
      '--outputTransport',
      'streamableHttp',
      '--stateful',
      '--port',
      String(ports.supergateway),
      '--logLevel',
      'none',
    ]),
  ];
  await waitFor(`http://127.0.0.1:${ports.relay}/mcp`);
  await waitFor(`http://127.0.0.1:${ports.gateway}/healthz`);
  await waitFor(`http://127.0.0.1:${ports.supergateway}/mcp`);
  const fronts = [
    { key: 'relay', label: '(a) bare SDK v2 HTTP relay', url: `http://127.0.0.1:${ports.relay}/mcp`, era: 'modern', tool: 'echo__echo' },
    {
      key: 'gateway',
      label: '(b) mcp-gateway, full pipeline',
      url: `http://127.0.0.1:${ports.gateway}/mcp`,
      era: 'modern',
      tool: 'echo__echo',
    },
    {
      key: 'gatewayLegacy',
      label: '(b) mcp-gateway, 2025 sessions',
      url: `http://127.0.0.1:${ports.gateway}/mcp`,
      era: 'legacy',
      tool: 'echo__echo',
    },
    {
      key: 'supergateway',
      label: '(c) supergateway --stateful',
      url: `http://127.0.0.1:${ports.supergateway}/mcp`,
      era: 'legacy',
      tool: 'echo',
    },
  ];
  const runs = {};
  for (let round = 1; round <= ROUNDS; round++)
    for (const n of AGENTS)
      for (const f of fronts) {
        const r = await measurePoint(f.url, f.era, f.tool, n);
        ((runs[f.key] ??= {})[n] ??= []).push(r);
        if (r.errors) console.log(`round ${round}: ${f.label}, ${n} agents: ${r.errors} errors`);
      }
  await Promise.all(procs.map((p) => p.stop()));

  const results = {};
  console.log('\nmedians over the rounds (range of throughput):');
  for (const f of fronts) {
    results[f.key] = {};
    for (const n of AGENTS) {
      const rs = runs[f.key][n];
      const r = (results[f.key][n] = {
        rate: median(rs.map((x) => x.rate)),
        p50: median(rs.map((x) => x.p50)),
        p99: median(rs.map((x) => x.p99)),
      });
      const lo = Math.min(...rs.map((x) => x.rate));
      const hi = Math.max(...rs.map((x) => x.rate));
      console.log(
        `${f.label.padEnd(34)} ${String(n).padStart(3)} agents ${r.rate.toFixed(0).padStart(7)} calls/s (${lo.toFixed(0)}–${hi.toFixed(0)})  p50 ${r.p50.toFixed(2).padStart(7)} ms  p99 ${r.p99.toFixed(2).padStart(7)} ms`,
      );
    }
  }
  console.log('\nratios (b)/(a) and (b)/(c), throughput and p99:');
  for (const n of AGENTS) {
    const a = results.relay[n],
      b = results.gateway[n],
      c = results.supergateway[n];
    console.log(
      `${String(n).padStart(3)} agents: throughput ${(b.rate / a.rate).toFixed(2)}× relay, p99 ${(b.p99 / a.p99).toFixed(2)}× relay; ${(b.rate / c.rate).toFixed(1)}× supergateway`,
    );
  }
  const top = results.gateway[MAX_AGENTS],
    floor = results.relay[MAX_AGENTS],
    sg = results.supergateway[MAX_AGENTS];
  console.log(
    `\ntargets at ${MAX_AGENTS} agents: throughput ≥ 0.8× relay: ${top.rate / floor.rate >= 0.8 ? 'met' : 'NOT met'}; p99 ≤ 1.5× relay: ${top.p99 / floor.p99 <= 1.5 ? 'met' : 'NOT met'}; ≥ 10× supergateway: ${top.rate / sg.rate >= 10 ? 'met' : 'NOT met'}`,
  );
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
