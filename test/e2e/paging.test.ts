/**
 * List calls drain every page of every child (design §9): a fixture child with 500 tools served in
 * pages of 50 shows all 500 through a real gateway, each entry and call result keeping the
 * fields the gateway does not know.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, startGateway, testConfig, type RunningGateway, type Obj, anyResult } from '../helpers/gateway.js';

/** Lists (and requests that route by catalog) wait this long for children still starting: the machine may be slow. */
const PATIENT = { limits: { listWaitMs: 30_000 } };
const pad = (n: number) => String(n).padStart(3, '0');

describe('a child with 500 tools in pages of 50', () => {
  let gw: RunningGateway;

  beforeAll(async () => {
    gw = await startGateway({ config: testConfig({ ...PATIENT, servers: [{ id: 'many', ...fixture('many-tools.js') }] }) });
  });

  afterAll(async () => {
    await gw?.close();
  });

  it('lists all 500 tools, in order, each with its unknown field "x-extra"', async () => {
    const result = await gw.client.request({ method: 'tools/list', params: {} }, anyResult);
    const tools = (result['tools'] as Obj[]).filter((t) => String(t['name']).startsWith('many__'));
    expect(tools).toHaveLength(500);
    expect(tools.map((t) => t['name'])).toEqual(Array.from({ length: 500 }, (_, i) => `many__tool_${pad(i)}`));
    tools.forEach((t, i) => {
      expect(t).toEqual({
        name: `many__tool_${pad(i)}`,
        description: `Tool number ${i}`,
        inputSchema: { type: 'object', properties: {} },
        'x-extra': { page: Math.floor(i / 50) },
      });
    });
  });

  it('calls a tool of the last page, directly and through `call`, keeping "x-result-extra"', async () => {
    const direct = await gw.client.request({ method: 'tools/call', params: { name: 'many__tool_499', arguments: {} } }, anyResult);
    expect(direct).toEqual({ content: [{ type: 'text', text: '499' }], 'x-result-extra': true });

    const viaCall = await gw.client.request(
      { method: 'tools/call', params: { name: 'call', arguments: { tool: 'many__tool_499' } } },
      anyResult,
    );
    expect(viaCall).toEqual(direct);
    const bare = await gw.client.request({ method: 'tools/call', params: { name: 'call', arguments: { tool: 'tool_250' } } }, anyResult);
    expect(bare).toEqual({ content: [{ type: 'text', text: '250' }], 'x-result-extra': true });
  });

  it('shows all 500 in list_tools and in server_status', async () => {
    const listed = await gw.client.callTool({ name: 'list_tools', arguments: { server: 'many' } });
    expect((listed.structuredContent as { tools: Obj[] }).tools).toHaveLength(500);
    const status = await gw.client.callTool({ name: 'server_status', arguments: { server: 'many' } });
    expect((status.structuredContent as { servers: Obj[] }).servers[0]).toMatchObject({
      id: 'many',
      state: 'ready',
      tools: 500,
      excludedTools: [],
    });
  });
});
