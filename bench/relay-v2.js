#!/usr/bin/env node
// A bare relay on SDK v2 for `npm run bench`: the low-level Server (both eras, through serveStdio)
// in front of the Client to one child, nothing else (no authentication, policy, limits,
// validation, redaction or audit), with results passed on raw as the gateway does. It shows what
// two stdio hops through SDK v2 cost by themselves on the machine the bench runs on.
// Usage: node bench/relay-v2.js <child command> [args...]; tools are exposed as echo__<tool>.
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { connectChild, relayServer } from './relay-server.js';

const [command, ...args] = process.argv.slice(2);
const server = relayServer(await connectChild(command, args));
serveStdio(() => server, { legacy: 'serve' });
process.stdin.on('end', () => process.exit(0));
