#!/usr/bin/env node
// A bare relay for `npm run bench`: the SDK's low-level Server in front of the SDK's Client to one
// child, nothing else (no authentication, policy, limits, validation, redaction or audit). It shows
// what two stdio hops through the SDK cost by themselves on the machine the bench runs on.
// Usage: node bench/relay.js <child command> [args...]; tools are exposed as echo__<tool>.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const [command, ...args] = process.argv.slice(2);
const PREFIX = 'echo__';
const child = new Client({ name: 'bench-relay', version: '1.0.0' });
await child.connect(new StdioClientTransport({ command, args }));
const passthrough = z.object({}).passthrough();

const server = new Server({ name: 'bench-relay', version: '1.0.0' }, { capabilities: { tools: {} } });
server.setRequestHandler(ListToolsRequestSchema, async () => {
  const { tools } = await child.request({ method: 'tools/list', params: {} }, passthrough);
  return { tools: tools.map((t) => ({ ...t, name: PREFIX + t.name })) };
});
server.setRequestHandler(CallToolRequestSchema, async (req) =>
  child.request(
    { method: 'tools/call', params: { name: req.params.name.slice(PREFIX.length), arguments: req.params.arguments } },
    passthrough,
  ),
);
await server.connect(new StdioServerTransport());
process.stdin.on('end', () => process.exit(0));
