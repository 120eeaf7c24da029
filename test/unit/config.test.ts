/**
 * Unit tests of the config loader (design §2): the design's example parses, every error names the
 * file and the path inside it, `${VAR}` interpolation, relative paths, strictness, defaults.
 * The CLI's exit code 2 for a bad config is checked end to end in test/e2e/config-cli.test.ts.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ConfigError, findConfigFile, loadConfig, parseConfig } from '../../src/config/load.js';
import { formatPath, interpolate, interpolateString, UnsetVariableError } from '../../src/config/interpolate.js';
import { configSchema } from '../../src/config/schema.js';

const FILE = '/etc/mcp/gateway.yaml';
const DIR = '/etc/mcp';
/** A syntactically valid bcrypt hash (the design's example elides it as "$2b$12$..."). */
const HASH = '$2b$12$' + 'a'.repeat(53);

/**
 * The example of design.md §2, with a real-looking hash in place of the elided one, and key id
 * "cibot" for the design's "ci-bot": key ids are alphanumeric (design §3, `gw_<keyId>_<secret>`), so
 * the schema refuses the example's own id (reported as a contract inconsistency).
 */
const DESIGN_EXAMPLE = `
database: ./mcp-gateway.db        # keys, audit chain, usage

naming:
  separator: "__"
  expose: both

auth:
  apiKeys:
    static:
      - id: cibot
        name: CI agent
        consumerId: ci
        roles: [reader]
        hash: "${HASH}"
        expiresAt: 2027-06-30T00:00:00Z
        rateLimit: { perMinute: 120 }
  jwt:
    issuer: https://login.example.com/
    audience: mcp-gateway
    jwksUri: https://login.example.com/.well-known/jwks.json
    algorithms: [RS256]
    consumerClaim: sub
    rolesClaim: roles
  anonymous: false

servers:
  - id: github
    name: GitHub
    command: npx
    args: [-y, "@modelcontextprotocol/server-github"]
    cwd: ./servers/github
    env:
      GITHUB_TOKEN: \${GITHUB_TOKEN}
    inheritEnv: [HTTPS_PROXY]
    enabled: true
    start: eager
    timeoutMs: 60000
    restart: { maxRestarts: 5, windowMs: 60000, backoffMs: 500, maxBackoffMs: 30000 }
    pricing: { perCall: 0.002, tools: { "create_*": 0.01 } }

policies:
  - id: reader
    roles: [reader]
    rules:
      - tool: "get_*"
        action: allow
      - server: github
        tool: "search_*"
        action: allow
        when:
          args.owner: { eq: "\${consumer.id}" }
  - id: no-payments
    roles: [readonly]
    rules:
      - server: stripe
        action: forbid

rateLimit:
  enabled: true
  defaultPerMinute: 60
  burst: 60
  rules:
    - server: stripe
      tool: "create_*"
      perMinute: 5
      burst: 5
      per: consumer
    - roles: [trial]
      perMinute: 10

audit:
  enabled: true
  hashChain: true
  hmacKeyEnv: MCP_GATEWAY_AUDIT_KEY
  recordArguments: true
  recordResults: true
  maxRecordBytes: 16384
  redactKeys: [password, token, secret, apiKey, authorization]

metering:
  enabled: true
`;

/** Runs `fn`, expecting a ConfigError, and returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, but the config was accepted');
}

const parse = (text: string, env: NodeJS.ProcessEnv = {}) => parseConfig(text, FILE, env).config;
const parseError = (text: string, env: NodeJS.ProcessEnv = {}) => configError(() => parseConfig(text, FILE, env));

/** A config with the given servers (as YAML flow text). */
const serversYaml = (...servers: string[]) => `servers:\n${servers.map((s) => `  - ${s}\n`).join('')}`;

