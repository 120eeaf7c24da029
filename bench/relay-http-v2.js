#!/usr/bin/env node
// A bare Streamable HTTP relay on SDK v2 for `npm run bench:http`: one `createMcpHandler` (both
// eras, a server instance per request as the SDK has it), one shared Client to one child, nothing
// else (no authentication, policy, limits, validation, redaction, audit or usage). It is the floor
// for an SDK-based HTTP gateway on the machine the bench runs on.
// Usage: node bench/relay-http-v2.js <port> <child command> [args...]; tools are exposed as echo__<tool>.
import { createServer } from 'node:http';
import { createMcpHandler } from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';
import { connectChild, relayServer } from './relay-server.js';

const [port, command, ...args] = process.argv.slice(2);
const child = await connectChild(command, args);
const factory = () => relayServer(child);
const handler = toNodeHandler(createMcpHandler(factory));
const server = createServer((req, res) => void handler(req, res));
server.keepAliveTimeout = 60_000;
server.listen(Number(port), '127.0.0.1', () => process.stderr.write(`relay listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
