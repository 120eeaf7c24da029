/**
 * The one schema of gateway.yaml (design §2). Every default lives here; the config type is
 * inferred from it. Objects are strict: an unknown key is an error, so a typo can never silently
 * drop a policy or a limit.
 */
import { z } from 'zod';
import { globProblem } from './glob.js';
import { compileSafeRegex } from './safe-regex.js';

/** Numbers may arrive as strings after `${VAR}` interpolation ("60000"). */
const num = (schema: z.ZodNumber) =>
  z.preprocess((v) => (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v), schema);
const bool = () => z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean());
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => num(z.number().int().min(min).max(max));

export const SERVER_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,31}$/;
/** Server id of the gateway's own tools in policies; no child may use it. */
export const GATEWAY_SERVER_ID = 'gateway';

const serverId = z
  .string()
  .regex(SERVER_ID_PATTERN, 'must match [a-z0-9][a-z0-9-]{0,31} (lowercase letters, digits, "-")')
  .refine((id) => id !== GATEWAY_SERVER_ID, `"${GATEWAY_SERVER_ID}" is reserved for the gateway's own tools`);

const nonEmpty = z.string().min(1, 'must not be empty');
/** A glob (see glob.ts); an invalid one is a config error here, not a surprise at startup. */
const glob = z.string().superRefine((g, ctx) => {
  const problem = globProblem(g);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});
/** An ISO 8601 date-time; YAML may hand us a Date already. */
const dateTime = z.preprocess(
  (v) => (v instanceof Date ? v.toISOString() : v),
  z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 date-time such as 2027-06-30T00:00:00Z'),
);

const restartSchema = z
  .strictObject({
    maxRestarts: int(0).default(5),
    windowMs: int(1).default(60_000),
    backoffMs: int(0).default(500),
    maxBackoffMs: int(0).default(30_000),
  })
  .prefault({});

const pricingSchema = z.strictObject({
  perCall: num(z.number().min(0)).default(0),
  tools: z.record(glob, num(z.number().min(0))).default({}),
});

export const serverSchema = z.strictObject({
  id: serverId,
  name: z.string().optional(),
  command: nonEmpty,
  args: z.array(z.string()).default([]),
  cwd: z.string().optional(),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name'), z.string()).default({}),
  inheritEnv: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')).default([]),
  enabled: bool().default(true),
  start: z.enum(['eager', 'lazy']).default('eager'),
  timeoutMs: int(1).default(60_000),
  /** Time allowed for spawn + initialize + first catalog; cold `npx -y` children need more. */
  startTimeoutMs: int(1).default(60_000),
  restart: restartSchema,
  pricing: pricingSchema.optional(),
  /**
   * auto: on Linux, own user, pid and mount namespaces (sandbox.ts), and a warning where the OS
   * cannot; required: the same, but the server does not start where it cannot; none: no isolation.
   */
  sandbox: z.enum(['auto', 'required', 'none']).default('auto'),
  /** Globs on the `_meta` keys of a request that reach this server; unset: every key. */
  metaAllow: z.array(glob).optional(),
  /**
   * The protocol era the server speaks: legacy (2025, `initialize`; no probe), modern
   * (2026-07-28), or auto (probed once, the verdict remembered in the database).
   */
  protocol: z.enum(['legacy', 'modern', 'auto']).default('legacy'),
  /**
   * What the agent sees before the server's tool and prompt names (then the separator): by default
   * its id; "" shows the server's own names (a gateway in front of one server).
   */
  prefix: z
    .string()
    .regex(/^$|^[a-z0-9][a-z0-9-]{0,31}$/, 'must be "" or match [a-z0-9][a-z0-9-]{0,31} (lowercase letters, digits, "-")')
    .optional(),
  /**
   * The server's roots, answered by the gateway to its `roots/list` whoever calls (the agent is not
   * asked). Unset: asked of the agent whose call the server is serving; outside any call, refused.
   */
  roots: z
    .array(
      z.strictObject({
        uri: z.string().regex(/^file:\/\/[^\s]*$/, 'a file:// URI (the protocol allows no other roots)'),
        name: z.string().optional(),
      }),
    )
    .optional(),
  /**
   * shared (default): one process serves every agent. consumer: each consumer gets a process of
   * its own (for servers that hold per-user state), started on its first call, ended when idle.
   */
  isolation: z.enum(['shared', 'consumer']).default('shared'),
  /** With isolation: consumer, the most processes at once and how long an unused one lives. */
  instances: z
    .strictObject({
      max: int(1, 10_000).default(32),
      idleMs: int(1_000).default(10 * 60_000),
    })
    .prefault({}),
});

