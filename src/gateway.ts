/**
 * The wiring of one gateway process: the modules are built here, in dependency order, and
 * connected. No module imports another stage; this file is the only place that knows them all.
 */
import type { Transport } from '@modelcontextprotocol/server';
import { audit } from './audit/stage.js';
import { ConfigError, type LoadedConfig } from './config/load.js';
import { JwtVerifier } from './identity/jwt.js';
import { Front } from './front/server.js';
import { FrontHub } from './front/hub.js';
import { gatewayToolIndex, type GatewayTool, type GatewayToolContext } from './front/gateway-tools.js';
import type { ChildServer } from './registry/child.js';
import { GatewayError } from './errors.js';
import { AuthError, authenticate, credentialSecret } from './identity/authenticate.js';
import { Session } from './identity/session.js';
import { identify } from './identity/stage.js';
import type { Logger } from './log.js';
import { meter } from './metering/stage.js';
import { compose, type Stage } from './pipeline/compose.js';
import type { CallContext, SessionRef } from './pipeline/context.js';
import { InputFlows } from './pipeline/flows.js';
import { RequestStates } from './pipeline/request-state.js';
import { settle } from './pipeline/settle.js';
import { PolicyEngine } from './policy/index.js';
import { authorize } from './policy/stage.js';
import { RateLimiter, type Limiter } from './ratelimit/limiter.js';
import { RedisRateLimiter } from './ratelimit/redis.js';
import { throttle } from './ratelimit/stage.js';
import { forward } from './registry/forward.js';
import { Registry } from './registry/registry.js';
import { Reaper } from './registry/reaper.js';
import { ArgumentValidator } from './registry/validate.js';
import { gatewaySecrets } from './secrets/secrets.js';
import { Redactor } from './secrets/redactor.js';
import { Metrics } from './ops/metrics.js';
import type { Readiness } from './ops/listener.js';
import type { KeyStore } from './store/keys.js';
import { openStore, type Store } from './store/store.js';
import { urlPassword } from './store/pg.js';
import { VERSION } from './version.js';

export interface GatewayOptions {
  readonly loaded: LoadedConfig;
  readonly env: NodeJS.ProcessEnv;
  readonly logger: Logger & { setRedactor?: (r: Redactor) => void };
  /** Gateway tools added by later modules (audit, usage). */
  readonly extraTools?: (deps: ExtraToolDeps) => readonly GatewayTool[];
  /**
   * stdio (the default): one agent, whose credential is in `env`. http: many agents, each request
   * bringing its own credential (front/http.ts).
   */
  readonly mode?: 'stdio' | 'http';
}

/** What the audit and usage tools get to work with. */
export interface ExtraToolDeps {
  readonly store: Store;
  /** Writes the usage counters held in memory (call before reading usage). */
  readonly flushUsage: () => void | Promise<void>;
  /** The audit chain's HMAC key, when the config sets one. */
  readonly hmacKey: Buffer | null;
}