describe('the example of design.md', () => {
  test('parses, with every value where the design puts it', () => {
    const { config, file, dir } = parseConfig(DESIGN_EXAMPLE, FILE, { GITHUB_TOKEN: 'ghp_secret_value' });
    expect(file).toBe(FILE);
    expect(dir).toBe(DIR);
    expect(config.database).toBe(path.join(DIR, 'mcp-gateway.db'));
    expect(config.naming).toEqual({ separator: '__', expose: 'both' });

    const key = config.auth.apiKeys.static[0]!;
    expect(key).toMatchObject({ id: 'cibot', consumerId: 'ci', roles: ['reader'], hash: HASH, rateLimit: { perMinute: 120 } });
    expect(Date.parse(key.expiresAt!)).toBe(Date.parse('2027-06-30T00:00:00Z'));
    expect(config.auth.jwt).toMatchObject({ algorithms: ['RS256'], consumerClaim: 'sub', rolesClaim: 'roles', audience: 'mcp-gateway' });
    expect(config.auth.anonymous).toBe(false);

    const github = config.servers[0]!;
    expect(github).toMatchObject({
      id: 'github',
      command: 'npx',
      args: ['-y', '@modelcontextprotocol/server-github'],
      cwd: path.join(DIR, 'servers/github'),
      env: { GITHUB_TOKEN: 'ghp_secret_value' },
      inheritEnv: ['HTTPS_PROXY'],
      enabled: true,
      start: 'eager',
      timeoutMs: 60000,
      restart: { maxRestarts: 5, windowMs: 60000, backoffMs: 500, maxBackoffMs: 30000 },
      pricing: { perCall: 0.002, tools: { 'create_*': 0.01 } },
    });

    expect(config.policies.map((p) => p.id)).toEqual(['reader', 'no-payments']);
    // A policy template is not an environment variable: it is left for the policy engine.
    expect(config.policies[0]!.rules[1]!.when).toEqual({ 'args.owner': { eq: '${consumer.id}' } });
    expect(config.policies[1]!.rules[0]).toEqual({ server: 'stripe', action: 'forbid' });
    expect(config.rateLimit.rules).toEqual([
      { server: 'stripe', tool: 'create_*', perMinute: 5, burst: 5, per: 'consumer' },
      { roles: ['trial'], perMinute: 10, per: 'consumer' },
    ]);
    expect(config.audit).toMatchObject({ hmacKeyEnv: 'MCP_GATEWAY_AUDIT_KEY', maxRecordBytes: 16384 });
    expect(config.metering.enabled).toBe(true);
  });

  test('is frozen: nothing can change the config after boot', () => {
    const config = parse(DESIGN_EXAMPLE, { GITHUB_TOKEN: 'x' });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.servers[0]!.env)).toBe(true);
    expect(Object.isFrozen(config.policies[0]!.rules[0])).toBe(true);
    expect(() => {
      (config.servers as unknown as unknown[]).push({});
    }).toThrow();
  });

  test('needs the variables it uses', () => {
    const err = parseError(DESIGN_EXAMPLE);
    expect(err.where).toBe('servers[0].env.GITHUB_TOKEN');
    expect(err.message).toContain('GITHUB_TOKEN');
  });
});

