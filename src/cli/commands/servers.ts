/** `mcp-gateway servers list`: the servers in the config (without starting them). */
import { loadConfig } from '../../config/load.js';
import { gatewaySecrets } from '../../secrets/secrets.js';
import { Redactor } from '../../secrets/redactor.js';
import { printJson } from '../output.js';

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
  if (options.json) {
    printJson({ servers: rows });
    return;
  }
  if (rows.length === 0) {
    process.stdout.write('(no servers in the config)\n');
    return;
  }
  // A block per server: its command line and folder are shown whole (a table would cut the
  // script and folder, which are what tell the servers apart).
  const out: string[] = [];
  for (const r of rows) {
    const facts = [r.enabled ? r.start : 'disabled', r.name !== r.id ? r.name : null].filter((f) => f !== null);
    out.push(`${r.id}  (${facts.join(', ')})`);
    out.push(`  command  ${r.command}`);
    out.push(`  cwd      ${r.cwd ?? '.'}`);
    if (r.env.length > 0) out.push(`  env      ${r.env.join(', ')}`);
    if (r.inheritEnv.length > 0) out.push(`  inherits ${r.inheritEnv.join(', ')}`);
  }
  out.push(`${rows.length} ${rows.length === 1 ? 'server' : 'servers'}`);
  process.stdout.write(`${out.join('\n')}\n`);
}
