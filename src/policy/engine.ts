/**
 * The policy engine (design §4): a pure function of (policies, caller, target, arguments) to a
 * Decision. No I/O, no clock, no logging.
 *
 * Precedence, in order:
 *   1. a matching `forbid` rule in ANY applicable policy denies (not only a policy's first match);
 *      (an allow rule matches when its conditions are true; a deny or forbid rule unless they are
 *      false: conditions that cannot be evaluated make it apply, conditions.ts)
 *   2. otherwise the call is allowed if some applicable policy's FIRST matching rule is `allow`;
 *   3. otherwise it is denied: by the first policy whose first match is `deny`, else by default.
 *
 * Safety rule: a rule without `server` covers child servers only. The gateway's own (admin) tools
 * are matched only by a rule whose `server` pattern names "gateway" literally (`gateway`, or a
 * brace list such as `{gateway,github}`) and matches it: neither `{ action: allow }` nor
 * `server: "*"` can hand out the audit log or usage by accident.
 *
 * Performance: `decide` runs on every tool call. Everything is compiled in the constructor; per
 * call the engine looks up the applicable policies for the caller's role set (cached) and runs
 * precompiled regexes. Decisions are preallocated, frozen objects.
 */
import { GATEWAY_SERVER_ID, type PolicyConfig, type RuleConfig } from '../config/schema.js';
import type { Identity } from '../identity/identity.js';
import { CompiledWhen, compileGlob, type Matcher } from './conditions.js';
import type { Decision, Target, TargetKind } from './types.js';

type Action = RuleConfig['action'];

interface CompiledRule {
  readonly action: Action;
  /** Server glob, or null: then the rule covers every child server but never the gateway. */
  readonly server: Matcher | null;
  /** Whether the rule covers the gateway's own tools (its server pattern names "gateway"). */
  readonly coversGateway: boolean;
  /** The kind the rule names (`tool`, `prompt`, `resource`), or null for every kind. */
  readonly kind: TargetKind | null;
  /** Glob on the tool/prompt name or resource URI, or null when the rule names none. */
  readonly name: Matcher | null;
  readonly when: CompiledWhen | null;
  /** The Decision this rule produces when it decides; built once, returned as is. */
  readonly decision: Decision;
}

interface CompiledPolicy {
  readonly roles: ReadonlySet<string>;
  /** The policy lists "*": it applies to every caller. */
  readonly everyone: boolean;
  /** All rules in config order (for `mayAllow`). */
  readonly rules: readonly CompiledRule[];
  /**
   * Allow and deny rules only, for the first-match walk of `decide`: it runs after the forbid pass
   * found no matching forbid, so forbid rules could not match there anyway.
   */
  readonly walk: readonly CompiledRule[];
}

/** What applies to one role set: policies in config order, and all their forbid rules. */
interface Applicable {
  readonly policies: readonly CompiledPolicy[];
  readonly forbids: readonly CompiledRule[];
}

const DEFAULT_DENY: Decision = Object.freeze({
  allowed: false,
  policyId: null,
  ruleIndex: null,
  decidedBy: 'default-deny',
  action: null,
});

/**
 * Bound on cached role sets. JWT roles are caller-supplied data; the cache must not grow without
 * limit. Clearing when full is enough: real deployments have a handful of role sets.
 */
const MAX_ROLE_SETS = 1024;

/** Compiles one rule; throws an Error naming `policies[i].rules[j]` on an invalid glob or regex. */
function compileRule(policy: PolicyConfig, policyIndex: number, rule: RuleConfig, ruleIndex: number): CompiledRule {
  const where = `policies[${policyIndex}].rules[${ruleIndex}] (policy "${policy.id}")`;
  const glob = (field: string, pattern: string): Matcher => {
    try {
      return compileGlob(pattern);
    } catch (err) {
      throw new Error(`${where}.${field}: invalid glob ${JSON.stringify(pattern)}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  };
  let kind: TargetKind | null = null;
  let name: Matcher | null = null;
  if (rule.tool !== undefined) {
    kind = 'tool';
    name = glob('tool', rule.tool);
  } else if (rule.prompt !== undefined) {
    kind = 'prompt';
    name = glob('prompt', rule.prompt);
  } else if (rule.resource !== undefined) {
    kind = 'resource';
    name = glob('resource', rule.resource);
  }
  let when: CompiledWhen | null = null;
  if (rule.when !== undefined) {
    try {
      when = CompiledWhen.compile(rule.when);
    } catch (err) {
      throw new Error(`${where}.${(err as Error).message}`, { cause: err });
    }
  }
  return {
    action: rule.action,
    server: rule.server === undefined ? null : glob('server', rule.server),
    coversGateway: rule.server !== undefined && rule.server.includes(GATEWAY_SERVER_ID) && glob('server', rule.server)(GATEWAY_SERVER_ID),
    kind,
    name,
    when,
    decision: Object.freeze({
      allowed: rule.action === 'allow',
      policyId: policy.id,
      ruleIndex,
      decidedBy: `${policy.id}#${ruleIndex}`,
      action: rule.action,
    }),
  };
}

