/**
 * The gateway tools over the audit log and usage (design §9): audit_log, audit_verify, audit_stats,
 * usage. Policy server "gateway"; each is visible only where a policy allows it. They read the
 * gateway's own connection: audit_verify works in slices so the recorder keeps writing meanwhile.
 */
import type { GatewayConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { jsonResult, type GatewayTool } from '../front/gateway-tools.js';
import type { ExtraToolDeps } from '../gateway.js';
import type { CallContext } from '../pipeline/context.js';
import { AUDIT_STATUSES, DEFAULT_LIMIT, auditLog, auditStats, instantOf, presentRow } from './query.js';
import { USAGE_GROUPS, usageReport, type UsageBy } from '../metering/report.js';
import { parseAnchor } from './verify.js';

const readOnly = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };

/** Most rows one audit_log call returns. */
export const MAX_LOG_LIMIT = 500;

const timeProperty = (what: string) => ({
  type: 'string',
  description: `${what}: an ISO 8601 date or date-time (UTC unless it has an offset), or a duration ago such as "24h" or "7d"`,
});

/** Reads an optional time argument; INVALID_ARGUMENTS naming the field when it does not parse. */
function timeArg(ctx: CallContext, field: 'since' | 'until'): string | undefined {
  const value = ctx.arguments?.[field] as string | undefined;
  if (value === undefined) return undefined;
  const iso = instantOf(value);
  if (iso === null) {
    throw new GatewayError(
      'INVALID_ARGUMENTS',
      `"${field}" must be an ISO 8601 date such as 2026-11-01T00:00:00Z or a duration such as 24h`,
      { field },
    );
  }
  return iso;
}

function rangeArgs(ctx: CallContext): { since: string | undefined; until: string | undefined } {
  const since = timeArg(ctx, 'since');
  const until = timeArg(ctx, 'until');
  if (since !== undefined && until !== undefined && since >= until) {
    throw new GatewayError('INVALID_ARGUMENTS', '"since" must be before "until"', { field: 'since' });
  }
  return { since, until };
}

