#!/usr/bin/env node
// npm run bench: the same echo tool called directly over stdio, through a bare SDK relay
// (bench/relay.js) and through the gateway, from one process in one run (sequential and 32 in
// flight), by a 2025 agent and by a 2026-07-28 agent; how soon the gateway answers an agent's
// first message while its children are slow to start; and the in-process cost of each layer.
// BENCH_BASELINE=<another checkout> adds that build's gateway, measured in the same rounds.
// Figures are printed, never asserted.
import { Client as ClientV2 } from '@modelcontextprotocol/client';
import { StdioClientTransport as StdioClientTransportV2 } from '@modelcontextprotocol/client/stdio';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { pipelineCosts } from './pipeline-costs.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ECHO = path.join(ROOT, 'test/fixtures/echo.js');
const BIN = path.join(ROOT, 'bin/mcp-gateway.js');
const BASELINE = process.env.BENCH_BASELINE ? path.resolve(process.env.BENCH_BASELINE) : null;
const BASELINE_BIN = BASELINE && path.join(BASELINE, 'bin/mcp-gateway.js');
const RELAY = path.join(ROOT, 'bench/relay.js');
const RELAY_V2 = path.join(ROOT, 'bench/relay-v2.js');
const KEY = 'gw_benchkey_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';

const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 3000);
const CONCURRENT = Number(process.env.BENCH_CONCURRENT ?? 20000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const IN_FLIGHT = 32;
// JIT warm-up, sequential and concurrent: a gateway's per-call cost keeps falling for the first
// ~3000 sequential and ~10000 concurrent calls; a long-running gateway lives in the steady state.
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3000);
const WARMUP_CONCURRENT = Number(process.env.BENCH_WARMUP_CONCURRENT ?? 10000);

function gatewayConfig(dir, { audit }) {
  return {
    database: path.join(dir, 'bench.db'),
    auth: { apiKeys: { static: [{ id: 'benchkey', consumerId: 'bench', roles: ['bench'], key: '${BENCH_KEY}' }] } },
    servers: [{ id: 'echo', command: process.execPath, args: [ECHO] }],
    policies: [{ id: 'bench', roles: ['bench'], rules: [{ server: 'echo', tool: 'echo', action: 'allow' }] }],
    // A limit that never refuses here, so the buckets are exercised but do not shape the figures.
    rateLimit: { enabled: true, defaultPerMinute: 60_000_000 },
    audit: { enabled: audit },
    metering: { enabled: audit },
  };
}

/** CPU time (user + system, ms) a process has used so far; null where /proc is not available. */
function cpuMs(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks at USER_HZ 100
  } catch {
    return null;
  }
}

/**
 * The SDK's v2 stdio transport; as a subclass it probes the era on the connection itself (its
 * base class would run the probe on a second, disposable process).
 */
class InPlaceStdioTransport extends StdioClientTransportV2 {}

/**
 * An agent over stdio: `v1` is the 2025-era client of SDK v1 (what every figure before the SDK v2
 * move was measured with), `legacy` and `modern` the v2 client speaking 2025 or pinned to 2026-07-28.
 */
async function connect(command, args, env, agent = 'v1') {
  const options = { command, args, env: { PATH: process.env.PATH, ...env }, stderr: process.env.BENCH_STDERR ? 'inherit' : 'pipe' };
  const transport = agent === 'v1' ? new StdioClientTransport(options) : new InPlaceStdioTransport(options);
  transport.stderr?.resume();
  const info = { name: 'bench', version: '1.0.0' };
  const client =
    agent === 'v1'
      ? new Client(info)
      : new ClientV2(info, agent === 'modern' ? { versionNegotiation: { mode: { pin: '2026-07-28' } } } : {});
  await client.connect(transport);
  client.pid = transport.pid;
  return client;
}

