/**
 * The gateway's own tools (design §9), policy server "gateway". `call` and `list_tools` are entry
 * points, not permissions: `call` is re-targeted by the front to the tool it names (and that
 * tool's permission decides); `list_tools` shows only what the caller may use. The others are
 * visible and callable only where a policy allows `server: gateway, tool: <name>`.
 */
import { GatewayError } from '../errors.js';
import type { CallContext, ResultObject } from '../pipeline/context.js';
import type { Identity } from '../identity/identity.js';
import type { Registry } from '../registry/registry.js';
import type { ArgumentValidator } from '../registry/validate.js';
import type { RawEntry } from '../registry/child.js';
import type { Redactor } from '../secrets/redactor.js';

export interface GatewayToolContext {
  readonly registry: Registry;
  readonly validator: ArgumentValidator;
  readonly redactor: Redactor;
  /** Direct tools the identity may use, as listed to it. */
  readonly visibleTools: (identity: Identity) => { server: string; exposedName: string; entry: RawEntry }[];
  /** URIs offered by more than one server (served by the first in config order). */
  readonly conflicts: () => { uri: string; servers: string[]; servedBy: string }[];
  /** Tool and prompt names more than one server (or a gateway tool) would show. */
  readonly nameConflicts: () => { kind: 'tool' | 'prompt'; name: string; servers: string[]; servedBy: string }[];
}

export interface GatewayTool {
  /** Tool definition as listed (name, title, description, inputSchema, annotations). */
  readonly definition: RawEntry;
  /** No permission of its own: allowed for every authenticated caller. */
  readonly entryPoint: boolean;
  run(ctx: CallContext, tools: GatewayToolContext): Promise<ResultObject>;
}

const readOnly = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };

/** A tool result that carries JSON both as text (for models) and as structuredContent. */
export function jsonResult(value: Record<string, unknown>): ResultObject {
  return { content: [{ type: 'text', text: JSON.stringify(value, null, 2) }], structuredContent: value };
}

const call: GatewayTool = {
  entryPoint: true,
  definition: {
    name: 'call',
    title: 'Call a tool through the gateway',
    description:
      'Calls any tool you may use, by its full name ("<server>__<tool>") or by its own name when only one server has it. ' +
      "The result is the tool's own result. Use list_tools to see what is available.",
    inputSchema: {
      type: 'object',
      properties: {
        tool: { type: 'string', description: 'Tool name: "<server>__<tool>", or the bare tool name if unique' },
        server: { type: 'string', description: 'Server id, when the tool name alone is ambiguous' },
        arguments: { type: 'object', description: 'Arguments for the tool', additionalProperties: true },
      },
      required: ['tool'],
      additionalProperties: false,
    },
  },
  // A `call` whose target is clear never gets here: the front sends it to that tool.
  async run(ctx, tools) {
    tools.validator.check('gateway', call.definition, ctx.arguments);
    const name = String(ctx.arguments?.['tool']);
    // Only the servers whose tool the caller may see are named (what it may never use stays unseen).
    const owners = tools
      .visibleTools(ctx.session.identity)
      .filter((t) => t.entry.name === name)
      .map((t) => t.server);
    if (owners.length > 1) {
      throw new GatewayError(
        'INVALID_ARGUMENTS',
        `several servers offer "${name}" (${owners.join(', ')}): give "server", or the full name such as "${tools.registry.exposedName(owners[0]!, name)}"`,
        { field: 'server', servers: owners },
      );
    }
    throw new GatewayError('INVALID_ARGUMENTS', 'give "tool" as "<server>__<tool>" or as a tool name', { field: 'tool' });
  },
};