describe('errors name the file and the path inside it', () => {
  test('a missing required field', () => {
    const err = parseError(serversYaml('{ id: a, command: node }', '{ id: b }'));
    expect(err.file).toBe(FILE);
    expect(err.where).toBe('servers[1].command');
    expect(err.exitCode).toBe(2);
    expect(err.message.startsWith(`${FILE}: servers[1].command: `)).toBe(true);
  });

  test('a value of the wrong type', () => {
    expect(parseError(serversYaml('{ id: a, command: node, args: "not a list" }')).where).toBe('servers[0].args');
    expect(parseError(serversYaml('{ id: a, command: node, timeoutMs: soon }')).where).toBe('servers[0].timeoutMs');
    expect(parseError(serversYaml('{ id: a, command: node, start: later }')).where).toBe('servers[0].start');
    expect(parseError(serversYaml('{ id: a, command: node, restart: { maxRestarts: -1 } }')).where).toBe('servers[0].restart.maxRestarts');
    expect(parseError('rateLimit: { defaultPerMinute: 0 }').where).toBe('rateLimit.defaultPerMinute');
  });

  test('an invalid server id', () => {
    expect(parseError(serversYaml('{ id: Bad_Id, command: node }')).where).toBe('servers[0].id');
    expect(parseError(serversYaml('{ id: "-dash", command: node }')).where).toBe('servers[0].id');
    expect(parseError(serversYaml(`{ id: ${'a'.repeat(33)}, command: node }`)).where).toBe('servers[0].id');
  });

  test('the server id "gateway" is reserved for the gateway\'s own tools', () => {
    const err = parseError(serversYaml('{ id: ok, command: node }', '{ id: gateway, command: node }'));
    expect(err.where).toBe('servers[1].id');
    expect(err.message).toContain('gateway');
  });

  test('duplicate ids point at the second occurrence', () => {
    expect(parseError(serversYaml('{ id: a, command: node }', '{ id: b, command: node }', '{ id: a, command: node }')).where).toBe(
      'servers[2].id',
    );
    const policies = `policies:
  - { id: p, roles: [r], rules: [{ action: allow }] }
  - { id: p, roles: [r], rules: [{ action: allow }] }
`;
    expect(parseError(policies).where).toBe('policies[1].id');
  });

  test('unknown keys are rejected, at every level', () => {
    const top = parseError('servrs: []');
    expect(top.where).toBe('(top level)');
    expect(top.message).toContain('servrs');
    const nested = parseError(serversYaml('{ id: a, command: node, comand: x }'));
    expect(nested.where).toBe('servers[0]');
    expect(nested.message).toContain('comand');
    expect(parseError(serversYaml('{ id: a, command: node, restart: { retries: 3 } }')).where).toBe('servers[0].restart');
    expect(parseError('policies: [{ id: p, roles: [r], rules: [{ action: allow, tools: x }] }]').where).toBe('policies[0].rules[0]');
    expect(parseError('audit: { hashchain: false }').where).toBe('audit');
  });

  test('an invalid environment variable name in env', () => {
    const err = parseError(serversYaml('{ id: a, command: node, env: { "bad name": x } }'));
    expect(err.where).toMatch(/^servers\[0\]\.env/);
  });

  test('invalid YAML names the line and column', () => {
    const err = parseError('database: ./x.db\nservers:\n  - id: a\n    command: [unclosed\n');
    expect(err.file).toBe(FILE);
    expect(err.where).toMatch(/^line \d+, column \d+$/);
    const bad = parseError('a: 1\nb: 2\n  c: 3\n');
    expect(bad.where).toMatch(/^line [23], column \d+$/);
  });

  test('a key written twice is invalid YAML, not a silent override', () => {
    const err = parseError('database: a.db\ndatabase: b.db\n');
    expect(err.where).toMatch(/^line 2, column \d+$/);
  });

  test('a top level that is not a mapping', () => {
    expect(parseError('- a\n- b\n').where).toBeUndefined();
    expect(parseError('just a string').where).toBeUndefined();
  });

  test('a missing file names the absolute path', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpgw-config-'));
    const err = configError(() => loadConfig('nope.yaml', {}, dir));
    expect(err.file).toBe(path.join(dir, 'nope.yaml'));
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain(path.join(dir, 'nope.yaml'));
  });

  test('a directory is not a config file', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpgw-config-'));
    mkdirSync(path.join(dir, 'gateway.yaml'));
    expect(configError(() => loadConfig(undefined, {}, dir)).file).toBe(path.join(dir, 'gateway.yaml'));
  });
});

