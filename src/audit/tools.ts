/** The gateway tools over the audit log and usage (design §9): audit_log, audit_verify, audit_stats, usage. */
import type { GatewayConfig } from '../config/schema.js';
import type { GatewayTool } from '../front/gateway-tools.js';
import type { ExtraToolDeps } from '../gateway.js';

export function auditTools(_config: GatewayConfig): (deps: ExtraToolDeps) => readonly GatewayTool[] {
  return () => [];
}
