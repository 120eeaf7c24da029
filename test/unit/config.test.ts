/**
 * Unit tests of the config loader (design §2): the design's example parses, every error names the
 * file and the path inside it, every problem of a file is listed in our words (with a did-you-mean
 * for unknown keys), `${VAR}` interpolation, relative paths, strictness, defaults.
 * The CLI's exit code 2 for a bad config is checked end to end in test/e2e/config-cli.test.ts.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ConfigError, findConfigFile, loadConfig, MAX_LISTED_PROBLEMS, parseConfig, type ConfigProblem } from '../../src/config/load.js';
import { formatPath, interpolate, interpolateString, UnsetVariableError } from '../../src/config/interpolate.js';
import { didYouMean, type ConfigProblemKind } from '../../src/config/problems.js';
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

/** zod's own wording, which must never reach a user. */
const LIBRARY_WORDING = /Invalid input|expected|received|Too (small|big)|Unrecognized key|Invalid (option|key|URL|string|element)/;
/** The yaml library's internal names, which must never reach a user either. */
const YAML_INTERNALS = /flow-(map|seq)|block-(map|seq)|parseAllDocuments|Implicit|compact mapping|token/;

const problemsOf = (text: string, env: NodeJS.ProcessEnv = {}) => parseError(text, env).problems;
const pathsAndKinds = (problems: readonly ConfigProblem[]) => problems.map((p) => [p.path, p.kind]);