describe('${VAR} interpolation', () => {
  test('takes values from the environment, anywhere in a string', () => {
    const config = parse(serversYaml('{ id: a, command: "${BIN}", args: ["--token=${TOKEN}", "x${A}y${B}z"] }'), {
      BIN: '/usr/bin/node',
      TOKEN: 't0ken',
      A: '1',
      B: '2',
    });
    expect(config.servers[0]!.command).toBe('/usr/bin/node');
    expect(config.servers[0]!.args).toEqual(['--token=t0ken', 'x1y2z']);
  });

  test('${VAR:-default} uses the default when VAR is unset or empty', () => {
    const yaml = serversYaml('{ id: a, command: "${BIN:-node}", args: ["${EMPTY:-fallback}", "${NONE:-}"] }');
    expect(parse(yaml, { EMPTY: '' }).servers[0]).toMatchObject({ command: 'node', args: ['fallback', ''] });
    expect(parse(yaml, { BIN: 'deno', EMPTY: 'set' }).servers[0]).toMatchObject({ command: 'deno', args: ['set', ''] });
  });

  test('an unset variable names the variable and where it was used', () => {
    const err = parseError(serversYaml('{ id: a, command: node }', '{ id: b, command: node, env: { TOKEN: "${B_TOKEN}" } }'));
    expect(err.where).toBe('servers[1].env.TOKEN');
    expect(err.message).toContain('B_TOKEN');
    expect(err.file).toBe(FILE);
    const inList = parseError(serversYaml('{ id: a, command: node, args: [ok, "${MISSING_ARG}"] }'));
    expect(inList.where).toBe('servers[0].args[1]');
    expect(inList.message).toContain('MISSING_ARG');
  });

  test('an empty variable without a default counts as unset', () => {
    expect(parseError(serversYaml('{ id: a, command: "${EMPTY}" }'), { EMPTY: '' }).where).toBe('servers[0].command');
  });

  test('$${X} writes a literal ${X}', () => {
    const config = parse(serversYaml('{ id: a, command: node, args: ["$${HOME}", "a$${X:-y}b", "$${consumer.id}"] }'), {
      HOME: '/home/me',
    });
    expect(config.servers[0]!.args).toEqual(['${HOME}', 'a${X:-y}b', '$${consumer.id}']);
  });

  test('a mistyped reference is an error at its path, never silently the literal text', () => {
    for (const bad of ['${GITHUB-TOKEN}', '${TOKEN-default}', '${TOKEN:default}', '${TOKEN:=x}', 'Bearer ${TOKEN }']) {
      const err = parseError(serversYaml(`{ id: a, command: node, env: { TOKEN: ${JSON.stringify(bad)} } }`), { TOKEN: 'x', GITHUB: 'y' });
      expect(err.where, bad).toBe('servers[0].env.TOKEN');
    }
    // Escaped, it is the literal text.
    expect(parse(serversYaml('{ id: a, command: node, args: ["$${GITHUB-TOKEN}"] }')).servers[0]!.args).toEqual(['${GITHUB-TOKEN}']);
  });

  test('${...} that cannot be a variable (shell positionals, policy templates) is left alone', () => {
    const config = parse(serversYaml('{ id: a, command: sh, args: [-c, \'exec foo "${1}" "${@}" ${}\'] }'));
    expect(config.servers[0]!.args).toEqual(['-c', 'exec foo "${1}" "${@}" ${}']);
  });

  test('policy templates such as ${consumer.id} and ${claims.tenant} are left alone', () => {
    const config = parse(`policies:
  - id: p
    roles: ["*"]
    rules:
      - action: allow
        when:
          args.owner: { eq: "\${consumer.id}" }
          args.tenant: { in: "\${claims.tenant}" }
          args.path: { regex: "/home/\${consumer.id}/.*" }
`);
    expect(config.policies[0]!.rules[0]!.when).toEqual({
      'args.owner': { eq: '${consumer.id}' },
      'args.tenant': { in: '${claims.tenant}' },
      'args.path': { regex: '/home/${consumer.id}/.*' },
    });
  });

  test('numbers and booleans may come from the environment as strings', () => {
    const config = parse(
      serversYaml('{ id: a, command: node, timeoutMs: "${T}", enabled: "${ON}", restart: { maxRestarts: "${R}" } }') +
        'rateLimit: { defaultPerMinute: "${RATE}" }\n',
      { T: '1500', ON: 'false', R: '3', RATE: '2.5' },
    );
    expect(config.servers[0]!.timeoutMs).toBe(1500);
    expect(config.servers[0]!.enabled).toBe(false);
    expect(config.servers[0]!.restart.maxRestarts).toBe(3);
    expect(config.rateLimit.defaultPerMinute).toBe(2.5);
    // A string that is not a number is still an error, at its path.
    expect(parseError(serversYaml('{ id: a, command: node, timeoutMs: "${T}" }'), { T: '15s' }).where).toBe('servers[0].timeoutMs');
  });

  test('keys are not interpolated, only values', () => {
    expect(interpolate({ '${A}': '${A}' }, { A: 'x' })).toEqual({ '${A}': 'x' });
  });

  test('interpolateString records the variables it used', () => {
    const used = new Map<string, string>();
    expect(interpolateString('${A}-${B:-b}', { A: 'a' }, ['k'], used)).toBe('a-b');
    expect([...used]).toEqual([['A', 'a']]);
    expect(() => interpolateString('${Z}', {}, ['x', 0])).toThrow(UnsetVariableError);
  });

  test('formatPath', () => {
    expect(formatPath(['servers', 1, 'command'])).toBe('servers[1].command');
    expect(formatPath(['servers', 0, 'env', 'MY_TOKEN'])).toBe('servers[0].env.MY_TOKEN');
    expect(formatPath(['policies', 0, 'rules', 1, 'when', 'args.owner'])).toBe('policies[0].rules[1].when["args.owner"]');
    expect(formatPath([])).toBe('(top level)');
  });
});