/** Whether the rule's server, kind and name cover the target (conditions aside). */
function targetMatches(rule: CompiledRule, target: Target): boolean {
  if (rule.kind !== null && rule.kind !== target.kind) return false;
  if (target.server === GATEWAY_SERVER_ID) {
    if (!rule.coversGateway) return false;
  } else if (rule.server !== null && !rule.server(target.server)) {
    return false;
  }
  return rule.name === null || rule.name(target.name);
}

/** Decides tool, prompt and resource access from the configured policies; immutable once built. */
export class PolicyEngine {
  private readonly policies: readonly CompiledPolicy[];
  /** Role set → applicable policies, keyed by the JSON of the sorted, de-duplicated roles. */
  private readonly byRoleKey = new Map<string, Applicable>();
  /**
   * Frozen roles array → applicable policies: identities are built once per session, so this
   * skips the sort and join on every call. Only frozen arrays, which cannot change afterwards.
   */
  private readonly byRolesArray = new WeakMap<readonly string[], Applicable>();

  /** Compiles every glob and regex; throws an Error naming `policies[i].rules[j]` if one is invalid. */
  constructor(policies: readonly PolicyConfig[]) {
    this.policies = policies.map((policy, i) => {
      const rules = policy.rules.map((rule, j) => compileRule(policy, i, rule, j));
      return {
        roles: new Set(policy.roles),
        everyone: policy.roles.includes('*'),
        rules,
        walk: rules.filter((rule) => rule.action !== 'forbid'),
      };
    });
  }

  /** The Decision for this caller calling this target with these arguments. */
  decide(identity: Identity, target: Target, args: Readonly<Record<string, unknown>> | undefined): Decision {
    const applicable = this.applicable(identity.roles);
    // Forbid first: it beats every allow, in any policy and at any position. It applies unless its
    // conditions are false: one that cannot be evaluated (a missing or mistyped argument) matches.
    for (const rule of applicable.forbids) {
      if (targetMatches(rule, target) && (rule.when === null || rule.when.test(args, identity) !== false)) return rule.decision;
    }
    let deny: Decision | null = null;
    for (const policy of applicable.policies) {
      for (const rule of policy.walk) {
        if (!targetMatches(rule, target)) continue;
        if (rule.when !== null) {
          // An allow needs its conditions true; a deny, like a forbid, applies unless they are false.
          const truth = rule.when.test(args, identity);
          if (rule.action === 'allow' ? truth !== true : truth === false) continue;
        }
        if (rule.action === 'allow') return rule.decision;
        deny ??= rule.decision;
        break; // first match decides this policy
      }
    }
    return deny ?? DEFAULT_DENY;
  }

  /**
   * Whether SOME arguments could make `decide` allow this call (for filtering lists). If false,
   * `decide` denies for every argument; without `when` conditions it equals `decide(...).allowed`.
   */
  mayAllow(identity: Identity, target: Target): boolean {
    const applicable = this.applicable(identity.roles);
    // Only an unconditional forbid is certain; a conditional one might not match.
    for (const rule of applicable.forbids) {
      if (rule.when === null && targetMatches(rule, target)) return false;
    }
    for (const policy of applicable.policies) {
      for (const rule of policy.rules) {
        if (!targetMatches(rule, target)) continue;
        if (rule.when === null) {
          if (rule.action === 'allow') return true;
          break; // an unconditional deny/forbid decides this policy
        }
        // Conditions are unknown without arguments, except when a template has no value for this
        // caller: then they are false for every argument and the rule never matches.
        if (!rule.when.mayHold(identity)) continue;
        if (rule.action === 'allow') return true;
        // A conditional deny/forbid might not match: keep walking.
      }
    }
    return false;
  }

  /** The policies (and their forbid rules) that apply to a caller with these roles. */
  private applicable(roles: readonly string[]): Applicable {
    const cached = this.byRolesArray.get(roles);
    if (cached !== undefined) return cached;
    // JSON of the sorted list: unambiguous whatever characters a role holds (a joined string
    // could make ["a,b"] and ["a","b"] collide and hand one caller another's policies).
    const key = JSON.stringify([...new Set(roles)].sort());
    let applicable = this.byRoleKey.get(key);
    if (applicable === undefined) {
      const mine = new Set(roles);
      const policies = this.policies.filter((p) => p.everyone || [...p.roles].some((role) => mine.has(role)));
      applicable = Object.freeze({
        policies,
        forbids: policies.flatMap((p) => p.rules.filter((rule) => rule.action === 'forbid')),
      });
      if (this.byRoleKey.size >= MAX_ROLE_SETS) this.byRoleKey.clear();
      this.byRoleKey.set(key, applicable);
    }
    if (Object.isFrozen(roles)) this.byRolesArray.set(roles, applicable);
    return applicable;
  }
}
