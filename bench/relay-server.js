// The server side of the bare SDK v2 relays of the benches (relay-v2.js over stdio,
// relay-http-v2.js over Streamable HTTP): the low-level Server, every tool of one child under
// `echo__`, results passed on raw as the gateway does, nothing else.
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { ResultSchema } from '@modelcontextprotocol/core';
import { Server } from '@modelcontextprotocol/server';

const PREFIX = 'echo__';

/** Connects one client to the child `command args` (shared by every server instance). */
export async function connectChild(command, args) {
  const child = new Client({ name: 'bench-relay', version: '1.0.0' });
  await child.connect(new StdioClientTransport({ command, args }));
  return child;
}

/** A server instance relaying tools/list and tools/call to `child`. */
export function relayServer(child) {
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
