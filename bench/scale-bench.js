#!/usr/bin/env node
// `npm run bench:scale`: what the shared stores (issue 14) cost, each figure beside its baseline
// measured the same way in the same run, with the ratio and the issue's target:
//   1. an audited call (static key, policy, audit chain, metering; test/fixtures/echo.js) through one
//      gateway on PostgreSQL vs on SQLite, one agent with one call in flight: p50/p99, over stdio
//      (SDK v1 client) and over HTTP (`serve --http`, SDK v2 client pinned to 2026-07-28);
//   2. the same gateways with 32 calls in flight (stdio: one client; HTTP: 32 agents): calls/s;
//   3. the Redis bucket check: RedisRateLimiter vs RateLimiter in process (µs per admission), and
//      end to end (sequential audited calls over stdio, rateLimit.store memory vs redis);
//   4. 64 agents over HTTP on PostgreSQL + Redis buckets: one replica vs three, each behind the same
//      round-robin proxy (this file, run with --proxy in a process of its own).
// A fresh PostgreSQL database is created for the run and dropped at the end, and the run's Redis keys
// (under a prefix of its own) deleted. Where PostgreSQL or Redis does not answer, the parts needing
// it are skipped with a message. Figures are medians over BENCH_SCALE_ROUNDS interleaved rounds.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from '@modelcontextprotocol/client';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { Redis } from 'ioredis';
import pg from 'pg';
import { stringify } from 'yaml';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const ECHO = path.join(ROOT, 'test/fixtures/echo.js');
const BIN = path.join(ROOT, 'bin/mcp-gateway.js');
const PG_ADMIN_URL = process.env.BENCH_SCALE_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.BENCH_SCALE_REDIS ?? 'redis://127.0.0.1:6379';

const ROUNDS = Number(process.env.BENCH_SCALE_ROUNDS ?? 3);
// Sequential calls per measurement, after WARMUP (the gateway's JIT warms up over its first calls).
const SEQUENTIAL = Number(process.env.BENCH_SCALE_SEQUENTIAL ?? 1500);
const WARMUP = Number(process.env.BENCH_SCALE_WARMUP ?? 1000);
// Stdio, 32 in flight: calls measured after CONCURRENT_WARMUP.
const CONCURRENT = Number(process.env.BENCH_SCALE_CONCURRENT ?? 5000);
const CONCURRENT_WARMUP = Number(process.env.BENCH_SCALE_CONCURRENT_WARMUP ?? 2000);
// HTTP with many agents: each calls in a loop for SECONDS after WARMUP_SECONDS.
const SECONDS = Number(process.env.BENCH_SCALE_SECONDS ?? 3);
const WARMUP_SECONDS = Number(process.env.BENCH_SCALE_WARMUP_SECONDS ?? 1);
// In-process bucket checks per limiter and round.
const ADMISSIONS = Number(process.env.BENCH_SCALE_ADMISSIONS ?? 20000);
const IN_FLIGHT = 32;
const AGENTS = 64;
const REPLICAS = 3;

const keyId = (i) => `bench${String(i).padStart(3, '0')}`;
const keyOf = (i) => `gw_${keyId(i)}_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG`;
const IDENTITY = Object.freeze({ consumerId: 'agent0', keyId: keyId(0), method: 'api-key', roles: ['bench'], claims: {}, expiresAt: null });
const TARGET = Object.freeze({ server: 'echo', kind: 'tool', name: 'echo' });

// ---------------------------------------------------------------------------------------------
// small helpers (as in http-bench.js and bench.js)

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(url, ms = 30_000) {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await fetch(url).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing ready at ${url}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Gateway stderr worth reporting (warnings, errors), by process label. */
const stderrSeen = new Map();
function keepStderr(label, stream) {
  stream?.on('data', (d) => stderrSeen.set(label, ((stderrSeen.get(label) ?? '') + d).slice(-4000)));
}

const running = new Set();
function start(label, args, options = {}) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options });
  keepStderr(label, child.stderr);
  const proc = {
    child,
    stop: () =>
      new Promise((r) => {
        running.delete(proc);
        if (child.exitCode !== null || child.signalCode !== null) return r();
        child.once('exit', r);
        child.kill('SIGTERM');
      }),
  };
  running.add(proc);
  return proc;
}