async function measure(client, name) {
  const call = () => client.callTool({ name, arguments: { message: 'hello' } });
  for (let i = 0; i < WARMUP; i++) await call();
  const lat = new Float64Array(SEQUENTIAL);
  const cpu0 = cpuMs(client.pid);
  const t0 = performance.now();
  for (let i = 0; i < SEQUENTIAL; i++) {
    const s = performance.now();
    const r = await call();
    lat[i] = performance.now() - s;
    if (r.isError) throw new Error(`call failed: ${JSON.stringify(r)}`);
  }
  const seqMs = performance.now() - t0;
  const cpu1 = cpuMs(client.pid);
  lat.sort();
  const pct = (p) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))];

  const concurrent = async (total, latencies) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < total) {
          next++;
          const s = performance.now();
          const r = await call();
          latencies?.push(performance.now() - s);
          if (r.isError) throw new Error(`call failed: ${JSON.stringify(r)}`);
        }
      }),
    );
  };
  await concurrent(WARMUP_CONCURRENT);
  const clat = [];
  const cpu2 = cpuMs(client.pid);
  const c0 = performance.now();
  await concurrent(CONCURRENT, clat);
  const conMs = performance.now() - c0;
  const cpu3 = cpuMs(client.pid);
  clat.sort((a, b) => a - b);
  const cpct = (p) => clat[Math.min(clat.length - 1, Math.floor(clat.length * p))];
  return {
    seqPerCallUs: (seqMs / SEQUENTIAL) * 1000,
    seqRate: SEQUENTIAL / (seqMs / 1000),
    p50: pct(0.5),
    p99: pct(0.99),
    conRate: CONCURRENT / (conMs / 1000),
    cp50: cpct(0.5),
    cp99: cpct(0.99),
    // CPU of the process the client talks to (the echo child, or the gateway), per call.
    seqCpuUs: cpu0 === null ? NaN : ((cpu1 - cpu0) / SEQUENTIAL) * 1000,
    conCpuUs: cpu0 === null ? NaN : ((cpu3 - cpu2) / CONCURRENT) * 1000,
  };
}

const fmt = (n, d = 0) => n.toFixed(d).padStart(9);
function row(label, r) {
  return `${label.padEnd(46)}${fmt(r.seqRate)}${fmt(r.p50 * 1000)}${fmt(r.p99 * 1000)}  |${fmt(r.conRate)}${fmt(r.cp50 * 1000)}${fmt(r.cp99 * 1000)}`;
}

const median = (values) => {
  const v = [...values].sort((a, b) => a - b);
  return v[v.length >> 1];
};

/** The median of each figure over the rounds. */
function summarize(runs) {
  const out = {};
  for (const key of Object.keys(runs[0])) out[key] = median(runs.map((r) => r[key]));
  return out;
}

async function runGateway(dir, audit, { agent = 'v1', bin = BIN } = {}) {
  const sub = path.join(dir, audit ? 'audited' : 'plain');
  rmSync(sub, { recursive: true, force: true });
  mkdirSync(sub);
  const file = path.join(sub, 'gateway.yaml');
  writeFileSync(file, stringify(gatewayConfig(sub, { audit })));
  const client = await connect(
    process.execPath,
    [bin, 'serve', '--config', file],
    { BENCH_KEY: KEY, MCP_GATEWAY_API_KEY: KEY, MCP_GATEWAY_LOG_LEVEL: 'warn' },
    agent,
  );
  try {
    return await measure(client, 'echo__echo');
  } finally {
    await client.close();
  }
}

const SLOW_START_S = 5;
const FIRST_ANSWER_RUNS = 5;

/**
 * How soon `serve` answers an agent's first message (2025: initialize; 2026-07-28: server/discover),
 * from the spawn of the process, while its three children need SLOW_START_S seconds to start.
 */
