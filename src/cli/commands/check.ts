/**
 * `mcp-gateway check`: everything `serve` would need, tried without an agent: the config and its
 * variables, the database and audit settings, and each enabled server started once and listed.
 * Exit 1 when a server does not start.
 */
import { loadConfig } from '../../config/load.js';
import { createLogger } from '../../log.js';
import { GATEWAY_SERVER_ID } from '../../config/schema.js';
import { GATEWAY_TOOL_NAMES } from '../../front/gateway-tools.js';
import { Registry } from '../../registry/registry.js';
import { gatewaySecrets } from '../../secrets/secrets.js';
import { Redactor } from '../../secrets/redactor.js';
import { openStore, type Store } from '../../store/store.js';
import { rolesNoPolicyNames, unnamedRolesWarning } from '../../policy/roles.js';
import { PolicyEngine } from '../../policy/index.js';
import { JwtVerifier } from '../../identity/jwt.js';
import { VERSION } from '../../version.js';
import { CliError, checkFailed } from '../errors.js';
import { printJson } from '../output.js';

export async function check(options: { config?: string; json?: boolean }): Promise<void> {
  const loaded = loadConfig(options.config);
  const { config } = loaded;
  let secrets;
  try {
    secrets = gatewaySecrets(config, process.env);
    new PolicyEngine(config.policies);
    if (config.auth.jwt) new JwtVerifier(config.auth.jwt);
  } catch (err) {
    throw new CliError(`${loaded.file}: ${(err as Error).message}`, 2);
  }
  const keyRoles: { id: string; roles: readonly string[] }[] = [];
  let store: Store | undefined;
  try {
    store = await openStore(config.database, { connections: 2 });
    if (config.audit.enabled) await store.checkChainMode({ hashChain: config.audit.hashChain, hmacKey: secrets.hmacKey });
    const now = Date.now();
    for (const k of await store.keys.list()) {
      if (!k.revokedAt && !k.disabled && !(k.expiresAt && Date.parse(k.expiresAt) <= now)) keyRoles.push({ id: k.id, roles: k.roles });
    }
  } catch (err) {
    throw checkFailed((err as Error).message);
  } finally {
    await store?.close();
  }
  for (const k of config.auth.apiKeys.static) if (k.enabled) keyRoles.push({ id: k.id, roles: k.roles });
  const unnamedRoles = keyRoles
    .map((k) => ({ key: k.id, roles: rolesNoPolicyNames(config.policies, k.roles) }))
    .filter((k) => k.roles.length > 0);

  const redactor = new Redactor(secrets.values);
  // Quiet: what went wrong with each server is in the report below, once (MCP_GATEWAY_LOG_LEVEL shows the log too).
  const logger = createLogger({ level: process.env['MCP_GATEWAY_LOG_LEVEL'] ?? 'silent', redactor });
  const registry = new Registry(config, {
    logger,
    redactor,
    clientInfo: { name: 'mcp-gateway-check', version: VERSION },
    hooks: { onCatalogChanged: () => {}, onNotification: () => {}, relayRequest: async () => ({}) },
  });
  const started = Date.now();
  const results = await Promise.all(
    registry.all().map(async (child) => {
      const t0 = Date.now();
      child.setClientCapabilities({});
      try {
        await child.start();
        return { child, ok: true, ms: Date.now() - t0 };
      } catch {
        return { child, ok: false, ms: Date.now() - t0 };
      }
    }),
  );

  const conflicts = registry.uriConflicts();
  const gatewayToolNames = config.naming.expose === 'direct' ? undefined : new Set(GATEWAY_TOOL_NAMES);
  const nameConflicts = registry.nameConflicts(gatewayToolNames);
  const report = results.map(({ child, ok, ms }) => {
    const s = child.status();
    return {
      id: s.id,
      ok,
      startMs: ms,
      tools: s.tools,
      prompts: s.prompts,
      resources: s.resources,
      resourceTemplates: s.resourceTemplates,
      excludedTools: s.excludedTools,
      catalogLimited: s.catalogLimited,
      isolation: s.isolation,
      error: s.lastError,
      stderrFirstError: ok ? null : s.stderrFirstError,
      stderrTail: ok ? [] : s.stderrTail.slice(-5),
    };
  });
  await registry.stop(1_000);

  if (options.json) {
    printJson({
      config: loaded.file,
      servers: report,
      disabled: registry.disabledServers().map((s) => s.id),
      uriConflicts: redactor.value(conflicts),
      nameConflicts: redactor.value(nameConflicts),
      rolesInNoPolicy: unnamedRoles,
    });
  } else {
    const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
    const out: string[] = [
      `config ${loaded.file}: valid (${count(config.servers.length, 'server', 'servers')}, ${count(config.policies.length, 'policy', 'policies')})`,
    ];
    for (const r of report) {
      out.push(
        r.ok
          ? `  ok      ${r.id}: ${r.tools} tools, ${r.prompts} prompts, ${r.resources} resources, ${r.resourceTemplates} templates (started in ${r.startMs} ms)`
          : `  FAILED  ${r.id}: ${r.error ?? 'did not start'}`,
      );
      out.push(`          isolation: ${r.isolation.mode === 'namespaces' ? r.isolation.reason : `NONE (${r.isolation.reason})`}`);
      for (const x of r.excludedTools) out.push(`          tool ${x.name} left out: ${x.reason}`);
      if (r.catalogLimited) out.push(`          catalog cut: ${r.catalogLimited}`);
      if (r.stderrFirstError && !(r.error ?? '').includes(r.stderrFirstError))
        out.push(`          stderr (first error): ${r.stderrFirstError}`);
      for (const line of r.stderrTail) out.push(`          stderr: ${line}`);
    }
    for (const s of registry.disabledServers()) out.push(`  off     ${s.id}: enabled: false`);
    for (const c of conflicts)
      out.push(redactor.text(`  warning: ${c.uri} is offered by ${c.servers.join(', ')}; ${c.servedBy} serves it (first in config order)`));
    for (const c of nameConflicts)
      out.push(
        redactor.text(
          `  ERROR   ${c.kind} name "${c.name}" would be shown for ${c.servers.map((id) => (id === GATEWAY_SERVER_ID ? 'the gateway' : `server "${id}"`)).join(' and ')}: give one of them a prefix (servers[].prefix)`,
        ),
      );
    for (const k of unnamedRoles) out.push(`  warning: ${unnamedRolesWarning(config.policies, k.roles, `key ${k.key}`)}`);
    if (config.auth.anonymous) out.push('  warning: auth.anonymous is true: callers without a credential get the "anonymous" role');
    if (config.policies.length === 0) out.push('  note: no policies: every call will be refused (default deny)');
    out.push(`checked in ${Date.now() - started} ms`);
    process.stdout.write(`${out.join('\n')}\n`);
  }
  if (nameConflicts.length > 0) {
    const c = nameConflicts[0]!;
    throw checkFailed(
      redactor.text(
        `${nameConflicts.length === 1 ? 'a name collides' : `${nameConflicts.length} names collide`}: ${c.kind} "${c.name}" of ${c.servers.join(' and ')}`,
      ),
    );
  }
  const failed = report.filter((r) => !r.ok).map((r) => r.id);
  if (failed.length > 0)
    throw checkFailed(`${failed.length === 1 ? 'a server' : `${failed.length} servers`} did not start: ${failed.join(', ')}`);
}
