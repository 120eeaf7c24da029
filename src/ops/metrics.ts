/**
 * Prometheus metrics (prom-client), named after the OpenTelemetry MCP semantic conventions where
 * they define a name (`mcp.server.operation.duration` with `mcp.method.name`, `gen_ai.tool.name`,
 * `error.type`; dots become underscores and the unit a suffix, as OpenTelemetry's Prometheus
 * exporter does). Every label value is bounded: a name the agent sent is a label only when it is a
 * tool or prompt a server lists (or a gateway tool), else "(other)", so nothing an agent sends can
 * grow the set of series.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CallContext } from '../pipeline/context.js';
import type { Stage } from '../pipeline/compose.js';
import type { ChildStatus } from '../registry/child.js';

/** The MCP methods a label may name; any other is "(other)". */
const METHODS: ReadonlySet<string> = new Set([
  'tools/call',
  'tools/list',
  'prompts/get',
  'prompts/list',
  'resources/read',
  'resources/list',
  'resources/templates/list',
  'resources/subscribe',
  'resources/unsubscribe',
  'completion/complete',
  'logging/setLevel',
]);

const STATES = ['idle', 'starting', 'ready', 'restarting', 'failed', 'stopped'] as const;

export interface MetricsSources {
  /** Whether `name` is a tool (or prompt) `server` lists, or a gateway tool: a bounded label. */
  readonly known: (server: string, kind: 'tool' | 'prompt' | 'admin', name: string) => boolean;
  readonly servers: () => readonly ChildStatus[];
  /** Agents connected now. */
  readonly sessions: () => number;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'server' | 'tool' | 'status' | 'decision'>;
  private readonly duration: Histogram<'mcp_method_name' | 'gen_ai_tool_name' | 'error_type' | 'server'>;
  private readonly commits: Histogram;

  constructor(private readonly sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'mcp_gateway_' });
    this.requests = new Counter({
      name: 'mcp_gateway_requests_total',
      help: 'Requests that passed the pipeline, by MCP method, server, tool or prompt, audit status and policy decision',
      labelNames: ['method', 'server', 'tool', 'status', 'decision'],
      registers,
    });
    this.duration = new Histogram({
      name: 'mcp_server_operation_duration_seconds',
      help: 'Time from receiving a request to its reply (OpenTelemetry mcp.server.operation.duration)',
      labelNames: ['mcp_method_name', 'gen_ai_tool_name', 'error_type', 'server'],
      buckets: [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.commits = new Histogram({
      name: 'mcp_gateway_audit_commit_duration_seconds',
      help: 'Time of one commit of audit rows and usage (the replies of the calls in it wait for it)',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    const servers = () => this.sources.servers();
    new Gauge({
      name: 'mcp_gateway_server_state',
      help: 'Each server child: 1 for its current state',
      labelNames: ['server', 'state'],
      registers,
      collect() {
        this.reset();
        for (const s of servers()) for (const state of STATES) this.set({ server: s.id, state }, s.state === state ? 1 : 0);
      },
    });
    new Gauge({
      name: 'mcp_gateway_server_restarts',
      help: 'Restarts of each server child since the gateway started',
      labelNames: ['server'],
      registers,
      collect() {
        this.reset();
        for (const s of servers()) this.set({ server: s.id }, s.totalRestarts);
      },
    });
    const sessions = () => this.sources.sessions();
    new Gauge({
      name: 'mcp_gateway_sessions',
      help: 'Agents connected',
      registers,
      collect() {
        this.set(sessions());
      },
    });
  }

  /** The pipeline stage that counts and times every request (outermost: it sees every outcome). */
  stage(): Stage<CallContext> {
    return async (ctx, next) => {
      try {
        await next();
      } finally {
        this.observe(ctx);
      }
    };
  }

  /** One commit of the recorder took `seconds`. */
  observeCommit(seconds: number): void {
    this.commits.observe(seconds);
  }

  private observe(ctx: CallContext): void {
    const status = ctx.status;
    const server = ctx.server ?? '(none)';
    const kind = ctx.kind === 'resource' ? null : ctx.kind;
    const name = ctx.server !== null && kind !== null && this.sources.known(ctx.server, kind, ctx.name) ? ctx.name : '(other)';
    const method = METHODS.has(ctx.method) ? ctx.method : '(other)';
    const decision = ctx.decision === null ? 'none' : ctx.decision.allowed ? 'allow' : 'deny';
    this.requests.inc({ method, server, tool: kind === null ? '' : name, status, decision });
    this.duration.observe(
      {
        mcp_method_name: method,
        gen_ai_tool_name: kind === 'prompt' || kind === null ? '' : name,
        error_type: status === 'ok' ? '' : status,
        server,
      },
      ctx.elapsedMs() / 1000,
    );
  }
}