describe('every problem is listed, in our words', () => {
  const cases: [what: string, yaml: string, expected: [path: string | undefined, kind: ConfigProblemKind][]][] = [
    ['a string for a list', serversYaml('{ id: a, command: node, args: "not a list" }'), [['servers[0].args', 'type']]],
    ['a word for a number', serversYaml('{ id: a, command: node, timeoutMs: soon }'), [['servers[0].timeoutMs', 'type']]],
    ['a fraction for a whole number', serversYaml('{ id: a, command: node, timeoutMs: 1.5 }'), [['servers[0].timeoutMs', 'type']]],
    ['an infinite number', serversYaml('{ id: a, command: node, timeoutMs: .inf }'), [['servers[0].timeoutMs', 'type']]],
    ['a word for true/false', serversYaml('{ id: a, command: node, enabled: maybe }'), [['servers[0].enabled', 'type']]],
    ['a number for a string', serversYaml('{ id: a, command: node, env: { PORT: 8080 } }'), [['servers[0].env.PORT', 'type']]],
    ['a value for a mapping', 'metering: true', [['metering', 'type']]],
    ['a mapping for a list', 'servers: { id: a }', [['servers', 'type']]],
    ['an empty value', 'servers:', [['servers', 'type']]],
    ['a missing value', serversYaml('{ id: a, command: node }', '{ id: b }'), [['servers[1].command', 'required']]],
    ['a missing choice', 'policies: [{ id: p, roles: [r], rules: [{ tool: x }] }]', [['policies[0].rules[0].action', 'required']]],
    ['a value not among the choices', serversYaml('{ id: a, command: node, start: later }'), [['servers[0].start', 'choice']]],
    ['an unknown key', serversYaml('{ id: a, command: node, timeout: 5 }'), [['servers[0]', 'unknown_key']]],
    ['a number too small', serversYaml('{ id: a, command: node, timeoutMs: 0 }'), [['servers[0].timeoutMs', 'range']]],
    ['a number not above zero', 'rateLimit: { defaultPerMinute: 0 }', [['rateLimit.defaultPerMinute', 'range']]],
    ['a number too large', 'limits: { maxNameBytes: 99999999 }', [['limits.maxNameBytes', 'range']]],
    ['a string too long', 'naming: { separator: "_____" }', [['naming.separator', 'range']]],
    ['an empty string', serversYaml('{ id: a, command: "" }'), [['servers[0].command', 'range']]],
    ['an empty list', 'policies: [{ id: p, roles: [], rules: [{ action: allow }] }]', [['policies[0].roles', 'range']]],
    ['not a URL', 'auth: { jwt: { jwksUri: notaurl, algorithms: [RS256] } }', [['auth.jwt.jwksUri', 'format']]],
    ['an id of the wrong form', serversYaml('{ id: Bad_Id, command: node }'), [['servers[0].id', 'format']]],
    [
      'a union, no branch of that type',
      'auth: { jwt: { jwksUri: "https://x.example", algorithms: [RS256], audience: 5 } }',
      [['auth.jwt.audience', 'type']],
    ],
    [
      'a union, the list branch',
      'auth: { jwt: { jwksUri: "https://x.example", algorithms: [RS256], audience: [1] } }',
      [['auth.jwt.audience[0]', 'type']],
    ],
    [
      'a union in a condition',
      'policies: [{ id: p, roles: [r], rules: [{ action: allow, when: { args.x: { in: 5 } } }] }]',
      [['policies[0].rules[0].when["args.x"].in', 'type']],
    ],
    ['a bad key in a record', serversYaml('{ id: a, command: node, env: { "bad name": x } }'), [['servers[0].env["bad name"]', 'invalid']]],
    ['a refinement of our own', 'auth: { apiKeys: { static: [{ id: k1, consumerId: c }] } }', [['auth.apiKeys.static[0]', 'invalid']]],
    [
      'a glob of our own refusing',
      'policies: [{ id: p, roles: [r], rules: [{ action: allow, tool: "(a)" }] }]',
      [['policies[0].rules[0].tool', 'invalid']],
    ],
    ['a top level that is a list', '- a\n- b\n', [[undefined, 'file']]],
    ['YAML syntax', 'servers:\n  - id: a\n    command: [unclosed\n', [['line 4, column 1', 'yaml']]],
    ['a tab for indentation', 'servers:\n\t- id: a\n', [['line 2, column 1', 'yaml']]],
    ['an alias to nothing', 'database: *nope\n', [[undefined, 'yaml']]],
  ];

  test.each(cases)('%s', (_what, yaml, expected) => {
    const problems = problemsOf(yaml);
    expect(pathsAndKinds(problems)).toEqual(expected);
    for (const p of problems) {
      expect(p.message.length, p.path).toBeGreaterThan(5);
      expect(p.message, p.path).not.toMatch(LIBRARY_WORDING);
      expect(p.message, p.path).not.toMatch(YAML_INTERNALS);
    }
  });

  test('a config with 3 problems lists all 3, one a line, after a first line naming the file', () => {
    const err = parseError(serversYaml('{ id: a, command: node, timeout: 5 }', '{ id: b }', '{ id: c, command: node, start: later }'));
    expect(pathsAndKinds(err.problems)).toEqual([
      ['servers[0]', 'unknown_key'],
      ['servers[1].command', 'required'],
      ['servers[2].start', 'choice'],
    ]);
    const lines = err.message.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]!.startsWith(`${FILE}: `)).toBe(true);
    err.problems.forEach((p, i) => expect(lines[i + 1]).toBe(`  ${p.path}: ${p.message}`));
    // The first problem is still `where` and `reason`.
    expect([err.where, err.reason]).toEqual([err.problems[0]!.path, err.problems[0]!.message]);
  });

  test('one problem is one line, as before', () => {
    const err = parseError(serversYaml('{ id: a, command: node }', '{ id: b }'));
    expect(err.problems).toHaveLength(1);
    expect(err.message).toBe(`${FILE}: servers[1].command: ${err.reason}`);
    expect(err.summary).toBe(err.message);
  });

  test(`30 problems: the message lists ${MAX_LISTED_PROBLEMS} and counts the other 10; problems holds all 30`, () => {
    const servers = Array.from({ length: 30 }, (_, i) => `{ id: s${i} }`);
    const err = parseError(serversYaml(...servers));
    expect(err.problems).toHaveLength(30);
    expect(err.problems.every((p) => p.kind === 'required')).toBe(true);
    const lines = err.message.split('\n');
    expect(lines).toHaveLength(1 + MAX_LISTED_PROBLEMS + 1);
    expect(lines[0]!.startsWith(`${FILE}: `)).toBe(true);
    expect(lines.slice(1, 1 + MAX_LISTED_PROBLEMS).map((l) => l.trim().split(': ')[0])).toEqual(
      Array.from({ length: MAX_LISTED_PROBLEMS }, (_, i) => `servers[${i}].command`),
    );
    expect(lines.at(-1)).toMatch(/\b10 more problems$/);
  });

  test('the summary is one line: the file, the first problem, and how many more', () => {
    const err = parseError(serversYaml('{ id: a }', '{ id: b }', '{ id: c }'));
    expect(err.summary.split('\n')).toHaveLength(1);
    expect(err.summary.startsWith(`${FILE}: servers[0].command: ${err.reason}`)).toBe(true);
    expect(err.summary).toMatch(/\b2 more\b/);
  });

  test('problems are listed in the order of the file, not of the schema', () => {
    const problems = problemsOf(`servers:
  - { id: a, command: node, timeout: 5 }
audit: { hashchain: false }
database: ""
naming: { separator: "" }
`);
    expect(problems.map((p) => p.path)).toEqual(['servers[0]', 'audit', 'database', 'naming.separator']);
  });

  test('several issues at one path are one problem; an empty value is the whole story', () => {
    // "" is also too short for the pattern and has no character server ids cannot: not listed.
    expect(pathsAndKinds(problemsOf('naming: { separator: "" }'))).toEqual([['naming.separator', 'range']]);
    // Reserved and duplicate: two messages, one problem, one line.
    const problems = problemsOf(serversYaml('{ id: gateway, command: node }', '{ id: gateway, command: node }'));
    expect(problems.map((p) => p.path)).toEqual(['servers[0].id', 'servers[1].id']);
  });

  test('each unknown key is its own problem', () => {
    const problems = problemsOf(serversYaml('{ id: a, command: node, restart: { retries: 3, maxRestart: 2 } }'));
    expect(pathsAndKinds(problems)).toEqual([
      ['servers[0].restart', 'unknown_key'],
      ['servers[0].restart', 'unknown_key'],
    ]);
  });

  test('several YAML syntax errors: one problem per line of the file, each with its line and column', () => {
    const problems = problemsOf('servers:\n  - id: a\n  command: x\n- b\n');
    expect(problems.length).toBeGreaterThan(1);
    expect(new Set(problems.map((p) => p.path!.split(',')[0])).size).toBe(problems.length);
    for (const p of problems) {
      expect(p.kind).toBe('yaml');
      expect(p.path).toMatch(/^line \d+, column \d+$/);
      expect(p.message).not.toMatch(YAML_INTERNALS);
    }
  });

  test("YAML errors are rephrased without the library's internals", () => {
    for (const text of [
      '}{][',
      'a: 1\n---\nb: 2\n',
      'database: "abc\nservers: []\n',
      'a: 1\nb: 2\n  c: 3\n',
      'a: "\\q"\n',
      'a: @x\n',
      'a: [\n  - b\n]\n',
      'database: a.db\ndatabase: b.db\n',
    ]) {
      for (const p of problemsOf(text)) {
        expect(p.kind, text).toBe('yaml');
        expect(p.message, text).not.toMatch(YAML_INTERNALS);
        expect(p.message, text).not.toMatch(LIBRARY_WORDING);
      }
    }
  });

  test('the single-problem constructor keeps its contract (used after parsing, e.g. for a public key)', () => {
    const err = new ConfigError(FILE, 'auth.jwt.publicKey', 'cannot be read');
    expect(err).toMatchObject({ file: FILE, where: 'auth.jwt.publicKey', reason: 'cannot be read', exitCode: 2, name: 'ConfigError' });
    expect(err.problems).toEqual([{ path: 'auth.jwt.publicKey', message: 'cannot be read', kind: 'invalid' }]);
    expect(err.message).toBe(`${FILE}: auth.jwt.publicKey: cannot be read`);
  });

  test('a missing file is one problem of kind "file"', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mcpgw-config-'));
    expect(pathsAndKinds(configError(() => loadConfig('nope.yaml', {}, dir)).problems)).toEqual([[undefined, 'file']]);
  });
});

