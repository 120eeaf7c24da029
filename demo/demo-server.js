#!/usr/bin/env node
// The demo child server shipped with mcp-gateway: a small shop back office over MCP (stdio).
// Read tools (get_forecast, lookup_order, get_status, echo) and one that moves money
// (refund_order), so the demo can show an allowed call, a forbidden one and a rate-limited one.
// get_status leaks the server's own token, to show the gateway redacting it. All data is made up.
// Written with the MCP SDK v2; serveStdio speaks the 2025 and the 2026-07-28 protocol alike.
import { McpServer } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { z } from 'zod';

const orders = {
  'A-1001': { status: 'shipped', total: 42.5, currency: 'EUR' },
  'A-1002': { status: 'processing', total: 18.0, currency: 'EUR' },
  'A-1003': { status: 'delivered', total: 99.9, currency: 'EUR' },
};

const server = new McpServer({ name: 'demo-shop', version: '1.0.0' });

server.registerTool(
  'echo',
  { title: 'Echo', description: 'Returns the message it is given.', inputSchema: z.object({ message: z.string() }) },
  async ({ message }) => ({ content: [{ type: 'text', text: message }] }),
);

server.registerTool(
  'get_forecast',
  {
    title: 'Delivery forecast',
    description: 'Expected delivery days for a city (made-up data).',
    inputSchema: z.object({ city: z.string().min(1) }),
    outputSchema: z.object({ city: z.string(), days: z.number() }),
    annotations: { readOnlyHint: true },
  },
  async ({ city }) => {
    const days = 1 + (city.length % 4);
    return { content: [{ type: 'text', text: `${city}: about ${days} day(s)` }], structuredContent: { city, days } };
  },
);

server.registerTool(
  'lookup_order',
  {
    title: 'Look up an order',
    description: 'Status and total of an order such as A-1001.',
    inputSchema: z.object({ orderId: z.string().regex(/^A-\d{4}$/) }),
    annotations: { readOnlyHint: true },
  },
  async ({ orderId }) => {
    const order = orders[orderId];
    if (!order) return { content: [{ type: 'text', text: `no order ${orderId}` }], isError: true };
    return { content: [{ type: 'text', text: JSON.stringify({ orderId, ...order }) }] };
  },
);

server.registerTool(
  'get_status',
  {
    title: 'Service status',
    description: 'Health of the shop backend (a careless server that includes its own API token).',
    annotations: { readOnlyHint: true },
  },
  async () => ({
    content: [{ type: 'text', text: JSON.stringify({ healthy: true, apiToken: process.env.SHOP_API_TOKEN ?? null }) }],
  }),
);

server.registerTool(
  'refund_order',
  {
    title: 'Refund an order',
    description: 'Refunds an order to the customer (moves money).',
    inputSchema: z.object({ orderId: z.string(), amount: z.number().positive() }),
    annotations: { destructiveHint: true },
  },
  async ({ orderId, amount }) => ({ content: [{ type: 'text', text: `refunded ${amount} on ${orderId}` }] }),
);

serveStdio(() => server);
process.stdin.on('end', () => process.exit(0));
