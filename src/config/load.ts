/**
 * Finds, reads, interpolates, validates and freezes gateway.yaml (design §2). Parsed once at boot;
 * nothing re-reads or mutates it afterwards. Every failure is a `ConfigError` naming the file and
 * the path inside it; the CLI turns it into exit code 2.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isPostgresUrl } from '../store/pg.js';
import { parseDocument } from 'yaml';
import { configSchema, type GatewayConfig } from './schema.js';
import { formatPath, interpolateString, InvalidReferenceError, UnsetVariableError, type TolerateUnset } from './interpolate.js';
import {
  configErrorMap,
  inFileOrder,
  schemaProblems,
  yamlProblems,
  yamlValueProblem,
  type ConfigProblem,
  type LocatedProblem,
} from './problems.js';
import { PolicyEngine } from '../policy/engine.js';

export type { ConfigProblem } from './problems.js';

/** How many problems a ConfigError's message lists; `problems` holds them all. */
export const MAX_LISTED_PROBLEMS = 20;

/**
 * A config that cannot be used. `problems` holds every problem found, in the order of the file;
 * `where` and `reason` are the first one's. The message names the file on its first line: with
 * one problem it is that one line (`<file>: <where>: <reason>`); with several, `<file>: N problems`
 * and then one line per problem, `  <path>: <reason>`, the first MAX_LISTED_PROBLEMS of them and
 * a count of the rest.
 */
export class ConfigError extends Error {
  readonly exitCode = 2;
  readonly where: string | undefined;
  readonly reason: string;
  /** Every problem found (at least one). */
  readonly problems: readonly ConfigProblem[];

  /** One problem, of kind `invalid` (found after parsing, e.g. a public key that cannot be read). */
  constructor(file: string, where: string | undefined, reason: string);
  /** Every problem found, in order. */
  constructor(file: string, problems: readonly ConfigProblem[]);
  constructor(
    readonly file: string,
    at: string | undefined | readonly ConfigProblem[],
    reason = '',
  ) {
    const given: readonly ConfigProblem[] = typeof at === 'object' ? at : [{ path: at, message: reason, kind: 'invalid' }];
    const problems: readonly ConfigProblem[] = given.length > 0 ? given : [{ path: undefined, message: 'is not valid', kind: 'invalid' }];
    super(listProblems(file, problems));
    this.name = 'ConfigError';
    this.problems = problems;
    this.where = problems[0]!.path;
    this.reason = problems[0]!.message;
  }

  /**
   * One line, for where only one fits (a client's log of `serve`): the file, the first problem
   * and how many more there are.
   */
  get summary(): string {
    const first = problemLine(this.file, this.where, this.reason);
    const more = this.problems.length - 1;
    return more === 0 ? first : `${first} (and ${more} more problem${more > 1 ? 's' : ''}: run \`mcp-gateway check\` to list them)`;
  }
}

function problemLine(file: string, where: string | undefined, reason: string): string {
  return where ? `${file}: ${where}: ${reason}` : `${file}: ${reason}`;
}

function listProblems(file: string, problems: readonly ConfigProblem[]): string {
  if (problems.length === 1) return problemLine(file, problems[0]!.path, problems[0]!.message);
  const lines = problems.slice(0, MAX_LISTED_PROBLEMS).map((p) => `  ${p.path ? `${p.path}: ` : ''}${p.message}`);
  const rest = problems.length - MAX_LISTED_PROBLEMS;
  if (rest > 0) lines.push(`  … and ${rest} more problem${rest > 1 ? 's' : ''}`);
  return [`${file}: ${problems.length} problems`, ...lines].join('\n');
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
    throw new ConfigError(file, [{ path: undefined, message: reason, kind: 'file' }]);
  }
  return parseConfig(text, file, env, options);
}

/** Parses config text as if read from `file` (used by `check`, tests and the fuzzers). */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env, options: LoadOptions = {}): LoadedConfig {
  const dir = path.dirname(file);
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) throw new ConfigError(file, yamlProblems(doc.errors, text));
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(file, [yamlValueProblem(err as Error)]);
  }
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(file, [{ path: undefined, message: 'must be a YAML mapping (key: value) at the top level', kind: 'file' }]);
  }

  // Every unset variable is reported, and the schema still checks the rest of the file: one run
  // lists all there is to fix.
  const { value: interpolated, problems: unset } = interpolateAll(
    raw,
    env,
    options.withoutServerSecrets ? (p) => p[0] === 'servers' : undefined,
  );
  const parsed = configSchema.safeParse(interpolated, { error: configErrorMap, reportInput: true });
  if (!parsed.success || unset.length > 0) {
    // A value whose variable is unset was checked as "": what the schema says of it is noise.
    const noise = (p: LocatedProblem) => unset.some((u) => u.at.length <= p.at.length && u.at.every((part, i) => p.at[i] === part));
    const rest = parsed.success ? [] : schemaProblems(parsed.error.issues, configSchema).filter((p) => !noise(p));
    throw new ConfigError(file, inFileOrder([...unset, ...rest], doc));
  }
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

/**
 * `interpolate`, but collecting every unset or mistyped `${VAR}` (each with its path) instead of
 * stopping at the first; they read as "" in the value returned.
 */
function interpolateAll(
  node: unknown,
  env: NodeJS.ProcessEnv,
  tolerate: TolerateUnset | undefined,
): { value: unknown; problems: LocatedProblem[] } {
  const problems: LocatedProblem[] = [];
  const walk = (value: unknown, at: (string | number)[]): unknown => {
    if (typeof value === 'string') return interpolateLeaf(value, at);
    if (Array.isArray(value)) return value.map((item, i) => walk(item, [...at, i]));
    if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = walk(v, [...at, k]);
      return out;
    }
    return value;
  };
  const interpolateLeaf = (value: string, at: (string | number)[]): string => {
    // One string may use several unset variables: each one found is given a stand-in value and
    // the string read again, until it goes through or a reference is malformed.
    let local = env;
    let failed = false;
    for (;;) {
      try {
        const out = interpolateString(value, local, at, undefined, tolerate);
        return failed ? '' : out;
      } catch (err) {
        if (!(err instanceof UnsetVariableError)) throw err;
        problems.push({ path: formatPath(err.path), message: err.message, kind: 'variable', at: err.path });
        if (err instanceof InvalidReferenceError) return '';
        failed = true;
        local = { ...local, [err.variable]: 'unset' };
      }
    }
  };
  return { value: walk(node, []), problems };
}

function resolvePaths(config: GatewayConfig, dir: string): GatewayConfig {
  const resolve = (p: string) => path.resolve(dir, p);
  const jwt = config.auth.jwt;
  return {
    ...config,
    database: config.database === ':memory:' || isPostgresUrl(config.database) ? config.database : resolve(config.database),
    servers: config.servers.map((s) => ({ ...s, cwd: resolve(s.cwd ?? '.') })),
    ...(config.http?.tls
      ? { http: { ...config.http, tls: { cert: resolve(config.http.tls.cert), key: resolve(config.http.tls.key) } } }
      : {}),
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