const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function percentiles(latencies) {
  const s = Float64Array.from(latencies).sort();
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99) };
}

/** The median of each figure over the rounds. */
function summarize(runs) {
  const out = {};
  for (const key of Object.keys(runs[0])) out[key] = typeof runs[0][key] === 'number' ? median(runs.map((r) => r[key])) : runs[0][key];
  out.errors = runs.reduce((n, r) => n + (r.errors ?? 0), 0);
  out.firstError = runs.find((r) => r.firstError)?.firstError;
  out.lo = Math.min(...runs.map((r) => r.rate ?? NaN));
  out.hi = Math.max(...runs.map((r) => r.rate ?? NaN));
  return out;
}

// ---------------------------------------------------------------------------------------------
// load

/** One call; a failed call counts as an error (its first message kept) rather than ending the run. */
function caller(client, tally) {
  return () =>
    client.callTool({ name: 'echo__echo', arguments: { message: 'hello' } }).then(
      (r) => {
        if (r.isError) {
          tally.errors++;
          tally.firstError ??= JSON.stringify(r.content).slice(0, 300);
        }
      },
      (err) => {
        tally.errors++;
        tally.firstError ??= String(err?.message ?? err).slice(0, 300);
      },
    );
}

/** WARMUP calls, then SEQUENTIAL timed ones, one in flight. */
async function sequential(call) {
  for (let i = 0; i < WARMUP; i++) await call();
  const lat = new Float64Array(SEQUENTIAL);
  const t0 = performance.now();
  for (let i = 0; i < SEQUENTIAL; i++) {
    const s = performance.now();
    await call();
    lat[i] = performance.now() - s;
  }
  return { rate: SEQUENTIAL / ((performance.now() - t0) / 1000), ...percentiles(lat) };
}

/** `total` calls through one client, IN_FLIGHT outstanding at any time. */
async function inFlight(call, total, latencies) {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < total) {
        next++;
        const s = performance.now();
        await call();
        latencies?.push(performance.now() - s);
      }
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

/** Every agent calls in a loop for `seconds`. */
async function timed(calls, seconds) {
  const lat = [];
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    calls.map(async (call) => {
      while (performance.now() < until) {
        const s = performance.now();
        await call();
        lat.push(performance.now() - s);
      }
    }),
  );
  return { rate: lat.length / seconds, ...percentiles(lat) };
}

// ---------------------------------------------------------------------------------------------
// gateways

function writeConfig(dir, name, { database, store = 'memory', prefix, http: httpFront = false }) {
  const config = {
    database,
    auth: {
      apiKeys: {
        static: Array.from({ length: AGENTS }, (_, i) => ({ id: keyId(i), consumerId: `agent${i}`, roles: ['bench'], key: keyOf(i) })),
      },
    },
    servers: [{ id: 'echo', command: process.execPath, args: [ECHO] }],
    policies: [{ id: 'bench', roles: ['bench'], rules: [{ server: 'echo', tool: 'echo', action: 'allow' }] }],
    // A bucket far above the load: exercised on every call, never refusing.
    rateLimit: { enabled: true, store, defaultPerMinute: 60_000_000 },
    ...(store === 'redis' ? { redis: { url: REDIS_URL, keyPrefix: prefix } } : {}),
    audit: { enabled: true, hashChain: true },
    metering: { enabled: true },
    ...(httpFront ? { http: { maxConcurrentPerConsumer: 1_000 } } : {}),
  };
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(config));
  return file;
}

