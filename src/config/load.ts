/**
 * Finds, reads, interpolates, validates and freezes gateway.yaml (design §2). Parsed once at boot;
 * nothing re-reads or mutates it afterwards. Every failure is a `ConfigError` naming the file and
 * the path inside it; the CLI turns it into exit code 2.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type GatewayConfig } from './schema.js';
import { formatPath, interpolate, UnsetVariableError } from './interpolate.js';
import { PolicyEngine } from '../policy/engine.js';

export class ConfigError extends Error {
  readonly exitCode = 2;
  constructor(
    readonly file: string,
    readonly where: string | undefined,
    readonly reason: string,
  ) {
    super(where ? `${file}: ${where}: ${reason}` : `${file}: ${reason}`);
    this.name = 'ConfigError';
  }
}

export interface LoadedConfig {
  /** Absolute path of the file read. */
  readonly file: string;
  /** Folder relative paths resolve against. */
  readonly dir: string;
  readonly config: GatewayConfig;
}

/** `--config`, else `MCP_GATEWAY_CONFIG`, else `./gateway.yaml` (design §2). */
export function findConfigFile(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  // An empty MCP_GATEWAY_CONFIG (`MCP_GATEWAY_CONFIG= mcp-gateway serve`) counts as unset.
  return path.resolve(cwd, explicit ?? (env['MCP_GATEWAY_CONFIG'] || undefined) ?? 'gateway.yaml');
}

export interface LoadOptions {
  /**
   * For commands that start no server (audit, usage, keys, listings): a `${VAR}` under `servers`
   * that is unset reads as empty, so an auditor needs the database and audit key, not every
   * server's secrets. `serve` and `check` load strictly.
   */
  readonly withoutServerSecrets?: boolean;
}

export function loadConfig(
  explicit?: string,
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
  options: LoadOptions = {},
): LoadedConfig {
  const file = findConfigFile(explicit, env, cwd);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'no such file (create one with `mcp-gateway init`, or pass --config)'
        : code === 'EISDIR'
          ? 'is a directory, not a YAML file'
          : `cannot be read (${code ?? (err as Error).message})`;
    throw new ConfigError(file, undefined, reason);
  }
  return parseConfig(text, file, env, options);
}

/** Parses config text as if read from `file` (used by `check`, tests and the fuzzers). */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env, options: LoadOptions = {}): LoadedConfig {
  const dir = path.dirname(file);
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const pos = first.linePos?.[0];
    const where = pos ? `line ${pos.line}, column ${pos.col}` : undefined;
    throw new ConfigError(file, where, `invalid YAML: ${first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`);
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(file, undefined, `invalid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(file, undefined, 'must be a YAML mapping (key: value) at the top level');
  }

  let interpolated: unknown;
  try {
    interpolated = interpolate(raw, env, [], undefined, options.withoutServerSecrets ? (p) => p[0] === 'servers' : undefined);
  } catch (err) {
    if (err instanceof UnsetVariableError) throw new ConfigError(file, formatPath(err.path), err.message);
    throw err;
  }

  const parsed = configSchema.safeParse(interpolated);
  if (!parsed.success) throw new ConfigError(file, ...describeIssue(parsed.error));
  const config = deepFreeze(resolvePaths(parsed.data, dir));
  // Compiling the policies is the last check: whatever the engine cannot compile (an unknown
  // template, a pattern it rejects) is a config error here, with its path, not a failed start.
  try {
    new PolicyEngine(config.policies);
  } catch (err) {
    const message = (err as Error).message;
    const at = message.indexOf(': ');
    throw new ConfigError(file, at > 0 ? message.slice(0, at) : 'policies', at > 0 ? message.slice(at + 2) : message);
  }
  return { file, dir, config };
}

function describeIssue(error: z.ZodError): [string, string] {
  const issue = error.issues[0]!;
  let reason = issue.message;
  if (issue.code === 'invalid_type' && /received undefined/.test(reason)) reason = 'required';
  else if (issue.code === 'invalid_key') reason = issue.issues[0]?.message ?? reason;
  else if (issue.code === 'unrecognized_keys')
    reason = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more problem${error.issues.length > 2 ? 's' : ''})` : '';
  return [formatPath(issue.path), reason + more];
}

function resolvePaths(config: GatewayConfig, dir: string): GatewayConfig {
  const resolve = (p: string) => path.resolve(dir, p);
  const jwt = config.auth.jwt;
  return {
    ...config,
    database: config.database === ':memory:' ? config.database : resolve(config.database),
    servers: config.servers.map((s) => ({ ...s, cwd: resolve(s.cwd ?? '.') })),
    auth: {
      ...config.auth,
      jwt: jwt?.publicKey !== undefined && !jwt.publicKey.includes('-----BEGIN') ? { ...jwt, publicKey: resolve(jwt.publicKey) } : jwt,
    },
  };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