const rateSchema = z.strictObject({
  perMinute: num(z.number().positive()),
  burst: num(z.number().min(1, 'must be at least 1 (a bucket smaller than one call admits nothing)')).optional(),
});

const staticKeySchema = z
  .strictObject({
    // 25 at most: gw_<id>_<43-character secret> must fit the 72 bytes bcrypt reads. "_" separates
    // the parts of a key, so an id has letters, digits and "-" only.
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,24}$/, 'must be 1-25 letters, digits or "-" (it is the keyId in gw_<keyId>_<secret>)'),
    name: z.string().optional(),
    consumerId: nonEmpty,
    roles: z.array(nonEmpty).default([]),
    hash: z
      .string()
      .regex(/^\$2[aby]\$\d\d\$.{53}$/, 'must be a bcrypt hash (from `mcp-gateway keys hash`)')
      .optional(),
    key: z.string().optional(),
    expiresAt: dateTime.optional(),
    enabled: bool().default(true),
    rateLimit: rateSchema.optional(),
  })
  .refine((k) => (k.hash === undefined) !== (k.key === undefined), {
    message: 'give exactly one of hash or key',
  });

const JWT_ALGORITHMS = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;

const jwtSchema = z
  .strictObject({
    issuer: z.string().optional(),
    audience: z.union([z.string(), z.array(z.string()).min(1)]).optional(),
    jwksUri: z.url().optional(),
    publicKey: z.string().optional(),
    secret: z.string().optional(),
    algorithms: z
      .array(
        z.string().refine((a) => (JWT_ALGORITHMS as readonly string[]).includes(a), {
          message: `must be one of ${JWT_ALGORITHMS.join(', ')} ("none" is never accepted)`,
        }),
      )
      .min(1, 'list at least one algorithm'),
    consumerClaim: nonEmpty.default('sub'),
    rolesClaim: nonEmpty.default('roles'),
    clockToleranceSec: int(0, 300).default(30),
  })
  .superRefine((j, ctx) => {
    const sources = [j.jwksUri, j.publicKey, j.secret].filter((s) => s !== undefined).length;
    if (sources !== 1) ctx.addIssue({ code: 'custom', message: 'give exactly one of jwksUri, publicKey or secret' });
    const hmac = j.algorithms.some((a) => a.startsWith('HS'));
    const asym = j.algorithms.some((a) => !a.startsWith('HS'));
    // Mixing families is how HS/RS confusion attacks start: the public key used as an HMAC secret.
    if (hmac && asym) ctx.addIssue({ code: 'custom', path: ['algorithms'], message: 'do not mix HS* with asymmetric algorithms' });
    if (hmac && j.secret === undefined) ctx.addIssue({ code: 'custom', path: ['algorithms'], message: 'HS* algorithms need secret' });
    if (asym && j.secret !== undefined)
      ctx.addIssue({ code: 'custom', path: ['algorithms'], message: 'a secret only verifies HS* algorithms' });
    if (j.secret !== undefined && j.secret.length < 32) {
      ctx.addIssue({ code: 'custom', path: ['secret'], message: 'must be at least 32 characters' });
    }
  });

const authSchema = z
  .strictObject({
    apiKeys: z.strictObject({ static: z.array(staticKeySchema).default([]) }).prefault({}),
    jwt: jwtSchema.optional(),
    anonymous: bool().default(false),
  })
  .prefault({});

