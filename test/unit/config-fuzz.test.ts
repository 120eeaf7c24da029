/**
 * Fuzzes the config loader and the policy compiler with generated YAML: a valid config mutated in
 * the ways people break configs (typos in keys, wrong types, deleted fields, stray values, broken
 * YAML). Every input either loads, or fails with a ConfigError naming the file (and, for
 * schema errors, a path); nothing crashes. A config that loads never says less than was written:
 * every value under policies, rateLimit and auth is in the loaded config (a typo cannot drop a
 * forbid or a limit), so no file starts with a looser policy than it states.
 */
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { describe, expect, test } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { PolicyEngine } from '../../src/policy/index.js';

const FILE = '/etc/mcp-gateway/gateway.yaml';
const RUNS = Number(process.env['CONFIG_FUZZ_RUNS'] ?? 5_000);

const base = {
  database: './gw.db',
  auth: { anonymous: false, apiKeys: { static: [{ id: 'k1', consumerId: 'ci', roles: ['reader'], key: 'gw_k1_abcdefghijklmnopqrstu' }] } },
  servers: [{ id: 'github', command: 'npx', args: ['-y', 'server-github'], env: { TOKEN: 'abc123456' }, timeoutMs: 1000 }],
  policies: [
    {
      id: 'reader',
      roles: ['reader'],
      rules: [
        { server: 'stripe', action: 'forbid' },
        { tool: 'get_*', action: 'allow' },
        { server: 'github', tool: 'search_*', action: 'allow', when: { 'args.owner': { eq: '${consumer.id}' }, 'args.n': { lt: 10 } } },
      ],
    },
  ],
  rateLimit: { enabled: true, defaultPerMinute: 60, rules: [{ server: 'stripe', tool: 'create_*', perMinute: 5 }] },
  audit: { enabled: true, redactKeys: ['password'] },
};

type Path = (string | number)[];

function paths(value: unknown, prefix: Path = []): Path[] {
  if (value === null || typeof value !== 'object') return [prefix];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  return [prefix, ...entries.flatMap(([k, v]) => paths(v, [...prefix, k]))];
}

function get(value: unknown, path: Path): unknown {
  let v = value;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[p];
  }
  return v;
}

function set(value: unknown, path: Path, next: unknown): unknown {
  if (path.length === 0) return next;
  const copy = (Array.isArray(value) ? [...value] : { ...(value as object) }) as Record<string | number, unknown>;
  const [head, ...rest] = path;
  copy[head!] = set(copy[head!], rest, next);
  return copy;
}

function remove(value: unknown, path: Path): unknown {
  if (path.length === 0) return undefined;
  const parent = get(value, path.slice(0, -1));
  if (parent === null || typeof parent !== 'object') return value;
  const key = path[path.length - 1]!;
  const copy = (Array.isArray(parent) ? [...parent] : { ...parent }) as Record<string | number, unknown>;
  if (Array.isArray(copy)) (copy as unknown[]).splice(key as number, 1);
  else delete copy[key];
  return set(value, path.slice(0, -1), copy);
}

const allPaths = paths(base).filter((p) => p.length > 0);
const pathArb = fc.constantFrom(...allPaths);
const junk = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
  fc.constantFrom('allow', 'forbid', 'deny', '*', '${UNSET_VAR}', '${consumer.id}', '60', 'true', '[', '{a: }'),
);

type Mutation = (config: unknown) => unknown;
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(pathArb, junk).map(
    ([p, v]) =>
      (c: unknown) =>
        set(c, p, v),
  ),
  pathArb.map((p) => (c: unknown) => remove(c, p)),
  // A typo in a key: the value moves to a key the schema does not know.
  fc
    .tuple(pathArb, fc.constantFrom('acton', 'rols', 'enable', 'Tool', 'serverr', 'perMinut', 'polices', 'rule'))
    .map(([p, typo]) => (c: unknown) => {
      const parentPath = p.slice(0, -1);
      const parent = get(c, parentPath);
      if (parent === null || typeof parent !== 'object' || Array.isArray(parent)) return c;
      const moved = remove(c, p);
      return set(moved, [...parentPath, typo], get(c, p));
    }),
);

const document: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) => stringify(ms.reduce((c, m) => m(c), base as unknown))),
  },
  // Text-level damage: cut, duplicated lines, tabs, random text.
  {
    weight: 2,
    arbitrary: fc.tuple(fc.nat(), fc.constantFrom('cut', 'dup', 'tab', 'noise')).map(([n, kind]) => {
      const text = stringify(base);
      const lines = text.split('\n');
      const i = n % lines.length;
      if (kind === 'cut') return text.slice(0, n % text.length);
      if (kind === 'dup') return [...lines.slice(0, i + 1), lines[i], ...lines.slice(i + 1)].join('\n');
      if (kind === 'tab') return text.replace(/ {2}/, '\t');
      return `${text}\n${'}{]['.repeat(n % 5)}`;
    }),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
);

/** Values the loader may coerce ("60" → 60 after ${VAR} interpolation; dates stay dates). */
function sameValue(written: unknown, loaded: unknown): boolean {
  if (typeof written === 'string' && typeof loaded === 'number') return Number(written) === loaded;
  if (typeof written === 'string' && typeof loaded === 'boolean') return String(loaded) === written;
  if (written instanceof Date) return typeof loaded === 'string' && Date.parse(loaded) === written.getTime();
  return Object.is(written, loaded) || (typeof written === 'object' && written !== null);
}

describe('config fuzzing', () => {
  test(
    `${RUNS} generated configs: load, or one clear error with a path; never a looser policy than written`,
    () => {
      let loaded = 0;
      let refused = 0;
      fc.assert(
        fc.property(document, (text) => {
          let result;
          try {
            result = parseConfig(text, FILE, {});
          } catch (err) {
            expect(err).toBeInstanceOf(ConfigError);
            const message = (err as Error).message;
            // The file on the first line, then one line per problem (at most 20, then a count).
            const lines = message.split('\n');
            for (const line of lines.slice(1)) expect(line).toMatch(/^  (\S.*: .+|… and \d+ more problems)$/);
            expect(message.startsWith(`${FILE}: `)).toBe(true);
            refused++;
            return;
          }
          loaded++;
          // The policies compile (or the engine names the bad rule: a loaded config must compile).
          new PolicyEngine(result.config.policies);
          let written: Record<string, unknown>;
          try {
            written = (parse(text) ?? {}) as Record<string, unknown>;
          } catch {
            return;
          }
          for (const section of ['policies', 'rateLimit', 'auth'] as const) {
            if (written[section] === undefined) continue;
            for (const p of paths(written[section])) {
              const w = get(written[section], p);
              const l = get(result.config[section], p);
              expect(l === undefined && w !== undefined && w !== null ? `${section}.${p.join('.')} was dropped` : 'kept').toBe('kept');
              expect(sameValue(w, l), `${section}.${p.join('.')}: wrote ${JSON.stringify(w)}, loaded ${JSON.stringify(l)}`).toBe(true);
            }
          }
        }),
        { numRuns: RUNS, seed: 11_21 },
      );
      // The generator must produce both outcomes, or it tests nothing.
      expect(loaded).toBeGreaterThan(RUNS / 20);
      expect(refused).toBeGreaterThan(RUNS / 4);
    },
    Math.max(60_000, RUNS * 3),
  );
});