const listTools: GatewayTool = {
  entryPoint: true,
  definition: {
    name: 'list_tools',
    title: 'List the tools you may use',
    description: 'Lists the tools of every server that you are allowed to call, with their input schemas. Filter by server or by a word.',
    inputSchema: {
      type: 'object',
      properties: {
        server: { type: 'string', description: 'Only this server' },
        query: { type: 'string', description: 'Only tools whose name or description contains this text' },
      },
      additionalProperties: false,
    },
    annotations: readOnly,
  },
  async run(ctx, tools) {
    tools.validator.check('gateway', listTools.definition, ctx.arguments);
    const server = ctx.arguments?.['server'] as string | undefined;
    const query = (ctx.arguments?.['query'] as string | undefined)?.toLowerCase();
    const found = tools
      .visibleTools(ctx.session.identity)
      .filter((t) => server === undefined || t.server === server)
      .filter(
        (t) =>
          query === undefined ||
          t.exposedName.toLowerCase().includes(query) ||
          String(t.entry['description'] ?? '')
            .toLowerCase()
            .includes(query),
      )
      .map((t) => ({
        name: t.exposedName,
        server: t.server,
        ...(t.entry['title'] !== undefined ? { title: t.entry['title'] } : {}),
        ...(t.entry['description'] !== undefined ? { description: t.entry['description'] } : {}),
        inputSchema: t.entry['inputSchema'],
      }));
    return jsonResult({ tools: found });
  },
};

const listServers: GatewayTool = {
  entryPoint: false,
  definition: {
    name: 'list_servers',
    title: 'List the servers behind the gateway',
    description: 'Lists the MCP servers registered in the gateway with their state and how many tools, prompts and resources each offers.',
    inputSchema: { type: 'object', properties: {}, additionalProperties: false },
    annotations: readOnly,
  },
  async run(ctx, tools) {
    tools.validator.check('gateway', listServers.definition, ctx.arguments);
    const servers = tools.registry.status().map((s) => ({
      id: s.id,
      name: s.name,
      state: s.state,
      tools: s.tools,
      prompts: s.prompts,
      resources: s.resources,
    }));
    const disabled = tools.registry.disabledServers().map((s) => ({ id: s.id, name: s.name ?? s.id, state: 'disabled' }));
    return jsonResult({ servers: [...servers, ...disabled] });
  },
};

const serverStatus: GatewayTool = {
  entryPoint: false,
  definition: {
    name: 'server_status',
    title: 'Health of the servers behind the gateway',
    description:
      "Shows each server's state, process id, restarts, last exit and error, the last lines of its stderr (secrets redacted), " +
      'tools left out of the lists and why, resource URIs claimed by more than one server, and tool or prompt names two servers would show.',
    inputSchema: {
      type: 'object',
      properties: { server: { type: 'string', description: 'Only this server' } },
      additionalProperties: false,
    },
    annotations: readOnly,
  },
  async run(ctx, tools) {
    tools.validator.check('gateway', serverStatus.definition, ctx.arguments);
    const only = ctx.arguments?.['server'] as string | undefined;
    if (only !== undefined && !tools.registry.get(only)) {
      throw new GatewayError('INVALID_ARGUMENTS', `no server "${only}"`, { field: 'server' });
    }
    const servers = tools.registry.status().filter((s) => only === undefined || s.id === only);
    return jsonResult(tools.redactor.value({ servers, uriConflicts: tools.conflicts(), nameConflicts: tools.nameConflicts() }));
  },
};

export const GATEWAY_TOOLS: readonly GatewayTool[] = [call, listTools, listServers, serverStatus];

/**
 * The names of every gateway tool, these and the audit module's (audit/tools.ts): names a server
 * shown under its own names must not use. test/e2e/naming.test.ts checks it against `serve`.
 */
export const GATEWAY_TOOL_NAMES: readonly string[] = [
  ...GATEWAY_TOOLS.map((t) => t.definition.name),
  'audit_log',
  'audit_verify',
  'audit_stats',
  'usage',
];

/** Gateway tools by name. Later tools (audit, usage) are added by their modules. */
export function gatewayToolIndex(extra: readonly GatewayTool[] = []): ReadonlyMap<string, GatewayTool> {
  return new Map([...GATEWAY_TOOLS, ...extra].map((t) => [t.definition.name, t]));
}
