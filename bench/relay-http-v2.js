#!/usr/bin/env node
// A bare Streamable HTTP relay on SDK v2 for `npm run bench:http`: one `createMcpHandler` (both
// eras, a server instance per request as the SDK has it), one shared Client to one child, nothing
// else (no authentication, policy, limits, validation, redaction, audit or usage). It is the floor
// for an SDK-based HTTP gateway on the machine the bench runs on.
// Usage: node bench/relay-http-v2.js <port> <child command> [args...]; tools are exposed as echo__<tool>.
import { createServer } from 'node:http';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { ResultSchema } from '@modelcontextprotocol/core';
import { Server, createMcpHandler } from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';

const [port, command, ...args] = process.argv.slice(2);
const PREFIX = 'echo__';
const child = new Client({ name: 'bench-relay', version: '1.0.0' });
await child.connect(new StdioClientTransport({ command, args }));

function factory() {
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
  return server;
}
const handler = toNodeHandler(createMcpHandler(factory));
const server = createServer((req, res) => void handler(req, res));
server.keepAliveTimeout = 60_000;
server.listen(Number(port), '127.0.0.1', () => process.stderr.write(`relay listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