export interface Gateway {
  /** The stdio agent's front. */
  readonly front: Front;
  readonly hub: FrontHub;
  readonly registry: Registry;
  readonly store: Store;
  readonly keys: KeyStore;
  readonly jwtVerifier: JwtVerifier | undefined;
  readonly redactor: Redactor;
  /** The stdio agent's session: resolves once its credential is verified, rejects with AuthError. */
  readonly session: Promise<Session>;
  readonly config: LoadedConfig['config'];
  /** The sealed states of input-required calls (the HTTP front names this replica in them). */
  readonly requestStates: RequestStates;
  /** A front for one HTTP agent: a 2025-era session, or one 2026-07-28 request. */
  newFront(session: SessionRef, era: 'legacy' | 'modern'): Front;
  /** Prometheus metrics, when the config asks for them (`metrics`). */
  readonly metrics: Metrics | null;
  /** Whether the gateway can serve: the store is writable and every eager server has settled. */
  readonly readiness: Readiness;
  /** Connects the front to the agent's transport. */
  connect(transport: Transport): Promise<void>;
  /** Stops the children (process groups), commits pending records, closes the database. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Builds a gateway. Throws (StoreError, AuditChainError, MissingSecretError) with a one-line
 * reason when it cannot run; the caller's credential is verified meanwhile (`session`), so the
 * agent's `initialize` is answered at once.
 */
export async function createGateway({ loaded, env, logger, extraTools, mode = 'stdio' }: GatewayOptions): Promise<Gateway> {
  const { config } = loaded;
  const secrets = gatewaySecrets(config, env);
  // The credential is redacted from the first line on, before it is even verified.
  const redactor = new Redactor([...secrets.values, ...credentialSecret(env), ...urlPassword(config.database)]);
  logger.setRedactor?.(redactor);

  // Built now, so an unusable public key stops the start with a config error, whatever the credential.
  let jwtVerifier: JwtVerifier | undefined;
  try {
    jwtVerifier = config.auth.jwt ? new JwtVerifier(config.auth.jwt) : undefined;
  } catch (err) {
    throw new ConfigError(loaded.file, 'auth.jwt.publicKey', (err as Error).message);
  }
  const store = await openStore(config.database, { maxBytes: config.limits.maxDatabaseBytes });
  try {
    const keys = store.keys;
    const session = (
      mode === 'stdio'
        ? authenticate(config, keys, env, jwtVerifier)
        : Promise.reject(new AuthError('over HTTP each request brings its credential'))
    ).then((auth) => {
      const id = auth.identity;
      logger.info(
        `mcp-gateway ${VERSION}: ${id.method} caller "${id.consumerId}"${id.keyId ? ` (key ${id.keyId})` : ''}, roles [${id.roles.join(', ')}], config ${loaded.file}`,
      );
      return new Session(auth.identity, auth.check, auth.rateLimit);
    });
    // Observed by the caller; this keeps an early failure from being reported as unhandled.
    session.catch(() => {});

    const policy = new PolicyEngine(config.policies);
    const validator = new ArgumentValidator(logger.scoped('validate'));
    const chain = config.audit.enabled ? { hashChain: config.audit.hashChain, hmacKey: secrets.hmacKey } : null;
    if (chain) await store.checkChainMode(chain);
    const recorder = store.recorder(chain, config.metering.enabled, logger.scoped('store'));

    // Calls waiting for the agent's input across protocol eras (registry/input.ts).
    // The key is the store's, so every replica on it can open the states another issued.
    const input = { flows: new InputFlows(), states: new RequestStates(undefined, await store.sharedSecret('request-state')) };
    // Spent once for every replica on the store, not once per process.
    input.states.spendShared = (nonce, expiresAt) => store.spendOnce(nonce, expiresAt);
    const hub = new FrontHub(input.flows, logger.scoped('front'), redactor, mode === 'stdio');
    const reaper = Reaper.start(logger.scoped('reaper'));
    const registry = new Registry(config, {
      groups: reaper ?? undefined,
      catalogCache: await store.catalog(logger.scoped('store')),
      logger,
      redactor,
      clientInfo: { name: 'mcp-gateway', version: VERSION },
      hooks: {
        onCatalogChanged: (child) => {
          warnNameConflicts(child);
          hub.onCatalogChanged(child);
        },
        onNotification: (child, n) => hub.onNotification(child, n),
        relayRequest: (child, request, signal) => hub.relayRequest(child, request, signal),
      },
    });

    const tools = gatewayToolIndex(extraTools?.({ store, flushUsage: () => recorder.flush(true), hmacKey: secrets.hmacKey }) ?? []);
    const expose = config.naming.expose;
    const toolContext: GatewayToolContext = {
      registry,
      validator,
      redactor,
      visibleTools: (identity) =>
        registry.tools().filter((t) => policy.mayAllow(identity, { server: t.server, kind: 'tool', name: t.entry.name })),
      conflicts: () => registry.uriConflicts(),
      nameConflicts: () => registry.nameConflicts(expose === 'direct' ? undefined : new Set(tools.keys())),
    };
    // Names a server shown under its own names shares with another (or a gateway tool): said once each.
    const warned = new Set<string>();
    const frontLog = logger.scoped('front');
    function warnNameConflicts(child: ChildServer): void {
      if (child.config.prefix !== '') return;
      for (const c of toolContext.nameConflicts()) {
        const key = `${c.kind}:${c.name}:${c.servers.join(',')}`;
        if (warned.has(key)) continue;
        warned.add(key);
        frontLog.warn(
          redactor.text(
            `${c.kind} name "${c.name}" is offered by ${c.servers.join(' and ')}; calls reach ${c.servedBy} (give one a prefix: servers[].prefix)`,
          ),
        );
      }
    }
    // Metrics (config `metrics`): the outermost stage, so it sees every outcome and the whole time.
    const metrics = config.metrics
      ? new Metrics({
          known: (server, kind, name) =>
            kind === 'admin'
              ? tools.has(name)
              : ((kind === 'tool' ? registry.get(server)?.catalog.toolsByName : registry.get(server)?.catalog.promptsByName)?.has(name) ??
                false),
          servers: () => registry.status(),
          sessions: () => (mode === 'stdio' ? (front.agentConnected ? 1 : 0) : hub.size),
        })
      : null;
    if (metrics) recorder.onCommit = (seconds) => metrics.observeCommit(seconds);
    const limiter: Limiter =
      config.rateLimit.store === 'redis' && config.redis
        ? new RedisRateLimiter(config.rateLimit, config.redis, logger.scoped('ratelimit'))
        : new RateLimiter(config.rateLimit);
    const stages: Stage<CallContext>[] = [];
    if (metrics) stages.push(metrics.stage());
    if (config.audit.enabled) stages.push(audit({ recorder, config: config.audit, redactor, log: logger.scoped('audit') }));
    if (config.metering.enabled) stages.push(meter(recorder, config.servers, redactor));
    stages.push(
      settle(logger),
      identify(),
      authorize(policy, (server, name) => registry.exposedName(server, name)),
      throttle(limiter),
      forward({
        registry,
        validator,
        redactor,
        input,
        admin: (ctx) => {
          const tool = tools.get(ctx.name);
          if (!tool) throw new GatewayError('UNKNOWN_TOOL', `the gateway has no tool "${ctx.name}"`);
          return tool.run(ctx, toolContext);
        },
      }),
    );

    const frontOptions = {
      config,
      registry,
      pipeline: compose(stages),
      policy,
      validator,
      redactor,
      gatewayTools: tools,
      toolContext,
      hub,
      logger,
      serverInfo: { name: 'mcp-gateway', version: VERSION },
    };
    const front = new Front({ ...frontOptions, session });
    const newFront = (known: SessionRef, era: 'legacy' | 'modern') =>
      new Front({ ...frontOptions, session: Promise.resolve(known), known, era });

    let closing: Promise<void> | null = null;
    return {
      front,
      hub,
      registry,
      store,
      keys,
      jwtVerifier,
      redactor,
      session,
      newFront,
      requestStates: input.states,
      config,
      metrics,
      readiness: () => {
        const checks: Record<string, string> = { store: recorder.refusal ?? 'ok' };
        for (const child of registry.all()) {
          if (child.config.start !== 'eager') continue;
          checks[`server:${child.id}`] = !registry.isStarted
            ? 'not started: servers start when the agent connects'
            : child.firstStartPending
              ? `starting (${child.state})`
              : child.state === 'failed'
                ? 'failed (settled)'
                : 'ok';
        }
        const ready = Object.values(checks).every((c) => c === 'ok' || c === 'failed (settled)');
        return { ready, checks };
      },
      connect: (transport) => front.connect(transport),
      close: (graceMs = 2_000) =>
        (closing ??= (async () => {
          await registry.stop(graceMs);
          reaper?.close();
          // Let requests failed by the stop settle and queue their records, then commit them.
          await new Promise((resolve) => setImmediate(resolve));
          await recorder.close();
          await store.close();
          await limiter.close?.();
        })()),
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}