/** The audit and usage tools, given what the gateway built (db, stores, recorder flush, key). */
export function auditTools(_config: GatewayConfig): (deps: ExtraToolDeps) => readonly GatewayTool[] {
  return (deps) => {
    const log: GatewayTool = {
      entryPoint: false,
      definition: {
        name: 'audit_log',
        title: 'Read the audit log',
        description:
          'Lists recorded requests to the gateway, newest first: who called which tool, with what arguments and result ' +
          '(redacted and possibly cut, see "$truncated"), the status, latency and the policy that decided. Filter by consumer, ' +
          `server, tool, status and time; at most ${MAX_LOG_LIMIT} rows.`,
        inputSchema: {
          type: 'object',
          properties: {
            limit: {
              type: 'integer',
              minimum: 1,
              maximum: MAX_LOG_LIMIT,
              default: DEFAULT_LIMIT,
              description: `Most rows to return (default ${DEFAULT_LIMIT})`,
            },
            consumer: { type: 'string', description: 'Only this consumer id' },
            server: { type: 'string', description: 'Only this server id ("gateway" for the gateway\'s own tools)' },
            tool: { type: 'string', description: "Only this tool or prompt name (the server's own name), or resource URI" },
            status: { type: 'string', enum: [...AUDIT_STATUSES], description: 'Only this outcome' },
            since: timeProperty('Only requests from this time on'),
            until: timeProperty('Only requests before this time'),
          },
          additionalProperties: false,
        },
        annotations: readOnly,
      },
      async run(ctx, tools) {
        tools.validator.check('gateway', log.definition, ctx.arguments);
        const args = ctx.arguments ?? {};
        const limit = (args['limit'] as number | undefined) ?? DEFAULT_LIMIT;
        const rows = await auditLog(deps.store.reader, {
          ...rangeArgs(ctx),
          limit,
          consumer: args['consumer'] as string | undefined,
          server: args['server'] as string | undefined,
          tool: args['tool'] as string | undefined,
          status: args['status'] as string | undefined,
        });
        return jsonResult(tools.redactor.value({ entries: rows.map(presentRow), count: rows.length, limit }));
      },
    };

    const verify: GatewayTool = {
      entryPoint: false,
      definition: {
        name: 'audit_verify',
        title: 'Verify the audit chain',
        description:
          'Recomputes the hash chain of the audit log and reports whether it is intact (rows checked and the head "seq:hash"), ' +
          'or the first bad row and why: modified, missing, reordered, wrong-key, truncated, anchor-mismatch. ' +
          'Give "anchor" (a "seq:hash" recorded earlier) to also prove the log still holds that exact entry.',
        inputSchema: {
          type: 'object',
          properties: {
            anchor: { type: 'string', pattern: '^[0-9]{1,15}:[0-9a-fA-F]{64}$', description: 'An earlier head, "seq:hash"' },
          },
          additionalProperties: false,
        },
        annotations: readOnly,
      },
      async run(ctx, tools) {
        tools.validator.check('gateway', verify.definition, ctx.arguments);
        const text = ctx.arguments?.['anchor'] as string | undefined;
        const anchor = text === undefined ? undefined : parseAnchor(text);
        if (anchor === null)
          throw new GatewayError(
            'INVALID_ARGUMENTS',
            '"anchor" must be "seq:hash" as printed by `audit head` (16 or more hex digits of the hash)',
            { field: 'anchor' },
          );
        const result = await deps.store.verify({ hmacKey: deps.hmacKey, anchor }, true);
        return jsonResult({ ...result });
      },
    };

    const stats: GatewayTool = {
      entryPoint: false,
      definition: {
        name: 'audit_stats',
        title: 'Audit log statistics',
        description: 'Counts recorded requests by status, server and consumer, with latency p50/p95/max, over a time range (default: all).',
        inputSchema: {
          type: 'object',
          properties: { since: timeProperty('From this time on'), until: timeProperty('Before this time') },
          additionalProperties: false,
        },
        annotations: readOnly,
      },
      async run(ctx, tools) {
        tools.validator.check('gateway', stats.definition, ctx.arguments);
        return jsonResult({ ...(await auditStats(deps.store.reader, rangeArgs(ctx))) });
      },
    };

    const usage: GatewayTool = {
      entryPoint: false,
      definition: {
        name: 'usage',
        title: 'Usage and cost',
        description:
          'Calls, errors, denied and rate-limited requests, latency (ms, to 0.01) and cost per consumer, server or tool over a ' +
          'time range. Counters are kept per UTC hour: an hour that "since" or "until" falls inside is counted whole, and the ' +
          'result\'s "from" and "to" are the hour bounds actually counted ("bucket": "hour"). Give consumerId to see one consumer only.',
        inputSchema: {
          type: 'object',
          properties: {
            consumerId: { type: 'string', description: 'Only this consumer' },
            since: timeProperty('From the start of the UTC hour this time falls inside'),
            until: timeProperty('To the end of the UTC hour this time falls inside (a time on the hour: up to it)'),
            by: {
              type: 'string',
              enum: [...USAGE_GROUPS],
              default: 'consumer',
              description: 'Group by consumer, server or tool (default consumer)',
            },
          },
          additionalProperties: false,
        },
        annotations: readOnly,
      },
      async run(ctx, tools) {
        tools.validator.check('gateway', usage.definition, ctx.arguments);
        const args = ctx.arguments ?? {};
        // Counters are held in memory up to a second: write them so this call sees every request.
        await deps.flushUsage();
        const report = await usageReport(deps.store.reader, {
          ...rangeArgs(ctx),
          consumerId: args['consumerId'] as string | undefined,
          by: (args['by'] as UsageBy | undefined) ?? 'consumer',
        });
        return jsonResult({ ...report });
      },
    };

    return [log, verify, stats, usage];
  };
}