describe('did you mean: unknown keys and choices', () => {
  const cases: [typed: string, yaml: (key: string) => string, path: string, suggestion: string | undefined][] = [
    ['timeout', (k) => serversYaml(`{ id: a, command: node, ${k}: 5 }`), 'servers[0]', 'timeoutMs'],
    ['comand', (k) => serversYaml(`{ id: a, command: node, ${k}: x }`), 'servers[0]', 'command'],
    ['startTimout', (k) => serversYaml(`{ id: a, command: node, ${k}: 5 }`), 'servers[0]', 'startTimeoutMs'],
    ['tiemoutMs', (k) => serversYaml(`{ id: a, command: node, ${k}: 5 }`), 'servers[0]', 'timeoutMs'],
    ['maxRestart', (k) => serversYaml(`{ id: a, command: node, restart: { ${k}: 2 } }`), 'servers[0].restart', 'maxRestarts'],
    ['servrs', (k) => `${k}: []`, '(top level)', 'servers'],
    ['Servers', (k) => `${k}: []`, '(top level)', 'servers'],
    ['hashchain', (k) => `audit: { ${k}: false }`, 'audit', 'hashChain'],
    ['acton', (k) => `policies: [{ id: p, roles: [r], rules: [{ action: allow, ${k}: deny }] }]`, 'policies[0].rules[0]', 'action'],
    ['perMinut', (k) => `rateLimit: { rules: [{ perMinute: 5, ${k}: 5 }] }`, 'rateLimit.rules[0]', 'perMinute'],
    ['retries', (k) => serversYaml(`{ id: a, command: node, restart: { ${k}: 3 } }`), 'servers[0].restart', undefined],
    ['colour', (k) => `${k}: red`, '(top level)', undefined],
  ];

  test.each(cases)('%s', (typed, yaml, path, suggestion) => {
    const [problem, ...rest] = problemsOf(yaml(typed));
    expect(rest).toEqual([]);
    expect(problem).toMatchObject({ path, kind: 'unknown_key' });
    expect(problem!.suggestion).toBe(suggestion);
    expect(problem!.message).toContain(`"${typed}"`);
    if (suggestion) expect(problem!.message).toContain(`"${suggestion}"`);
  });

  test('a value close to one of the choices', () => {
    expect(problemsOf(serversYaml('{ id: a, command: node, start: Lazy }'))[0]).toMatchObject({ kind: 'choice', suggestion: 'lazy' });
    expect(problemsOf(serversYaml('{ id: a, command: node, sandbox: nonee }'))[0]).toMatchObject({ kind: 'choice', suggestion: 'none' });
    expect(problemsOf(serversYaml('{ id: a, command: node, start: later }'))[0]!.suggestion).toBeUndefined();
  });

  test('didYouMean: case-insensitive, swaps count as one edit, only when close', () => {
    const keys = ['timeoutMs', 'startTimeoutMs', 'command', 'args', 'env'];
    expect(didYouMean('TIMEOUTMS', keys)).toBe('timeoutMs');
    expect(didYouMean('comamnd', keys)).toBe('command');
    expect(didYouMean('timeout', keys)).toBe('timeoutMs');
    expect(didYouMean('arg', keys)).toBe('args');
    expect(didYouMean('xyz', keys)).toBeUndefined();
    expect(didYouMean('environment', keys)).toBeUndefined();
    expect(didYouMean('command', keys)).toBeUndefined();
  });
});

