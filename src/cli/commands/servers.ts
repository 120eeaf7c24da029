/** `mcp-gateway servers list`: the servers in the config (without starting them). */
import { loadConfig } from '../../config/load.js';
import { gatewaySecrets } from '../../secrets/secrets.js';
import { Redactor } from '../../secrets/redactor.js';
import { printJson, printTable } from '../output.js';

export async function serversList(options: { config?: string; json?: boolean }): Promise<void> {
  const { config } = loadConfig(options.config, process.env, process.cwd(), { withoutServerSecrets: true });
  let redactor: Redactor;
  try {
    redactor = new Redactor(gatewaySecrets(config, process.env).values);
  } catch {
    redactor = new Redactor(config.servers.flatMap((s) => Object.entries(s.env).map(([name, value]) => ({ name, value }))));
  }
  const rows = config.servers.map((s) => ({
    id: s.id,
    name: s.name ?? s.id,
    enabled: s.enabled,
    start: s.start,
    command: redactor.text([s.command, ...s.args].join(' ')),
    cwd: s.cwd,
    env: Object.keys(s.env),
    inheritEnv: s.inheritEnv,
    timeoutMs: s.timeoutMs,
  }));
  if (options.json) printJson({ servers: rows });
  else
    printTable(
      rows.map((r) => ({ ...r, enabled: r.enabled ? 'yes' : 'no', env: r.env.join(',') })),
      ['id', 'name', 'enabled', 'start', 'command', 'env'],
    );
}
