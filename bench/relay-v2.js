#!/usr/bin/env node
// A bare relay on SDK v2 for `npm run bench`: the low-level Server (both eras, through serveStdio)
// in front of the Client to one child, nothing else (no authentication, policy, limits,
// validation, redaction or audit), with results passed on raw as the gateway does. It shows what
// two stdio hops through SDK v2 cost by themselves on the machine the bench runs on.
// Usage: node bench/relay-v2.js <child command> [args...]; tools are exposed as echo__<tool>.
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { ResultSchema } from '@modelcontextprotocol/core';
import { Server } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';

const [command, ...args] = process.argv.slice(2);
const PREFIX = 'echo__';
const child = new Client({ name: 'bench-relay', version: '1.0.0' });
await child.connect(new StdioClientTransport({ command, args }));

const server = new Server({ name: 'bench-relay', version: '1.0.0' }, { capabilities: { tools: {} } });
server.fallbackRequestHandler = async (request) => {
  if (request.method === 'tools/list') {
    const { tools } = await child.request({ method: 'tools/list', params: {} }, ResultSchema);
    return { tools: tools.map((t) => ({ ...t, name: PREFIX + t.name })) };
  }
  if (request.method === 'tools/call') {
    const { name, arguments: toolArgs } = request.params;
    return child.request({ method: 'tools/call', params: { name: name.slice(PREFIX.length), arguments: toolArgs } }, ResultSchema);
  }
  throw new Error(`not relayed: ${request.method}`);
};
serveStdio(() => server, { legacy: 'serve' });
process.stdin.on('end', () => process.exit(0));