/** Condition operators of `when` (design §4). */
const conditionSchema = z
  .strictObject({
    eq: z.unknown().optional(),
    ne: z.unknown().optional(),
    /** A list, or a template that resolves to one: `in: "${consumer.roles}"`. */
    in: z.union([z.array(z.unknown()), z.string()]).optional(),
    notIn: z.union([z.array(z.unknown()), z.string()]).optional(),
    glob: glob.optional(),
    /** A glob on a POSIX absolute path, matched after `.`, `..` and `//` are resolved. */
    path: glob.optional(),
    regex: z.string().optional(),
    lt: num(z.number()).optional(),
    lte: num(z.number()).optional(),
    gt: num(z.number()).optional(),
    gte: num(z.number()).optional(),
    exists: bool().optional(),
    maxLength: int(0).optional(),
  })
  .superRefine((c, ctx) => {
    const ops = Object.keys(c).filter((k) => (c as Record<string, unknown>)[k] !== undefined);
    if (ops.length === 0)
      ctx.addIssue({
        code: 'custom',
        message: 'give at least one operator (eq, ne, in, notIn, glob, path, regex, lt, lte, gt, gte, exists, maxLength)',
      });
    if (c.regex !== undefined) {
      try {
        // Templates (${consumer.id}) are filled in per call; check the pattern around them with
        // the engine that runs it (linear time: no lookaround, no backreferences).
        compileSafeRegex(c.regex.replace(/\$\{[^}]*\}/g, 'x'), { anchored: true });
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['regex'], message: `is not a usable regular expression: ${(err as Error).message}` });
      }
    }
  });

const ruleSchema = z
  .strictObject({
    server: glob.optional(),
    tool: glob.optional(),
    prompt: glob.optional(),
    resource: glob.optional(),
    action: z.enum(['allow', 'deny', 'forbid']),
    when: z
      .record(z.string().regex(/^args\.[^.\s]+(\.[^.\s]+)*$/, 'must be args.<dotted.path> (conditions are on arguments)'), conditionSchema)
      .optional(),
  })
  .refine((r) => [r.tool, r.prompt, r.resource].filter((x) => x !== undefined).length <= 1, {
    message: 'a rule names at most one of tool, prompt, resource',
  });

export const policySchema = z.strictObject({
  id: nonEmpty,
  description: z.string().optional(),
  roles: z.array(nonEmpty).min(1, 'list at least one role ("*" for everyone)'),
  rules: z.array(ruleSchema).min(1, 'list at least one rule'),
});

const rateRuleSchema = z.strictObject({
  server: glob.optional(),
  tool: glob.optional(),
  roles: z.array(nonEmpty).optional(),
  perMinute: num(z.number().positive()),
  burst: num(z.number().min(1, 'must be at least 1 (a bucket smaller than one call admits nothing)')).optional(),
  per: z.enum(['consumer', 'key', 'global']).default('consumer'),
});

const rateLimitSchema = z
  .strictObject({
    enabled: bool().default(true),
    defaultPerMinute: num(z.number().positive()).default(60),
    burst: num(z.number().min(1, 'must be at least 1 (a bucket smaller than one call admits nothing)')).optional(),
    rules: z.array(rateRuleSchema).default([]),
    /**
     * memory: buckets in this process. redis: buckets in Redis (`redis.url`), one atomic script on
     * the server's clock, exact across replicas.
     */
    store: z.enum(['memory', 'redis']).default('memory'),
    /** Redis unreachable: refuse the request (closed, the default) or let it through (open). */
    onStoreError: z.enum(['closed', 'open']).default('closed'),
  })
  .prefault({});

const auditSchema = z
  .strictObject({
    enabled: bool().default(true),
    hashChain: bool().default(true),
    hmacKeyEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
      .optional(),
    recordArguments: bool().default(true),
    recordResults: bool().default(true),
    maxRecordBytes: int(64).default(16_384),
    redactKeys: z.array(nonEmpty).default(['password', 'token', 'secret', 'apiKey', 'authorization']),
  })
  .prefault({});

const namingSchema = z
  .strictObject({
    separator: z
      .string()
      .min(1)
      .max(4)
      .regex(/^[A-Za-z0-9_.\-]+$/, 'tool names allow only letters, digits, "_", "-" and "."')
      // A separator of only [a-z0-9-] could occur inside a server id and make names ambiguous.
      .refine((s) => /[^a-z0-9-]/.test(s), 'must contain a character that server ids cannot (such as "_" or ".")')
      .default('__'),
    expose: z.enum(['direct', 'meta', 'both']).default('both'),
  })
  .prefault({});

