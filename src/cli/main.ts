/**
 * The command line (design §11), with commander. Each command lives in `commands/` and calls into
 * the library; this file only declares them and maps errors to exit codes.
 */
import { Command, CommanderError, Option } from 'commander';
import { VERSION } from '../version.js';
import { CliError } from './errors.js';

/**
 * A command's action, loaded when it runs: `serve` starts on every launch of Claude Desktop, and
 * must not pay for loading the modules of every other command.
 */
function lazy<M, K extends keyof M>(load: () => Promise<M>, name: K): (...args: unknown[]) => Promise<void> {
  return async (...args) => {
    await ((await load())[name] as (...a: unknown[]) => unknown)(...args);
  };
}
const serveModule = () => import('./commands/serve.js');
const keysModule = () => import('./commands/keys.js');
const auditModule = () => import('./commands/audit.js');
const serve = lazy(serveModule, 'serve');
const init = lazy(() => import('./commands/init.js'), 'init');
const check = lazy(() => import('./commands/check.js'), 'check');
const serversList = lazy(() => import('./commands/servers.js'), 'serversList');
const claudeConfig = lazy(() => import('./commands/claude-config.js'), 'claudeConfig');
const keysCreate = lazy(keysModule, 'keysCreate');
const keysList = lazy(keysModule, 'keysList');
const keysRevoke = lazy(keysModule, 'keysRevoke');
const keysRotate = lazy(keysModule, 'keysRotate');
const keysHash = lazy(keysModule, 'keysHash');
const auditLogCommand = lazy(auditModule, 'auditLogCommand');
const auditStatsCommand = lazy(auditModule, 'auditStatsCommand');
const auditVerifyCommand = lazy(auditModule, 'auditVerifyCommand');
const auditHeadCommand = lazy(auditModule, 'auditHeadCommand');
const auditExportCommand = lazy(auditModule, 'auditExportCommand');
const usageCommand = lazy(() => import('./commands/usage.js'), 'usageCommand');

const configOption = () => new Option('-c, --config <file>', 'gateway.yaml to use (default: $MCP_GATEWAY_CONFIG, else ./gateway.yaml)');
const jsonOption = () => new Option('--json', 'print JSON instead of a table');

