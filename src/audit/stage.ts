/**
 * The audit stage, outermost: every request that reaches the pipeline is recorded with its
 * outcome, and the reply waits for that record's commit (design §6). When the audit log cannot be
 * written, nothing is forwarded and no result is released.
 */
import type { AuditConfig } from '../config/schema.js';
import { GatewayError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import type { CallContext } from '../pipeline/context.js';
import type { Stage } from '../pipeline/compose.js';
import type { Redactor } from '../secrets/redactor.js';
import type { Recorder } from '../store/recorder.js';
import { auditJsonFactory } from './redact.js';
import type { AuditDraft } from './store.js';

export interface AuditStageOptions {
  readonly recorder: Recorder;
  readonly config: AuditConfig;
  /** Redacts injected secrets and the caller's credential. */
  readonly redactor: Redactor;
  readonly log: Logger;
}

export function audit({ recorder, config, redactor, log }: AuditStageOptions): Stage<CallContext> {
  const record = auditJsonFactory(config.redactKeys, redactor, config.maxRecordBytes);
  // A session's roles are the same on every request: written out once per roles array.
  const rolesText = new WeakMap<readonly string[], string>();
  const rolesOf = (roles: readonly string[]) => {
    let text = rolesText.get(roles);
    if (text === undefined) rolesText.set(roles, (text = JSON.stringify(roles)));
    return text;
  };

  return async function audit(ctx, next) {
    if (!recorder.canAccept()) {
      ctx.fail(
        new GatewayError(
          'INTERNAL_ERROR',
          'the audit log cannot be written, so the request was not forwarded; the gateway operator must fix it',
        ),
        'audit',
      );
      return;
    }
    const who = ctx.session.identity;
    // Arguments are recorded as they arrived, before any stage could have changed them.
    const started = {
      ts: ctx.ts.toISOString(),
      consumer_id: who.consumerId,
      key_id: who.keyId,
      auth_method: who.method,
      roles: rolesOf(who.roles),
      server: ctx.server,
      kind: ctx.kind,
      name: redactor.text(ctx.name),
      arguments: config.recordArguments && ctx.arguments !== undefined ? record(ctx.arguments) : null,
      method: ctx.method,
      // What the agent sent, before servers[].metaAllow: the row shows what was attempted.
      meta: ctx.request.receivedMeta !== undefined ? record(ctx.request.receivedMeta) : null,
    };
    try {
      await next();
    } finally {
      const draft: AuditDraft = {
        ...started,
        result: config.recordResults && ctx.result !== undefined ? record(ctx.result) : null,
        status: ctx.status,
        error: errorOf(ctx, redactor),
        latency_ms: Math.round(ctx.elapsedMs()),
        decided_by: ctx.decidedBy || null,
      };
      try {
        await recorder.audit(draft);
      } catch (err) {
        log.error(`could not record ${ctx.kind} ${ctx.server}/${ctx.name} in the audit log: ${(err as Error).message}`);
        // A result the log does not hold is not released.
        ctx.result = undefined;
        ctx.fail(
          new GatewayError(
            'INTERNAL_ERROR',
            `the request ${ctx.forwarded ? 'ran' : 'ended'} but could not be recorded in the audit log, so its result is withheld; the gateway operator must fix the audit database`,
          ),
        );
      }
    }
  };
}

/** The error column: the gateway's refusal, or the text of a child's isError result. */
function errorOf(ctx: CallContext, redactor: Redactor): string | null {
  if (ctx.error) return redactor.text(errorText(ctx.error));
  if (ctx.result?.['isError'] === true) {
    const content = ctx.result['content'];
    const text = Array.isArray(content) ? content.find((c) => (c as { type?: unknown })?.type === 'text') : undefined;
    const message = (text as { text?: unknown } | undefined)?.text;
    return redactor.text(typeof message === 'string' ? message.slice(0, 2_000) : 'the tool reported an error');
  }
  return null;
}