describe('paths', () => {
  test("relative paths resolve against the config file's folder, not the working directory", () => {
    const config = parse(
      `database: ./data/gw.db
servers:
  - { id: a, command: node, cwd: ../srv }
  - { id: b, command: node }
  - { id: c, command: node, cwd: /abs/path }
auth:
  jwt: { publicKey: ./keys/pub.pem, algorithms: [RS256] }
`,
    );
    expect(config.database).toBe(path.join(DIR, 'data/gw.db'));
    expect(config.servers.map((s) => s.cwd)).toEqual(['/etc/srv', DIR, '/abs/path']);
    expect(config.auth.jwt!.publicKey).toBe(path.join(DIR, 'keys/pub.pem'));
  });

  test('an inline PEM public key and :memory: are not paths', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----';
    const config = parse(`database: ":memory:"\nauth:\n  jwt: { publicKey: ${JSON.stringify(pem)}, algorithms: [ES256] }\n`);
    expect(config.database).toBe(':memory:');
    expect(config.auth.jwt!.publicKey).toBe(pem);
  });

  test('loadConfig: --config, else MCP_GATEWAY_CONFIG, else ./gateway.yaml', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpgw-config-'));
    writeFileSync(path.join(dir, 'gateway.yaml'), 'database: ./default.db\n');
    writeFileSync(path.join(dir, 'other.yaml'), 'database: ./other.db\n');
    writeFileSync(path.join(dir, 'env.yaml'), 'database: ./env.db\n');
    expect(findConfigFile(undefined, {}, dir)).toBe(path.join(dir, 'gateway.yaml'));
    expect(loadConfig(undefined, {}, dir).config.database).toBe(path.join(dir, 'default.db'));
    expect(loadConfig(undefined, { MCP_GATEWAY_CONFIG: 'env.yaml' }, dir).config.database).toBe(path.join(dir, 'env.db'));
    expect(loadConfig('other.yaml', { MCP_GATEWAY_CONFIG: 'env.yaml' }, dir).config.database).toBe(path.join(dir, 'other.db'));
    // An empty MCP_GATEWAY_CONFIG is unset, not "the current folder".
    expect(loadConfig(undefined, { MCP_GATEWAY_CONFIG: '' }, dir).config.database).toBe(path.join(dir, 'default.db'));
    // Relative to the file's folder even when the file is found from elsewhere.
    const sub = path.join(dir, 'sub');
    mkdirSync(sub);
    expect(loadConfig('../other.yaml', {}, sub).config.database).toBe(path.join(dir, 'other.db'));
  });
});

describe('defaults', () => {
  test('an empty file gives the defaults', () => {
    for (const text of ['', '\n', '# only a comment\n', '---\n']) {
      const config = parse(text);
      expect(config.database).toBe(path.join(DIR, 'mcp-gateway.db'));
      expect(config.servers).toEqual([]);
      expect(config.policies).toEqual([]);
      expect(config.naming).toEqual({ separator: '__', expose: 'both' });
      expect(config.auth.anonymous).toBe(false);
      expect(config.rateLimit).toMatchObject({ enabled: true, defaultPerMinute: 60, rules: [] });
      expect(config.audit).toMatchObject({ enabled: true, hashChain: true, maxRecordBytes: 16384 });
      expect(config.metering.enabled).toBe(true);
    }
  });

  test('a server gets the defaults of design §2', () => {
    const server = parse(serversYaml('{ id: a, command: node }')).servers[0]!;
    expect(server).toMatchObject({
      args: [],
      env: {},
      inheritEnv: [],
      enabled: true,
      start: 'eager',
      timeoutMs: 60000,
      restart: { maxRestarts: 5, windowMs: 60000, backoffMs: 500, maxBackoffMs: 30000 },
    });
  });

  test('the schema alone fills the same defaults', () => {
    expect(configSchema.parse({}).naming.separator).toBe('__');
  });
});
