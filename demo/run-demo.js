#!/usr/bin/env node
// npm run demo: a scripted agent session through mcp-gateway, printed step by step. It creates a
// fresh database in a temp folder, makes a "reader" API key, starts `mcp-gateway serve` on
// demo/gateway.yaml as Claude Desktop would, and acts as the agent.
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.join(HERE, '..', 'bin', 'mcp-gateway.js');
const CONFIG = path.join(HERE, 'gateway.yaml');
const dir = mkdtempSync(path.join(tmpdir(), 'mcp-gateway-demo-'));
const env = { ...process.env, MCP_GATEWAY_DEMO_DIR: dir, NODE_BIN: process.execPath };
delete env.MCP_GATEWAY_API_KEY;
delete env.MCP_GATEWAY_TOKEN;

const bold = (s) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);
let step = 0;
const heading = (title) => console.log(`\n${bold(`${++step}. ${title}`)}`);
const cli = (...args) => execFileSync(process.execPath, [BIN, ...args, '--config', CONFIG], { env, encoding: 'utf8' });

function show(result) {
  const error = result._meta?.['mcp-gateway/error'];
  const text = result.content?.find((c) => c.type === 'text')?.text ?? JSON.stringify(result);
  if (error)
    console.log(`   refused: ${error.code}${error.retryAfterMs ? ` (retry after ${error.retryAfterMs} ms)` : ''}\n   ${dim(text)}`);
  else console.log(`   ${result.isError ? 'tool error' : 'ok'}: ${text}`);
}

async function call(client, name, args) {
  console.log(`   → ${name} ${JSON.stringify(args)}`);
  show(await client.callTool({ name, arguments: args }));
}

try {
  console.log(bold('mcp-gateway demo') + dim(`  (database in ${dir})`));

  heading('An operator creates an API key for an agent with the "reader" role');
  const created = JSON.parse(cli('keys', 'create', 'demo agent', 'demo-agent', 'reader', '--json'));
  console.log(
    `   key ${created.id} for consumer "${created.consumerId}", roles [${created.roles}]  ${dim('(the key itself is printed once; only its bcrypt hash is stored)')}`,
  );

  heading('The agent starts `mcp-gateway serve` with that key, as Claude Desktop would');
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'serve', '--config', CONFIG],
    env: { ...env, MCP_GATEWAY_API_KEY: created.key, MCP_GATEWAY_LOG_LEVEL: 'warn' },
    stderr: 'inherit',
  });
  const client = new Client({ name: 'demo-agent', version: '1.0.0' });
  const t0 = performance.now();
  await client.connect(transport);
  console.log(
    `   connected to ${client.getServerVersion()?.name} ${client.getServerVersion()?.version} in ${Math.round(performance.now() - t0)} ms`,
  );

  heading('It lists its tools: only what the reader policy allows (no refund_order, no admin tools)');
  const { tools } = await client.listTools();
  for (const t of tools) console.log(`   - ${t.name}${t.description ? dim(`  ${shorten(t.description.split('\n')[0], 70)}`) : ''}`);

  heading('Allowed calls are forwarded to the demo server and answered');
  await call(client, 'demo__lookup_order', { orderId: 'A-1001' });
  await call(client, 'demo__get_forecast', { city: 'Lisbon' });

  heading(
    'Calls the gateway refuses, each with a code the agent can act on (refund_order, which a reader may never use, is answered as if it did not exist; the audit log below keeps the truth)',
  );
  await call(client, 'demo__refund_order', { orderId: 'A-1001', amount: 42.5 });
  await call(client, 'demo__lookup_order', { orderId: 1001 });
  await call(client, 'demo__get_weather', { city: 'Lisbon' });

  heading('A rate limit: get_forecast allows 3 calls a minute (one was made above)');
  for (const city of ['Porto', 'Faro', 'Braga']) await call(client, 'demo__get_forecast', { city });

  heading('A server that leaks its own secret: the gateway redacts it before the agent sees it');
  await call(client, 'demo__get_status', {});

  await client.close();

  heading('The operator reads the audit log of the session');
  process.stdout.write(cli('audit', 'log', '--limit', '20').trimEnd().replace(/^/gm, '   ') + '\n');

  heading('…and verifies its hash chain');
  process.stdout.write(cli('audit', 'verify').trimEnd().replace(/^/gm, '   ') + '\n');

  heading('Usage and cost per tool');
  process.stdout.write(cli('usage', '--by', 'tool').trimEnd().replace(/^/gm, '   ') + '\n');

  console.log(
    `\n${bold('Next:')} put the command on your PATH with \`npm install -g .\` in this folder, then ` +
      '`mcp-gateway init`, `mcp-gateway keys create` and `mcp-gateway claude-config` (README.md, "Use it with Claude Desktop").',
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/** `text` cut to `max` characters at a word boundary, with an ellipsis when it was cut. */
function shorten(text, max) {
  if (text.length <= max) return text;
  const cut = text.slice(0, max - 1);
  const space = cut.lastIndexOf(' ');
  return `${(space > max / 2 ? cut.slice(0, space) : cut).replace(/[\s,;:.]+$/, '')}…`;
}