/** `serve` over stdio as the child of an SDK v1 client, as bench/bench.js has it. */
async function stdioGateway(label, file) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'serve', '--config', file],
    env: { PATH: process.env.PATH, MCP_GATEWAY_API_KEY: keyOf(0), MCP_GATEWAY_LOG_LEVEL: 'warn' },
    cwd: path.dirname(file),
    stderr: 'pipe',
  });
  keepStderr(label, transport.stderr);
  const client = new Client({ name: 'bench', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

/** A 2026-07-28 agent over HTTP with key i. */
async function httpAgent(url, i) {
  const client = new ClientV2({ name: `agent${i}`, version: '1' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
  await client.connect(new TransportV2(new URL(url), { requestInit: { headers: { authorization: `Bearer ${keyOf(i)}` } } }));
  return client;
}

async function httpGateway(label, file, port) {
  const proc = start(label, [BIN, 'serve', '--http', `127.0.0.1:${port}`, '--config', file], {
    cwd: path.dirname(file),
    env: { ...process.env, MCP_GATEWAY_LOG_LEVEL: 'warn' },
  });
  await waitFor(`http://127.0.0.1:${port}/readyz`);
  return proc;
}

async function withAgents(url, n, fn) {
  const clients = await Promise.all(Array.from({ length: n }, (_, i) => httpAgent(url, i)));
  try {
    return await fn(clients);
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
  }
}

// ---------------------------------------------------------------------------------------------
// the round-robin proxy (`node bench/scale-bench.js --proxy <port> <replica port>...`)

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);
const endToEnd = (headers) => Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.has(name)));

function runProxy(port, targets) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  let next = 0;
  const server = http.createServer((req, res) => {
    const target = targets[next++ % targets.length];
    const upstream = http.request(
      { host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: endToEnd(req.headers), agent },
      (answer) => {
        res.writeHead(answer.statusCode, endToEnd(answer.headers));
        answer.pipe(res);
      },
    );
    upstream.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`proxy: ${err.message}`);
    });
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1');
  process.on('SIGTERM', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// services

async function pgAdmin() {
  const client = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 3_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query('SHOW server_version');
    return { client, version: rows[0].server_version };
  } catch (err) {
    await client.end().catch(() => {});
    return { error: err.message || err.code || String(err) };
  }
}

async function redisAdmin() {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    await redis.connect();
    const info = await redis.info('server');
    return { redis, version: /redis_version:(\S+)/.exec(info)?.[1] ?? '?' };
  } catch (err) {
    redis.disconnect();
    return { error: err.message || String(err) };
  }
}

async function deleteKeys(redis, prefix) {
  let deleted = 0;
  let cursor = '0';
  do {
    const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = nextCursor;
    if (keys.length) deleted += await redis.del(...keys);
  } while (cursor !== '0');
  return deleted;
}

// ---------------------------------------------------------------------------------------------
// printing

const us = (ms) => `${(ms * 1000).toFixed(0)} µs`.padStart(9);
const msf = (ms) => `${ms.toFixed(2)} ms`.padStart(9);
const rate = (r) => `${r.toFixed(0)}/s`.padStart(8);
const verdict = (ok) => (ok ? 'met' : 'NOT met');
const errorNote = (label, r) => (r.errors ? `    ${label}: ${r.errors} failed calls over the rounds, first: ${r.firstError}\n` : '');

// ---------------------------------------------------------------------------------------------

