#!/usr/bin/env node
// npm run bench:audit: `audit verify` and `audit export` of a large log (AUDIT_ROWS, default
// 1,000,000 rows, HMAC chain), each run as the real CLI in its own process, with wall time and
// peak RSS (read from /proc while it runs). The rows are written through the real AuditStore.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDatabase } from '../dist/store/db.js';
import { AuditStore } from '../dist/audit/store.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = path.join(ROOT, 'bin/mcp-gateway.js');
const ROWS = Number(process.env.AUDIT_ROWS ?? 1_000_000);
const KEY = 'bench-audit-key-0123456789';

function generate(dir) {
  const db = openDatabase(path.join(dir, 'gateway.db'));
  const store = new AuditStore(db, { hashChain: true, hmacKey: Buffer.from(KEY) });
  store.checkMode();
  const base = Date.now() - ROWS * 100;
  const statuses = ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'error', 'denied', 'rate_limited', 'timeout'];
  for (let i = 0; i < ROWS; i += 10_000) {
    const drafts = [];
    for (let j = i; j < Math.min(ROWS, i + 10_000); j++) {
      drafts.push({
        ts: new Date(base + j * 100).toISOString(),
        consumer_id: `user${j % 17}`,
        key_id: `key${j % 17}`,
        auth_method: 'api-key',
        roles: '["reader"]',
        server: ['github', 'stripe', 'files'][j % 3],
        kind: 'tool',
        name: `tool_${j % 11}`,
        arguments: JSON.stringify({ query: `search term number ${j}`, limit: 10, owner: 'acme' }),
        result: JSON.stringify({ content: [{ type: 'text', text: `result of call ${j}: ${'x'.repeat(120)}` }] }),
        status: statuses[j % 10],
        error: statuses[j % 10] === 'ok' ? null : 'something failed',
        latency_ms: (j * 7919) % 500,
        decided_by: 'reader#0',
      });
    }
    db.transaction(() => store.appendInTransaction(drafts)).immediate();
  }
  db.close();
  writeFileSync(path.join(dir, 'gateway.yaml'), 'database: ./gateway.db\naudit:\n  hmacKeyEnv: AUDIT_KEY\n');
}

/** Runs the CLI; returns exit code, wall seconds and the peak RSS seen in /proc. */
function run(args) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, AUDIT_KEY: KEY }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    let peak = 0;
    const timer = setInterval(() => {
      try {
        peak = Math.max(peak, Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) / 1024);
      } catch {
        // it has exited
      }
    }, 20);
    child.on('exit', (code) => {
      clearInterval(timer);
      if (code !== 0) process.stderr.write(stderr);
      resolve({ code, seconds: (performance.now() - t0) / 1000, peakMb: peak });
    });
  });
}

const dir = mkdtempSync(path.join(tmpdir(), 'mcpgw-audit-bench-'));
try {
  const g0 = performance.now();
  generate(dir);
  const config = path.join(dir, 'gateway.yaml');
  const mb = (statSync(path.join(dir, 'gateway.db')).size / 1e6).toFixed(0);
  console.log(`${ROWS} audit rows (HMAC-SHA256 chain, ${mb} MB) written in ${((performance.now() - g0) / 1000).toFixed(1)} s`);
  for (const [label, args] of [
    ['audit verify', ['audit', 'verify', '--config', config]],
    ['audit export --format jsonl', ['audit', 'export', '--format', 'jsonl', '--out', path.join(dir, 'a.jsonl'), '--config', config]],
    ['audit export --format csv', ['audit', 'export', '--format', 'csv', '--out', path.join(dir, 'a.csv'), '--config', config]],
  ]) {
    const r = await run(args);
    console.log(`  ${label.padEnd(30)} exit ${r.code}  ${r.seconds.toFixed(1).padStart(5)} s  peak RSS ${r.peakMb.toFixed(0)} MB`);
    if (r.code !== 0) process.exitCode = 1;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