const limitsSchema = z
  .strictObject({
    /** Largest JSON-RPC message accepted from the agent or from a child, in bytes. */
    maxMessageBytes: int(1024).default(16 * 1024 * 1024),
    /** How long a list request waits for eager servers that are still starting. */
    listWaitMs: int(0).default(3_000),
    /**
     * Largest size of the database file; at the limit the gateway records what is in flight
     * and refuses new requests until space is made. Unset: only the disk limits it.
     */
    maxDatabaseBytes: int(1_048_576).optional(),
    /** Longest tool or prompt name, or resource URI, a request may carry (UTF-8 bytes). */
    maxNameBytes: int(64, 1_048_576).default(8_192),
    /** Most tools, prompts, resources or templates (each) kept of one server's catalog. */
    maxCatalogEntries: int(1).default(10_000),
    /** Most bytes (JSON) of one server's catalog kept in memory; the rest is left out, with a status. */
    maxCatalogBytes: int(65_536).default(8 * 1024 * 1024),
    /** On SIGTERM/SIGINT, how long requests in progress are given to finish (new ones are refused). */
    shutdownGraceMs: int(0, 10 * 60_000).default(10_000),
  })
  .prefault({});

/** host:port, [v6]:port or a port alone (bound to 127.0.0.1). */
const listenSchema = z
  .union([
    z.string().regex(/^(?:\[[0-9a-fA-F:.]+\]|[^:[\]\s]*):\d{1,5}$|^\d{1,5}$/, 'must be host:port or a port'),
    z.number().int().min(0).max(65_535),
  ])
  .transform(String);

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });

/** The Streamable HTTP front (design §12): `serve --http` or this section. */
const httpSchema = z.strictObject({
  /** Where to listen; `serve --http [host:]port` wins. A port alone binds 127.0.0.1. */
  listen: listenSchema.optional(),
  /**
   * The gateway's URL as agents reach it (behind a proxy: the proxy's), e.g. https://mcp.example.com/mcp.
   * It is the OAuth resource: JWTs must name it in `aud`, and the protected-resource metadata says it.
   */
  publicUrl: httpUrl.optional(),
  /**
   * This replica's MCP URL as the other replicas reach it (not through the load balancer): a
   * 2026-07-28 agent's retry of a call whose child waits here is forwarded to it. Default: the
   * bound address (with a wildcard address, this machine's hostname).
   */
  replicaUrl: httpUrl.optional(),
  /** Host header names accepted; unset: localhost names, and publicUrl's host when set. */
  allowedHosts: z.array(nonEmpty).optional(),
  /** Origin header hosts accepted from browsers ("https://*" for any https origin); unset: as allowedHosts. */
  allowedOrigins: z.array(nonEmpty).optional(),
  /** Serve HTTPS with this certificate and key (PEM files); otherwise plain HTTP, for loopback or a TLS proxy. */
  tls: z.strictObject({ cert: nonEmpty, key: nonEmpty }).optional(),
  /** Largest request body accepted (413 above it). */
  maxBodyBytes: int(1_024, 256 * 1024 * 1024).default(4 * 1024 * 1024),
  /** Take the client IP from X-Forwarded-For (the last hop's): only behind a proxy that sets it. */
  trustProxy: bool().default(false),
  /** How long a client may take to send its request headers, and its whole request. */
  headersTimeoutMs: int(1_000, 600_000).default(10_000),
  requestTimeoutMs: int(1_000, 3_600_000).default(60_000),
  /** Keep-alive connections with nothing to do are closed after this long. */
  idleTimeoutMs: int(1_000, 3_600_000).default(60_000),
  /** Requests one consumer may have in progress at once (429 above). */
  maxConcurrentPerConsumer: int(1, 100_000).default(64),
  /** Requests without a valid credential one client IP may make a minute (429 above). */
  unauthenticatedPerMinute: int(1, 1_000_000).default(60),
  /** 2025-era agents' sessions. */
  sessions: z
    .strictObject({
      /** A session with no request for this long ends. */
      idleMs: int(1_000).default(30 * 60_000),
      /** A session ends this long after it opened, however busy (its sealed id opens nowhere after). */
      maxAgeMs: int(60_000).default(24 * 3_600_000),
      maxPerConsumer: int(1, 100_000).default(20),
      maxTotal: int(1, 1_000_000).default(1_000),
    })
    .prefault({}),
  /** OAuth 2.1 resource server (MCP authorization): what the protected-resource metadata names. */
  oauth: z
    .strictObject({
      /** Authorization servers that issue tokens for this gateway (RFC 9728 `authorization_servers`). */
      authorizationServers: z.array(httpUrl).min(1),
      /** Scopes every token must carry (403 insufficient_scope otherwise). */
      requiredScopes: z.array(nonEmpty).default([]),
      /** Scopes the metadata lists as supported; default: requiredScopes. */
      scopesSupported: z.array(nonEmpty).optional(),
    })
    .optional(),
});

