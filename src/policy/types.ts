/**
 * What the policy engine is asked and what it answers (design §4).
 */

/** The kinds of thing a rule can name. Gateway tools are tools of server "gateway". */
export type TargetKind = 'tool' | 'prompt' | 'resource';

export interface Target {
  /** Server id, or "gateway" for the gateway's own tools. */
  readonly server: string;
  readonly kind: TargetKind;
  /** The child's own tool or prompt name (not the prefixed one), or the resource URI. */
  readonly name: string;
}

export interface Decision {
  readonly allowed: boolean;
  /** Policy that decided, or null when nothing matched (default deny). */
  readonly policyId: string | null;
  /** Index of the deciding rule inside that policy's `rules`, or null. */
  readonly ruleIndex: number | null;
  /** `"<policyId>#<ruleIndex>"`, or `"default-deny"`: what the audit log records in `decided_by`. */
  readonly decidedBy: string;
  /** The deciding rule's action, or null for default deny. */
  readonly action: 'allow' | 'deny' | 'forbid' | null;
}
