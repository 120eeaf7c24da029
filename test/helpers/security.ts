/**
 * Helpers of the security end-to-end tests (test/e2e/security-*.test.ts): the gateways a file
 * started, the CLI as a user runs it, the audit rows as stored, the processes carrying
 * a token in their argv, and "answers within" races.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Client } from '@modelcontextprotocol/client';
import { BIN, anyResult, startGateway, type Obj, type RunningGateway, type StartOptions } from './gateway.js';

/** Gateways a test file started; `closeAll` in afterEach/afterAll. */
export class Gateways {
  private readonly list: RunningGateway[] = [];

  async start(options: StartOptions): Promise<RunningGateway> {
    const gw = await startGateway(options);
    this.list.push(gw);
    return gw;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.list.splice(0).map((gw) => gw.close().catch(() => {})));
  }
}

export interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI with only this environment (plus PATH and HOME), stdin given `stdin` (or nothing) and closed. */
export function cli(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string>; umask?: string; timeoutMs?: number; stdin?: string } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const argv = [BIN, ...args];
    const proc =
      options.umask === undefined
        ? spawn(process.execPath, argv, {
            cwd: options.cwd,
            env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/', ...options.env },
            stdio: ['pipe', 'pipe', 'pipe'],
          })
        : spawn('/bin/sh', ['-c', `umask ${options.umask} && exec "$0" "$@"`, process.execPath, ...argv], {
            cwd: options.cwd,
            env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/', ...options.env },
            stdio: ['pipe', 'pipe', 'pipe'],
          });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    proc.stdin.on('error', () => {});
    proc.stdin.end(options.stdin ?? '');
    const timer = setTimeout(() => proc.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A JSON-RPC error a request was refused with (fails the test when the request succeeded). */
export async function rpcError(promise: Promise<unknown>): Promise<{ code: number; message: string; data?: Obj }> {
  const outcome = await promise.then(
    (value) => ({ ok: true as const, value }),
    (err: unknown) => ({ ok: false as const, err }),
  );
  if (outcome.ok) throw new Error(`expected a JSON-RPC error, got the result ${JSON.stringify(outcome.value).slice(0, 500)}`);
  return outcome.err as { code: number; message: string; data?: Obj };
}

/** A raw request whose result comes back exactly as the gateway sent it. */
export function request(client: Client, method: string, params: Obj, timeout = 60_000): Promise<Obj> {
  return client.request({ method, params } as never, anyResult, { timeout }) as Promise<Obj>;
}

/** Every audit row, oldest first, with every column (read straight from the database file). */
export function auditRows(dir: string): Obj[] {
  const db = new Database(path.join(dir, 'gateway.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT * FROM audit_log ORDER BY seq').all() as Obj[];
  } finally {
    db.close();
  }
}

/** `server_status` (the gateway tool) of every server, or of one. */
export async function serverStatus(client: Client, server?: string): Promise<{ servers: Obj[]; uriConflicts: Obj[] }> {
  const result = (await client.request(
    { method: 'tools/call', params: { name: 'server_status', arguments: server === undefined ? {} : { server } } } as never,
    anyResult,
    { timeout: 60_000 },
  )) as Obj;
  if (result['isError'] === true) throw new Error(`server_status refused: ${JSON.stringify(result)}`);
  return result['structuredContent'] as { servers: Obj[]; uriConflicts: Obj[] };
}

/** The status of one server (by id). */
export async function statusOf(client: Client, server: string): Promise<Obj> {
  const found = (await serverStatus(client)).servers.find((s) => s['id'] === server);
  if (!found) throw new Error(`server_status lists no server "${server}"`);
  return found;
}

/** Pids of the live processes (not zombies) whose command line contains `token`. */
export function processesWithToken(token: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (!cmdline.includes(token)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue;
      pids.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** SIGKILL to every process carrying `token` (cleanup after a test that left some behind). */
export function killProcessesWithToken(token: string): void {
  for (const pid of processesWithToken(token)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}

/** Resident memory of a process, in bytes (VmRSS of /proc/<pid>/status), or null when it is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Resolves with the promise's outcome, or rejects naming `what` when it takes longer than `ms`. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The gateway's error code of a refusal: a tool result's `_meta`, or a JSON-RPC error's `data`. */
export function refusalCode(outcome: unknown): string | undefined {
  const o = outcome as { _meta?: Record<string, { code?: string }>; data?: { code?: string } } | undefined;
  return o?._meta?.['mcp-gateway/error']?.code ?? o?.data?.code;
}

/** A random token for one test (argv markers, secrets). */
export function token(prefix: string, length = 24): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let out = prefix;
  for (let i = 0; i < length; i++) out += alphabet[Math.floor(Math.random() * alphabet.length)];
  return out;
}