export const configSchema = z
  .strictObject({
    database: nonEmpty
      .refine((d) => !/^[a-z][a-z0-9+.-]*:\/\//i.test(d) || /^postgres(?:ql)?:\/\//i.test(d), {
        message: 'a SQLite file path or a postgres:// URL (no other database engine is supported)',
      })
      .refine((d) => !/^postgres(?:ql)?:\/\//i.test(d) || URL.canParse(d), { message: 'is not a valid postgres:// URL' })
      .default('./mcp-gateway.db'),
    naming: namingSchema,
    auth: authSchema,
    servers: z.array(serverSchema).default([]),
    policies: z.array(policySchema).default([]),
    rateLimit: rateLimitSchema,
    audit: auditSchema,
    metering: z.strictObject({ enabled: bool().default(true) }).prefault({}),
    limits: limitsSchema,
    /** The operations listener: /metrics (Prometheus), /healthz, /readyz. Unset: none. */
    metrics: z
      .strictObject({
        /** A listener of its own for /metrics, /healthz, /readyz. Unset: /metrics only on the HTTP front, behind `token`. */
        listen: listenSchema.optional(),
        /** When set, /metrics needs `Authorization: Bearer <token>` (required for /metrics on the HTTP front). */
        token: z.string().min(16, 'must be at least 16 characters').optional(),
      })
      .refine(
        (m) => m.listen !== undefined || m.token !== undefined,
        'set listen (a listener of its own) or token (/metrics on the HTTP front)',
      )
      .optional(),
    http: httpSchema.optional(),
    /** Redis, for rateLimit.store: redis. */
    redis: z
      .strictObject({
        url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'),
        /** Prefix of every key the gateway writes (several deployments can share one Redis). */
        keyPrefix: z.string().default('mcp-gateway:'),
        /** How long a bucket check may take before the store counts as unreachable. */
        timeoutMs: int(10, 60_000).default(1_000),
      })
      .optional(),
    log: z
      .strictObject({
        /** MCP_GATEWAY_LOG_LEVEL, when set, wins. */
        level: z.enum(['debug', 'info', 'warn', 'error', 'silent']).optional(),
        /** json: one JSON object a line on stderr (time, level, service, scope, msg). */
        format: z.enum(['text', 'json']).default('text'),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    const dup = (ids: readonly string[], path: readonly (string | number)[]) => {
      const seen = new Set<string>();
      ids.forEach((id, i) => {
        if (seen.has(id)) ctx.addIssue({ code: 'custom', path: [...path, i, 'id'], message: `duplicate id "${id}"` });
        seen.add(id);
      });
    };
    dup(
      c.servers.map((s) => s.id),
      ['servers'],
    );
    // Two servers shown under one prefix would make their names collide.
    const prefixes = new Map<string, string>();
    c.servers.forEach((s, i) => {
      const prefix = s.prefix ?? s.id;
      if (prefix === '' || !s.enabled) return;
      const other = prefixes.get(prefix);
      if (other !== undefined && other !== s.id)
        ctx.addIssue({
          code: 'custom',
          path: ['servers', i, 'prefix'],
          message: `servers "${other}" and "${s.id}" would both be shown as "${prefix}${c.naming.separator}…": give one another prefix`,
        });
      else prefixes.set(prefix, s.id);
    });
    dup(
      c.policies.map((p) => p.id),
      ['policies'],
    );
    if (c.rateLimit.store === 'redis' && !c.redis)
      ctx.addIssue({ code: 'custom', path: ['rateLimit', 'store'], message: 'store: redis needs redis.url' });
    dup(
      c.auth.apiKeys.static.map((k) => k.id),
      ['auth', 'apiKeys', 'static'],
    );
  });

export type GatewayConfig = z.infer<typeof configSchema>;
export type ServerConfig = z.infer<typeof serverSchema>;
export type PolicyConfig = z.infer<typeof policySchema>;
export type RuleConfig = PolicyConfig['rules'][number];
export type ConditionConfig = NonNullable<RuleConfig['when']>[string];
export type RateLimitConfig = GatewayConfig['rateLimit'];
export type AuditConfig = GatewayConfig['audit'];
export type HttpConfig = z.infer<typeof httpSchema>;
export type JwtConfig = NonNullable<GatewayConfig['auth']['jwt']>;
export type StaticKeyConfig = GatewayConfig['auth']['apiKeys']['static'][number];