async function main() {
  // The SDK clients' fetches leave abort listeners until garbage collection: not ours to report.
  process.removeAllListeners('warning');
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpgw-scale-'));
  const stamp = `${process.pid}_${Date.now()}`;
  const dbName = `mcpgw_scale_${stamp}`;
  const prefix = `mcpgw-scale-${stamp}:`;
  const sqlite = path.join(dir, 'gw.db');
  const pgUrl = `${PG_ADMIN_URL.replace(/\/[^/]*$/, '')}/${dbName}`;

  const pgState = await pgAdmin();
  const redisState = await redisAdmin();
  let dbCreated = false;
  const cleanup = async () => {
    await Promise.all([...running].map((p) => p.stop()));
    if (pgState.client) {
      if (dbCreated) {
        await pgState.client
          .query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`)
          .catch((err) => console.error(`could not drop database ${dbName}: ${err.message}`));
        dbCreated = false;
      }
      await pgState.client.end().catch(() => {});
    }
    if (redisState.redis) {
      const n = await deleteKeys(redisState.redis, prefix).catch((err) => console.error(`could not delete Redis keys: ${err.message}`));
      if (n) console.log(`(${n} Redis keys under ${prefix} deleted)`);
      redisState.redis.disconnect();
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = () => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    console.log(
      `bench:scale: ${ROUNDS} rounds (SQLite and PostgreSQL interleaved in each); sequential: ${WARMUP} warm-up + ${SEQUENTIAL} calls;` +
        ` stdio ${IN_FLIGHT} in flight: ${CONCURRENT_WARMUP} + ${CONCURRENT} calls; HTTP agents: ${WARMUP_SECONDS} s + ${SECONDS} s; Node ${process.version}, ${cpus().length} CPUs`,
    );
    const hasPg = !pgState.error;
    const hasRedis = !redisState.error;
    console.log(
      `PostgreSQL: ${hasPg ? `${pgState.version}, database ${dbName} (created for this run)` : `does not answer at ${PG_ADMIN_URL} (${pgState.error}): parts 1, 2 and 4 skipped`}`,
    );
    console.log(
      `Redis: ${hasRedis ? `${redisState.version}, keys under "${prefix}"` : `does not answer at ${REDIS_URL} (${redisState.error}): parts 3 and 4 skipped`}`,
    );
    if (hasPg) {
      await pgState.client.query(`CREATE DATABASE ${dbName}`);
      dbCreated = true;
    }
    const configs = {
      sqlite: writeConfig(dir, 'sqlite', { database: sqlite }),
      pg: writeConfig(dir, 'pg', { database: pgUrl }),
      // PostgreSQL acknowledging commits before their WAL is on disk (a crash of the database server can
      // lose the last fraction of a second; SQLite's synchronous=NORMAL loses commits only to an OS crash).
      pgAsync: writeConfig(dir, 'pg-async', { database: `${pgUrl}?options=-c%20synchronous_commit%3Doff` }),
      sqliteRedis: writeConfig(dir, 'sqlite-redis', { database: sqlite, store: 'redis', prefix }),
      httpSqlite: writeConfig(dir, 'http-sqlite', { database: sqlite, http: true }),
      httpPg: writeConfig(dir, 'http-pg', { database: pgUrl, http: true }),
      replica: writeConfig(dir, 'replica', { database: pgUrl, store: 'redis', prefix, http: true }),
    };

    // -- stdio: parts 1 and 2 (SQLite vs PostgreSQL), 3b (memory vs Redis buckets, on SQLite) --
    const stdio = { sqlite: [], pg: [], pgAsync: [], sqliteRedis: [] };
    const stdioKinds = [
      ['sqlite', true, true],
      ['pg', hasPg, true],
      ['pgAsync', hasPg, true],
      ['sqliteRedis', hasRedis, false],
    ].filter(([, on]) => on);
    if (hasPg || hasRedis)
      for (let round = 1; round <= ROUNDS; round++) {
        for (const [kind, , concurrent] of stdioKinds) {
          const tally = { errors: 0 };
          const client = await stdioGateway(`stdio ${kind}`, configs[kind]);
          try {
            const call = caller(client, tally);
            const seq = await sequential(call);
            const r = { p50: seq.p50, p99: seq.p99 };
            if (concurrent) {
              await inFlight(call, CONCURRENT_WARMUP);
              const lat = [];
              r.rate = await inFlight(call, CONCURRENT, lat);
              const c = percentiles(lat);
              Object.assign(r, { cp50: c.p50, cp99: c.p99 });
            }
            stdio[kind].push({ ...r, ...tally });
          } finally {
            await client.close();
          }
        }
        process.stderr.write(`  stdio round ${round}/${ROUNDS} done\n`);
      }

    // -- HTTP: parts 1 and 2, one gateway per store for all rounds --
    const web = { sqlite: [], pg: [] };
    if (hasPg) {
      const ports = { sqlite: await freePort(), pg: await freePort() };
      const procs = await Promise.all([
        httpGateway('http sqlite', configs.httpSqlite, ports.sqlite),
        httpGateway('http pg', configs.httpPg, ports.pg),
      ]);
      try {
        for (let round = 1; round <= ROUNDS; round++) {
          for (const kind of ['sqlite', 'pg']) {
            const url = `http://127.0.0.1:${ports[kind]}/mcp`;
            const tally = { errors: 0 };
            const seq = await withAgents(url, 1, ([client]) => sequential(caller(client, tally)));
            const many = await withAgents(url, IN_FLIGHT, async (clients) => {
              const calls = clients.map((c) => caller(c, tally));
              await timed(calls, WARMUP_SECONDS);
              return timed(calls, SECONDS);
            });
            web[kind].push({ p50: seq.p50, p99: seq.p99, rate: many.rate, cp50: many.p50, cp99: many.p99, ...tally });
          }
          process.stderr.write(`  HTTP round ${round}/${ROUNDS} done\n`);
        }
      } finally {
        await Promise.all(procs.map((p) => p.stop()));
      }
    }

    // -- part 3a: the bucket check in process --
    const buckets = { memory: [], redis: [] };
    if (hasRedis) {
      const { configSchema } = await import('../dist/config/schema.js');
      const { RateLimiter } = await import('../dist/ratelimit/limiter.js');
      const { RedisRateLimiter } = await import('../dist/ratelimit/redis.js');
      const { silentLogger } = await import('../dist/log.js');
      const config = configSchema.parse({
        rateLimit: { store: 'redis', defaultPerMinute: 60_000_000 },
        redis: { url: REDIS_URL, keyPrefix: prefix },
      });
      const limiters = {
        memory: new RateLimiter(config.rateLimit),
        redis: new RedisRateLimiter(config.rateLimit, config.redis, silentLogger),
      };
      try {
        const time = async (limiter, n, latencies) => {
          for (let i = 0; i < n; i++) {
            const s = performance.now();
            const a = await limiter.admit(IDENTITY, TARGET, null);
            latencies?.push(performance.now() - s);
            if (!a.ok) throw new Error(`bucket check refused: ${JSON.stringify(a)}`);
          }
        };
        for (let round = 1; round <= ROUNDS; round++)
          for (const kind of ['memory', 'redis']) {
            await time(limiters[kind], Math.min(ADMISSIONS, 2_000));
            const lat = [];
            await time(limiters[kind], ADMISSIONS, lat);
            buckets[kind].push(percentiles(lat));
          }
      } finally {
        await limiters.redis.close();
      }
    }

    // -- part 4: 1 vs 3 replicas behind the same round-robin proxy --
    const scale = { one: [], three: [] };
    if (hasPg && hasRedis) {
      const replicaPorts = await Promise.all(Array.from({ length: REPLICAS }, () => freePort()));
      const proxyPorts = { one: await freePort(), three: await freePort() };
      const replicas = await Promise.all(replicaPorts.map((port, i) => httpGateway(`replica ${i + 1}`, configs.replica, port)));
      const proxies = {
        one: start('proxy (1 replica)', [SELF, '--proxy', proxyPorts.one, replicaPorts[0]]),
        three: start('proxy (3 replicas)', [SELF, '--proxy', proxyPorts.three, ...replicaPorts]),
      };
      try {
        await Promise.all(Object.values(proxyPorts).map((port) => waitFor(`http://127.0.0.1:${port}/readyz`)));
        for (let round = 1; round <= ROUNDS; round++) {
          for (const kind of ['one', 'three']) {
            const tally = { errors: 0 };
            const r = await withAgents(`http://127.0.0.1:${proxyPorts[kind]}/mcp`, AGENTS, async (clients) => {
              const calls = clients.map((c) => caller(c, tally));
              await timed(calls, WARMUP_SECONDS);
              return timed(calls, SECONDS);
            });
            scale[kind].push({ ...r, ...tally });
          }
          process.stderr.write(`  replicas round ${round}/${ROUNDS} done\n`);
        }
      } finally {
        await Promise.all([...replicas, ...Object.values(proxies)].map((p) => p.stop()));
      }
    }

    // -- the tables --
    let notes = '';
    if (hasPg) {
      const s = { sqlite: summarize(stdio.sqlite), pg: summarize(stdio.pg) };
      const sa = { sqlite: s.sqlite, pg: summarize(stdio.pgAsync) };
      const h = { sqlite: summarize(web.sqlite), pg: summarize(web.pg) };
      notes += errorNote('stdio SQLite', s.sqlite) + errorNote('stdio PostgreSQL', s.pg);
      notes += errorNote('HTTP SQLite', h.sqlite) + errorNote('HTTP PostgreSQL', h.pg);
      console.log(
        `\n1. Audited call, one replica, one agent with one call in flight (medians of ${ROUNDS} rounds); target: PG p50 ≤ 2× SQLite`,
      );
      console.log(
        `${''.padEnd(34)}${'SQLite p50'.padStart(11)}${'p99'.padStart(10)}${'PG p50'.padStart(11)}${'p99'.padStart(10)}   PG/SQLite p50   target`,
      );
      for (const [label, r] of [
        ['stdio (SDK v1 client)', s],
        ['stdio, PG synchronous_commit=off', sa],
        ['HTTP (2026-07-28 client)', h],
      ]) {
        const ratio = r.pg.p50 / r.sqlite.p50;
        console.log(
          `${label.padEnd(34)}${us(r.sqlite.p50).padStart(11)}${us(r.sqlite.p99).padStart(10)}${us(r.pg.p50).padStart(11)}${us(r.pg.p99).padStart(10)}   ${`${ratio.toFixed(2)}×`.padStart(13)}   ${verdict(ratio <= 2)}`,
        );
      }
      console.log(
        `\n2. ${IN_FLIGHT} calls in flight through one gateway (medians; calls/s range over the rounds); target: PG ≥ 0.7× SQLite calls/s`,
      );
      console.log(
        `${''.padEnd(34)}${'SQLite'.padStart(9)}${'(range)'.padStart(14)}${'p50'.padStart(11)}${'p99'.padStart(11)}${'PG'.padStart(10)}${'(range)'.padStart(14)}${'p50'.padStart(11)}${'p99'.padStart(11)}   PG/SQLite   target`,
      );
      for (const [label, r] of [
        [`stdio (1 client, ${IN_FLIGHT} outstanding)`, s],
        ['stdio, PG synchronous_commit=off', sa],
        [`HTTP (${IN_FLIGHT} agents)`, h],
      ]) {
        const ratio = r.pg.rate / r.sqlite.rate;
        const range = (x) => `(${x.lo.toFixed(0)}–${x.hi.toFixed(0)})`.padStart(14);
        console.log(
          `${label.padEnd(34)}${rate(r.sqlite.rate).padStart(9)}${range(r.sqlite)}${msf(r.sqlite.cp50).padStart(11)}${msf(r.sqlite.cp99).padStart(11)}` +
            `${rate(r.pg.rate).padStart(10)}${range(r.pg)}${msf(r.pg.cp50).padStart(11)}${msf(r.pg.cp99).padStart(11)}   ${`${ratio.toFixed(2)}×`.padStart(9)}   ${verdict(ratio >= 0.7)}`,
        );
      }
    }
    if (hasRedis) {
      const mem = summarize(buckets.memory);
      const red = summarize(buckets.redis);
      const e2eMem = summarize(stdio.sqlite);
      const e2eRed = summarize(stdio.sqliteRedis);
      notes += errorNote('stdio SQLite, Redis buckets', e2eRed);
      console.log(`\n3. Redis bucket check vs memory (medians of ${ROUNDS} rounds); target: adds ≤ 150 µs at p50`);
      console.log(
        `${''.padEnd(58)}${'memory p50'.padStart(11)}${'p99'.padStart(10)}${'Redis p50'.padStart(11)}${'p99'.padStart(10)}   added p50   target`,
      );
      const line = (label, a, b, digits) => {
        const f = (ms) => `${(ms * 1000).toFixed(digits)} µs`;
        const added = (b.p50 - a.p50) * 1000;
        console.log(
          `${label.padEnd(58)}${f(a.p50).padStart(11)}${f(a.p99).padStart(10)}${f(b.p50).padStart(11)}${f(b.p99).padStart(10)}   ${`${added >= 0 ? '+' : ''}${added.toFixed(0)} µs`.padStart(9)}   ${verdict(added <= 150)}`,
        );
      };
      line(`(a) in process, ${ADMISSIONS} sequential admissions`, mem, red, 1);
      line('(b) end to end, stdio, sequential audited calls, SQLite', e2eMem, e2eRed, 0);
    }
    if (hasPg && hasRedis) {
      const one = summarize(scale.one);
      const three = summarize(scale.three);
      notes += errorNote('1 replica', one) + errorNote(`${REPLICAS} replicas`, three);
      console.log(
        `\n4. ${AGENTS} agents (2026-07-28, a key each) over HTTP, PostgreSQL + Redis buckets, each set of replicas behind the same round-robin proxy (medians of ${ROUNDS} rounds)`,
      );
      console.log(`${''.padEnd(34)}${'calls/s'.padStart(9)}${'(range)'.padStart(14)}${'p50'.padStart(11)}${'p99'.padStart(11)}`);
      for (const [label, r] of [
        ['1 replica (baseline)', one],
        [`${REPLICAS} replicas`, three],
      ])
        console.log(
          `${label.padEnd(34)}${rate(r.rate).padStart(9)}${`(${r.lo.toFixed(0)}–${r.hi.toFixed(0)})`.padStart(14)}${msf(r.p50).padStart(11)}${msf(r.p99).padStart(11)}`,
        );
      console.log(
        `${REPLICAS} replicas / 1: throughput ${(three.rate / one.rate).toFixed(2)}×, p50 ${(three.p50 / one.p50).toFixed(2)}×, p99 ${(three.p99 / one.p99).toFixed(2)}×`,
      );
      console.log(
        `why not more: on ${cpus().length} CPUs the ${REPLICAS} replicas, their echo children, the proxy, PostgreSQL, Redis and the ${AGENTS} agents all share the same cores, so extra replicas add processes, not CPU; expect ≤ 1× here, and a gain only where each replica has cores of its own.`,
      );
    }
    if (notes) console.log(`\nfailed calls:\n${notes.trimEnd()}`);
  } finally {
    // Also when the run failed: what a gateway said before it went away.
    const said = [...stderrSeen].filter(([, text]) => text.trim());
    if (said.length) {
      console.log('\nwhat the gateways wrote on stderr (warnings and errors; last 4000 characters each):');
      for (const [label, text] of said) console.log(`  [${label}]\n${text.trimEnd().replace(/^/gm, '    ')}`);
    }
    await cleanup();
  }
}

if (process.argv[2] === '--proxy') runProxy(Number(process.argv[3]), process.argv.slice(4).map(Number));
else
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