export function buildProgram(): Command {
  const program = new Command('mcp-gateway')
    .description(
      'An MCP server that fronts your MCP servers: API keys and JWT, glob policies, rate limits, ' +
        'a tamper-evident audit log and usage metering. Agents start `mcp-gateway serve`.',
    )
    .version(VERSION, '-v, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('init')
    .description('write a commented gateway.yaml (with reader/admin example policies) and ignore the database in .gitignore')
    .option('-d, --dir <dir>', 'folder to write gateway.yaml into', '.')
    .addOption(new Option('-c, --config <file>', 'the file to write instead of <dir>/gateway.yaml'))
    .option('-f, --force', 'overwrite an existing file')
    .action(init);

  program
    .command('serve')
    .description(
      'run the gateway over stdio (what Claude Desktop or any MCP client starts; the credential comes ' +
        'from MCP_GATEWAY_API_KEY, a key from `keys create`, or MCP_GATEWAY_TOKEN, a JWT), or with --http ' +
        'as a shared Streamable HTTP service at /mcp (each request brings `Authorization: Bearer <key or JWT>`).',
    )
    .addOption(configOption())
    .option('--http [address]', 'serve Streamable HTTP on [host:]port (default: http.listen, else 127.0.0.1:8080)')
    .action(serve);

  program
    .command('check')
    .description('validate the config and its environment variables, start every server once, and report')
    .addOption(configOption())
    .addOption(jsonOption())
    .action(check);

  const servers = program.command('servers').description('the MCP servers in the config');
  servers.command('list').description('list the configured servers').addOption(configOption()).addOption(jsonOption()).action(serversList);

  program
    .command('claude-config')
    .description('print the Claude Desktop "mcpServers" entry that starts this gateway (absolute paths)')
    .addOption(configOption())
    .option('-n, --name <name>', 'name of the entry in Claude Desktop', 'mcp-gateway')
    .action(claudeConfig);

  const keys = program.command('keys').description('API keys (stored hashed in the database)');
  keys
    .command('create')
    .description('create a key and print it once')
    .argument('<name>', 'what the key is for, e.g. "Ana laptop"')
    .argument('<consumerId>', 'who is charged and audited, e.g. ana')
    .argument('<roles>', 'comma-separated roles, e.g. reader,analyst')
    .option('--expires <when>', 'expiry: a duration such as 90d, or a date')
    .option('--rate <perMinute>', "this key's own rate limit (calls per minute)")
    .addOption(configOption())
    .addOption(jsonOption())
    .action(keysCreate);
  keys.command('list').description('list keys (never their secrets)').addOption(configOption()).addOption(jsonOption()).action(keysList);
  keys
    .command('revoke')
    .description('revoke a key: running gateways refuse it from their next request')
    .argument('<keyId>', 'the key id shown by `keys list`')
    .addOption(configOption())
    .action(keysRevoke);
  keys
    .command('rotate')
    .description('replace a key: print a new key with the same consumer and roles, and revoke the old one')
    .argument('<keyId>', 'the key id shown by `keys list`')
    .addOption(configOption())
    .addOption(jsonOption())
    .action(keysRotate);
  keys
    .command('hash')
    .description('read a key on stdin and print its bcrypt hash, for `auth.apiKeys.static[].hash` (needs no config)')
    .addOption(configOption())
    .action(keysHash);

  const timeOptions = (cmd: Command) =>
    cmd
      .option('--since <time>', 'from this time on: an ISO date (2026-11-01) or a duration ago (24h, 7d)')
      .option('--until <time>', 'before this time: an ISO date or a duration ago');
  const audit = program.command('audit').description('the tamper-evident audit log (read-only: these commands never write the database)');
  timeOptions(
    audit
      .command('log')
      .description('list recorded requests, newest first')
      .option('-n, --limit <n>', 'most rows to show', '50')
      .option('--consumer <consumerId>', 'only this consumer')
      .option('--server <serverId>', 'only this server ("gateway" for its own tools)')
      .option('--tool <name>', "only this tool or prompt (the server's own name) or resource URI")
      .option(
        '--status <status>',
        'only this outcome: ok, error, denied, rate_limited, unauthenticated, invalid, timeout, unavailable, cancelled',
      ),
  )
    .addOption(configOption())
    .addOption(jsonOption())
    .action(auditLogCommand);
  timeOptions(audit.command('stats').description('counts by status, server and consumer, and latency percentiles'))
    .addOption(configOption())
    .addOption(jsonOption())
    .action(auditStatsCommand);
  audit
    .command('verify')
    .description('recompute the hash chain; exit 1 naming the first bad seq and why (HMAC key from audit.hmacKeyEnv)')
    .option(
      '--anchor <seq:hash>',
      'also prove the log still holds this entry (an earlier `audit head`; 16 or more leading hex digits of the hash are enough)',
    )
    .addOption(configOption())
    .addOption(jsonOption())
    .action(auditVerifyCommand);
  audit
    .command('head')
    .description('print the last entry as seq:hash; keep it elsewhere to anchor later verifications')
    .addOption(configOption())
    .addOption(jsonOption())
    .action(auditHeadCommand);
  timeOptions(
    audit
      .command('export')
      .description('write the log as JSON Lines or CSV, every column exactly as stored (to stdout unless --out)')
      .addOption(new Option('--format <format>', 'output format').choices(['jsonl', 'csv']).default('jsonl'))
      .option('-o, --out <file>', 'write to this file instead of stdout'),
  )
    .addOption(configOption())
    .action(auditExportCommand);

  timeOptions(
    program
      .command('usage')
      .description('calls, errors, refusals, latency and cost, per consumer, server or tool (whole UTC hours)')
      .argument('[consumerId]', 'only this consumer')
      .addOption(new Option('--by <group>', 'group rows by').choices(['consumer', 'server', 'tool']).default('consumer')),
  )
    .addOption(configOption())
    .addOption(jsonOption())
    .action(usageCommand);

  return program;
}

export async function main(argv: readonly string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
  } catch (err) {
    process.exitCode = report(err);
    // serve keeps running until its stdin closes; every other command ends here.
    if (process.exitCode !== 0) process.exit(process.exitCode);
  }
}

function report(err: unknown): number {
  if (err instanceof CommanderError) {
    // Help and version are not errors; commander has printed what it had to say.
    return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0 ? 0 : 2;
  }
  if (err instanceof CliError) {
    process.stderr.write(`mcp-gateway: ${err.message}\n`);
    return err.exitCode;
  }
  // By name, not instanceof: importing their modules here would load them for every command.
  if (err instanceof Error && (err.name === 'ConfigError' || err.name === 'StoreError')) {
    process.stderr.write(`mcp-gateway: ${err.message}\n`);
    return 2;
  }
  process.stderr.write(`mcp-gateway: ${(err as Error)?.stack ?? String(err)}\n`);
  return 1;
}