describe('unset variables: every one is listed, with the rest of the problems', () => {
  test('all unset variables, each at its path, several in one string too', () => {
    const err = parseError(
      serversYaml(
        '{ id: a, command: "${BIN}", env: { URL: "postgres://${DB_USER}:${DB_PASS}@db" } }',
        '{ id: b, command: node, args: ["--token=${B_TOKEN}"] }',
      ),
    );
    expect(pathsAndKinds(err.problems)).toEqual([
      ['servers[0].command', 'variable'],
      ['servers[0].env.URL', 'variable'],
      ['servers[0].env.URL', 'variable'],
      ['servers[1].args[0]', 'variable'],
    ]);
    ['BIN', 'DB_USER', 'DB_PASS', 'B_TOKEN'].forEach((name, i) => expect(err.problems[i]!.message).toContain(name));
  });

  test('what follows from an unset variable is not listed; other problems are', () => {
    const err = parseError(serversYaml('{ id: a, command: "${BIN}", timeoutMs: "${T}", start: later }'));
    expect(pathsAndKinds(err.problems)).toEqual([
      ['servers[0].command', 'variable'],
      ['servers[0].timeoutMs', 'variable'],
      ['servers[0].start', 'choice'],
    ]);
  });

  test('a mistyped reference is listed with the others', () => {
    const err = parseError(serversYaml('{ id: a, command: node, env: { A: "${GITHUB-TOKEN}", B: "${UNSET_B}" } }'));
    expect(pathsAndKinds(err.problems)).toEqual([
      ['servers[0].env.A', 'variable'],
      ['servers[0].env.B', 'variable'],
    ]);
  });

  test('commands that start no server still read unset server variables as empty', () => {
    const text = serversYaml('{ id: a, command: node, env: { T: "${UNSET_T}" } }');
    expect(parseConfig(text, FILE, {}, { withoutServerSecrets: true }).config.servers[0]!.env).toEqual({ T: '' });
  });
});