async function firstAnswers(dir) {
  const slow = (id) => ({ id, command: '/bin/sh', args: ['-c', `sleep ${SLOW_START_S}; exec "${process.execPath}" "${ECHO}"`] });
  // A database of each build's own (an older build refuses a newer schema).
  const configFile = (name) => {
    const sub = path.join(dir, name);
    mkdirSync(sub, { recursive: true });
    const file = path.join(sub, 'gateway.yaml');
    writeFileSync(file, stringify({ ...gatewayConfig(sub, { audit: true }), servers: ['a', 'b', 'c'].map(slow) }));
    return file;
  };
  const env = { BENCH_KEY: KEY, MCP_GATEWAY_API_KEY: KEY, MCP_GATEWAY_LOG_LEVEL: 'warn' };
  const agents = [
    ['2025 agent (v1 client), initialize', 'v1', BIN, configFile('slow')],
    ['2025 agent (v2 client), initialize', 'legacy', BIN, configFile('slow')],
    ['2026-07-28 agent, server/discover', 'modern', BIN, configFile('slow')],
    ...(BASELINE ? [['baseline build, 2025 agent (v1 client), initialize', 'v1', BASELINE_BIN, configFile('slow-baseline')]] : []),
  ];
  const times = new Map([['node alone (spawn to exit of an empty script)', []], ...agents.map(([label]) => [label, []])]);
  for (let run = 0; run < FIRST_ANSWER_RUNS; run++) {
    const t0 = performance.now();
    await new Promise((resolve, reject) => spawn(process.execPath, ['-e', '']).on('exit', resolve).on('error', reject));
    times.get('node alone (spawn to exit of an empty script)').push(performance.now() - t0);
    for (const [label, agent, bin, file] of agents) {
      const t0 = performance.now();
      const client = await connect(process.execPath, [bin, 'serve', '--config', file], env, agent);
      times.get(label).push(performance.now() - t0);
      await client.close();
    }
  }
  console.log(
    `\nFirst answer, from spawning \`serve\` (node start included), with 3 children that need ${SLOW_START_S} s to start` +
      ` (median of ${FIRST_ANSWER_RUNS}, range):`,
  );
  for (const [label, values] of times) {
    const v = [...values].sort((a, b) => a - b);
    console.log(`  ${label.padEnd(52)} ${median(v).toFixed(0).padStart(5)} ms (${v[0].toFixed(0)}–${v[v.length - 1].toFixed(0)})`);
  }
}

