/**
 * `mcp-gateway serve`: the gateway over stdio. stdout carries only MCP messages; everything else
 * goes to stderr. It stops when stdin closes or on SIGINT/SIGTERM, and takes its children (their
 * process groups) with it.
 */
import { loadConfig } from '../../config/load.js';
import { AgentStdioTransport } from '../../front/stdio-transport.js';
import { createGateway, type Gateway } from '../../gateway.js';
import { AuthError } from '../../identity/authenticate.js';
import { createLogger } from '../../log.js';
import { auditTools } from '../../audit/tools.js';
import { CliError } from '../errors.js';
import { OpsListener, OpsRoutes } from '../../ops/listener.js';
import { HttpFront } from '../../front/http.js';
import { configSchema, type HttpConfig } from '../../config/schema.js';
import { VERSION } from '../../version.js';

/**
 * What the children are told an HTTP agent can do: each may, so the children offer everything;
 * a push for an agent that cannot take it is refused for that call (front/hub.ts).
 */
const HTTP_AGENT_CAPABILITIES = { sampling: {}, elicitation: { form: {}, url: {} }, roots: { listChanged: true } };

/** The `http` section's defaults, for `serve --http` without one. */
function httpSchemaDefaults(): HttpConfig {
  return configSchema.parse({ http: {} }).http!;
}

/** Time given to children to exit after stdin closes, before SIGTERM, then SIGKILL. */
const GRACE_MS = 2_000;

export async function serve(options: { config?: string; http?: string | boolean }): Promise<void> {
  const logger = createLogger();
  const loaded = loadConfig(options.config);
  logger.configure(loaded.config.log);
  // --http (with or without an address), or an `http` section: the shared Streamable HTTP front.
  const httpConfig = options.http !== undefined || loaded.config.http ? (loaded.config.http ?? httpSchemaDefaults()) : undefined;
  const httpListen = typeof options.http === 'string' ? options.http : (httpConfig?.listen ?? '127.0.0.1:8080');
  let gateway: Gateway;
  try {
    gateway = await createGateway({
      loaded,
      env: process.env,
      logger,
      extraTools: auditTools(loaded.config),
      mode: httpConfig ? 'http' : 'stdio',
    });
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }

  // The operations listener (metrics.listen): /metrics, /healthz, /readyz.
  let ops: OpsListener | undefined;
  if (loaded.config.metrics?.listen !== undefined && gateway.metrics) {
    try {
      const started = await OpsListener.start({
        listen: loaded.config.metrics.listen,
        token: loaded.config.metrics.token,
        metrics: gateway.metrics,
        readiness: gateway.readiness,
        log: logger.scoped('ops'),
      });
      ops = started.listener;
      logger.info(`metrics on http://${started.address}/metrics (and /healthz, /readyz)`);
    } catch (err) {
      await gateway.close(0);
      throw new CliError(`cannot listen for metrics on ${loaded.config.metrics.listen}: ${(err as Error).message}`, 1);
    }
  }

  let http: HttpFront | undefined;
  let stopping = false;
  let exitCode = 0;
  const stop = async (why: string, code: number, drainMs = 0) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    logger.info(`stopping (${why})`);
    // A hard deadline: whatever happens, the process (and with it the children) goes.
    setTimeout(
      () => {
        gateway.registry.killAll();
        process.exit(exitCode);
      },
      drainMs + 3 * GRACE_MS + 1_000,
    ).unref();
    // A signal: requests in progress may finish (and are recorded) while new ones are refused.
    http?.stopAccepting();
    if (drainMs > 0) {
      const left = await gateway.hub.drain(drainMs);
      if (left > 0) logger.warn(`${left} ${left === 1 ? 'request' : 'requests'} still in progress after ${drainMs} ms: ending them`);
    }
    // A credential still being checked (stdin closed at once) decides the exit code: a refused
    // one is exit 1 with its reason, whatever happened first.
    if (!http && (await settledWithin(gateway.session, 2 * GRACE_MS)) === 'rejected') exitCode = 1;
    try {
      // Answers produced during the drain reach their agents before the connections close.
      await http?.flushed(GRACE_MS);
      await http?.close();
      await ops?.close();
      await gateway.close(GRACE_MS);
    } catch (err) {
      logger.error(`while stopping: ${(err as Error).message}`);
    }
    process.exit(exitCode);
  };

  // Last resort: children are SIGKILLed with the gateway, even on an unexpected exit.
  process.on('exit', () => gateway.registry.killAll());
  const drainMs = loaded.config.limits.shutdownGraceMs;
  process.on('SIGINT', () => void stop('SIGINT', 0, drainMs));
  process.on('SIGTERM', () => void stop('SIGTERM', 0, drainMs));
  process.on('SIGHUP', () => void stop('SIGHUP', 0));
  process.on('uncaughtException', (err) => {
    logger.error(`uncaught: ${err.stack ?? err.message}`);
    void stop('internal error', 1);
  });
  process.on('unhandledRejection', (err) => logger.error(`unhandled rejection: ${(err as Error)?.stack ?? String(err)}`));

  if (httpConfig) {
    gateway.registry.start(HTTP_AGENT_CAPABILITIES);
    try {
      const started = await HttpFront.start({
        gateway,
        http: httpConfig,
        listen: httpListen,
        ops: new OpsRoutes({
          token: loaded.config.metrics?.token,
          metrics: loaded.config.metrics?.token ? gateway.metrics : null,
          readiness: gateway.readiness,
          log: logger.scoped('ops'),
        }),
        log: logger.scoped('http'),
      });
      http = started.front;
    } catch (err) {
      await ops?.close();
      await gateway.close(0);
      throw new CliError(`cannot listen on ${httpListen}: ${(err as Error).message}`, 1);
    }
    const servers = gateway.registry.all().length;
    logger.info(
      `mcp-gateway ${VERSION}: Streamable HTTP at ${http.url}, ${servers} ${servers === 1 ? 'server' : 'servers'} configured, config ${loaded.file}`,
    );
    return;
  }

  gateway.session.catch((err: unknown) => {
    const reason = err instanceof AuthError ? err.message : `could not verify the credential: ${(err as Error).message}`;
    // One line: the reason is what a user sees in Claude Desktop's log.
    // The reason in one line of the log's format (a log collector takes only JSON lines).
    if (logger.format === 'json') logger.error(reason.replace(/\s*\n\s*/g, ' '));
    else process.stderr.write(`mcp-gateway: ${reason.replace(/\s*\n\s*/g, ' ')}\n`);
    void stop('not authenticated', 1);
  });

  const transport = new AgentStdioTransport({
    maxMessageBytes: loaded.config.limits.maxMessageBytes,
    log: logger.scoped('stdio'),
    onEnd: () => void stop('stdin closed', 0),
    observe: (message) => gateway.front.observe(message),
  });
  await gateway.connect(transport);
  const servers = gateway.registry.all().length;
  if (!stopping) logger.info(`listening on stdio, ${servers} ${servers === 1 ? 'server' : 'servers'} configured`);
}

/** How a promise settles within `ms`: 'resolved', 'rejected', or 'pending' when it has not yet. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<'resolved' | 'rejected' | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), ms)));
  try {
    return await Promise.race([
      promise.then(
        () => 'resolved' as const,
        () => 'rejected' as const,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