async function main() {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcpgw-bench-'));
  try {
    console.log(
      `mcp-gateway bench: echo tool; per round ${WARMUP} + ${WARMUP_CONCURRENT} warm-up calls, then ${SEQUENTIAL} sequential and ${CONCURRENT} at ${IN_FLIGHT} in flight;` +
        ` ${ROUNDS} rounds interleaved, medians shown (node ${process.version})\n`,
    );
    const runs = { direct: [], relay: [], relayV2: [], relayV2Modern: [], plain: [], audited: [], legacy: [], modern: [] };
    if (BASELINE) Object.assign(runs, { basePlain: [], baseAudited: [] });
    for (let round = 0; round < ROUNDS; round++) {
      const direct = await connect(process.execPath, [ECHO], {});
      runs.direct.push(await measure(direct, 'echo'));
      await direct.close();
      // The floor for any relay built on the SDK: its Server and Client alone, nothing of the gateway.
      const relay = await connect(process.execPath, [RELAY, process.execPath, ECHO], {});
      runs.relay.push(await measure(relay, 'echo__echo'));
      await relay.close();
      const relayV2 = await connect(process.execPath, [RELAY_V2, process.execPath, ECHO], {}, 'legacy');
      runs.relayV2.push(await measure(relayV2, 'echo__echo'));
      await relayV2.close();
      const relayV2Modern = await connect(process.execPath, [RELAY_V2, process.execPath, ECHO], {}, 'modern');
      runs.relayV2Modern.push(await measure(relayV2Modern, 'echo__echo'));
      await relayV2Modern.close();
      runs.plain.push(await runGateway(dir, false));
      runs.audited.push(await runGateway(dir, true));
      runs.legacy.push(await runGateway(dir, true, { agent: 'legacy' }));
      runs.modern.push(await runGateway(dir, true, { agent: 'modern' }));
      if (BASELINE) {
        runs.basePlain.push(await runGateway(dir, false, { bin: BASELINE_BIN }));
        runs.baseAudited.push(await runGateway(dir, true, { bin: BASELINE_BIN }));
      }
      process.stderr.write(`  round ${round + 1}/${ROUNDS} done\n`);
    }
    const results = Object.fromEntries(Object.entries(runs).map(([key, r]) => [key, summarize(r)]));

    console.log(`${''.padEnd(46)}   calls/s   p50 µs   p99 µs  |   calls/s   p50 µs   p99 µs`);
    console.log(`${''.padEnd(46)}${'sequential'.padStart(27)}  |${`${IN_FLIGHT} in flight`.padStart(27)}`);
    const labels = {
      direct: 'direct (SDK client → echo)',
      relay: 'bare SDK v1 relay (Server + Client)',
      relayV2: 'bare SDK v2 relay, v2 client, 2025',
      relayV2Modern: 'bare SDK v2 relay, v2 client, 2026-07-28',
      plain: 'gateway, audit + metering off',
      audited: 'gateway, full pipeline',
      legacy: 'gateway, full pipeline, v2 client, 2025',
      modern: 'gateway, full pipeline, v2 client, 2026-07-28',
      basePlain: 'baseline build, audit + metering off',
      baseAudited: 'baseline build, full pipeline',
    };
    for (const key of Object.keys(runs)) console.log(row(labels[key], results[key]));
    console.log('');
    if (BASELINE) console.log(`baseline build: ${BASELINE}\n`);
    // Each round's gateway figures are set against that round's reference (measured minutes apart
    // at most), and the median of those ratios is shown with their range: a shared machine's speed
    // drifts between rounds more than the gateway's cost does.
    const spread = (values, digits, suffix = '') => {
      const v = [...values].sort((a, b) => a - b);
      return `${median(v).toFixed(digits)}${suffix} (rounds ${v[0].toFixed(digits)}–${v[v.length - 1].toFixed(digits)})`;
    };
    const compare = (label, key, ref, refLabel) => {
      const seq = runs[key].map((r, i) => r.seqPerCallUs / runs[ref][i].seqPerCallUs);
      const con = runs[key].map((r, i) => (r.conRate / runs[ref][i].conRate) * 100);
      console.log(`${label} / ${refLabel}: sequential time ×${spread(seq, 2)}, concurrent throughput ${spread(con, 0, '%')}`);
    };
    compare('bare SDK v1 relay', 'relay', 'direct', 'direct');
    compare('bare SDK v2 relay (v2 client)', 'relayV2', 'direct', 'direct');
    compare('gateway (audit + metering off)', 'plain', 'direct', 'direct');
    compare('gateway (full pipeline)', 'audited', 'direct', 'direct');
    compare('2026-07-28 agent', 'modern', 'legacy', '2025 agent (same v2 client, full pipeline)');
    compare('2026-07-28 agent, bare SDK v2 relay', 'relayV2Modern', 'relayV2', '2025 agent (same v2 client) on it');
    if (BASELINE) {
      compare('this build (audit + metering off)', 'plain', 'basePlain', 'baseline build');
      compare('this build (full pipeline)', 'audited', 'baseAudited', 'baseline build');
    }
    if (!Number.isNaN(results.direct.seqCpuUs)) {
      console.log(
        `CPU per call of the process the client talks to, sequential / ${IN_FLIGHT} in flight:` +
          ` echo child ${results.direct.seqCpuUs.toFixed(0)} / ${results.direct.conCpuUs.toFixed(0)} µs,` +
          ` bare relay v1 ${results.relay.seqCpuUs.toFixed(0)} / ${results.relay.conCpuUs.toFixed(0)} µs,` +
          ` v2 ${results.relayV2.seqCpuUs.toFixed(0)} / ${results.relayV2.conCpuUs.toFixed(0)} µs` +
          ` (v2 client, 2025; 2026-07-28 ${results.relayV2Modern.seqCpuUs.toFixed(0)} / ${results.relayV2Modern.conCpuUs.toFixed(0)} µs),` +
          ` gateway ${results.plain.seqCpuUs.toFixed(0)} / ${results.plain.conCpuUs.toFixed(0)} µs,` +
          ` with audit ${results.audited.seqCpuUs.toFixed(0)} / ${results.audited.conCpuUs.toFixed(0)} µs` +
          ` (v2 client: 2025 agent ${results.legacy.seqCpuUs.toFixed(0)} / ${results.legacy.conCpuUs.toFixed(0)} µs,` +
          ` 2026-07-28 agent ${results.modern.seqCpuUs.toFixed(0)} / ${results.modern.conCpuUs.toFixed(0)} µs)`,
      );
    }
    console.log(
      `audited over un-audited, end to end: +${((results.audited.p50 - results.plain.p50) * 1000).toFixed(0)} µs at p50 (sequential)`,
    );

    await firstAnswers(dir);

    console.log('\nIn-process cost of the pipeline per call (no stdio; the forward step answers at once):');
    const costs = await pipelineCosts(path.join(dir, 'costs'));
    for (const c of costs)
      console.log(`  ${c.label.padEnd(52)} p50 ${c.p50.toFixed(1).padStart(6)} µs   mean ${c.mean.toFixed(1).padStart(6)} µs`);
    const [base, auth, full] = costs;
    console.log(`  identity + policy + buckets over the bare forward: +${(auth.p50 - base.p50).toFixed(1)} µs at p50`);
    console.log(`  audit + metering over the un-audited path:        +${(full.p50 - auth.p50).toFixed(1)} µs at p50`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
