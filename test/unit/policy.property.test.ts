/**
 * Property tests of the policy engine (design §4) over random policy sets, callers, targets and
 * arguments drawn from small alphabets, so that matches, conflicts and conditions are frequent.
 */
import fc from 'fast-check';
import picomatch from 'picomatch';
import { describe, expect, test } from 'vitest';
import { configSchema, type PolicyConfig, type RuleConfig } from '../../src/config/schema.js';
import type { Identity } from '../../src/identity/identity.js';
import { PolicyEngine, type Target } from '../../src/policy/index.js';

const RUNS = { numRuns: 2000 };

// ---------------------------------------------------------------------------------------------
// Alphabets

const KNOWN_ROLES = ['a', 'b', 'c'] as const;
const SERVERS = ['fs', 'db', 'web', 'gateway'] as const;
const SERVER_GLOBS = ['fs', 'db', '*', '{fs,db}', 'gateway', 'w*', 'g*'] as const;
const NAMES = ['read', 'write', 'read_all', 'delete', '.hidden'] as const;
const NAME_GLOBS = ['read*', '*', 'write', '{read,delete}', 're[a]d', '**'] as const;
const URIS = ['file:///data/x', 'file:///data/a/b', 'file:///etc/p'] as const;
const URI_GLOBS = ['file:///data/**', 'file:///data/*', '**', 'file:///*/x'] as const;
const ARG_PATHS = ['args.a', 'args.b'] as const;
/** Argument values; 'k1' and 'a' let the `${key.id}` and `${consumer.roles}` conditions hold. */
const ARG_VALUES: readonly unknown[] = [1, 0, -1, 'x', 'y', 'xx', 'a', 'k1', null, [1], {}];

const MISSING = Symbol('missing');
/** true, false, or undefined: the condition cannot be evaluated (missing, null, another type). */
type Truth = boolean | undefined;
type Oracle = (value: unknown, caller: Identity) => Truth;
const present = (v: unknown) => v !== MISSING && v !== null;
const not = (t: Truth): Truth => (t === undefined ? undefined : !t);
/** `eq` on a string or number operand: unknown unless the value is of the operand's type. */
const eqOf =
  (x: string | number) =>
  (v: unknown): Truth =>
    present(v) && typeof v === typeof x ? v === x : undefined;
const stringly =
  (test: (v: string) => boolean) =>
  (v: unknown): Truth =>
    typeof v === 'string' ? test(v) : undefined;
const numeric =
  (test: (v: number) => boolean) =>
  (v: unknown): Truth =>
    typeof v === 'number' ? test(v) : undefined;

/** Conditions the generator uses, each with an independent statement of its meaning. */
const CONDITIONS: ReadonlyArray<readonly [Record<string, unknown>, Oracle]> = [
  [{ eq: 1 }, eqOf(1)],
  [{ eq: 'x' }, eqOf('x')],
  [{ eq: null }, (v) => (v === MISSING ? undefined : v === null)],
  [{ ne: 'x' }, (v) => not(eqOf('x')(v))],
  [{ gt: 0 }, numeric((v) => v > 0)],
  [{ lte: 0 }, numeric((v) => v <= 0)],
  [{ exists: true }, (v) => present(v)],
  [{ exists: false }, (v) => !present(v)],
  [{ in: ['x', 'y'] }, stringly((v) => v === 'x' || v === 'y')],
  [{ notIn: ['x'] }, (v) => not(stringly((s) => s === 'x')(v))],
  [{ glob: 'x*' }, stringly((v) => v.startsWith('x'))],
  [{ regex: 'x+' }, stringly((v) => /^x+$/.test(v))],
  [{ maxLength: 1 }, (v) => (typeof v === 'string' || Array.isArray(v) ? [...(v as string)].length <= 1 : undefined)],
  [{ eq: '${key.id}' }, (v, id) => (id.keyId === null ? undefined : eqOf(id.keyId)(v))],
  [{ ne: '${key.id}' }, (v, id) => (id.keyId === null ? undefined : not(eqOf(id.keyId)(v)))],
  [{ in: '${consumer.roles}' }, (v, id) => stringly((s) => id.roles.includes(s))(v)],
];
const ORACLES = new Map(CONDITIONS.map(([condition, oracle]) => [JSON.stringify(condition), oracle]));

// ---------------------------------------------------------------------------------------------
// Generators

const whenArb = fc
  .uniqueArray(fc.tuple(fc.constantFrom(...ARG_PATHS), fc.nat(CONDITIONS.length - 1)), {
    minLength: 1,
    maxLength: 2,
    selector: ([path]) => path,
  })
  .map((entries) => Object.fromEntries(entries.map(([path, i]) => [path, CONDITIONS[i]![0]])));

const ruleArb = (withWhen: boolean, actions: readonly RuleConfig['action'][] = ['allow', 'deny', 'forbid']) =>
  fc
    .record({
      server: fc.option(fc.constantFrom(...SERVER_GLOBS), { nil: undefined }),
      target: fc.oneof(
        fc.constant({}),
        fc.constantFrom(...NAME_GLOBS).map((tool) => ({ tool })),
        fc.constantFrom(...NAME_GLOBS).map((prompt) => ({ prompt })),
        fc.constantFrom(...URI_GLOBS).map((resource) => ({ resource })),
      ),
      action: fc.constantFrom(...actions),
      when: withWhen ? fc.option(whenArb, { nil: undefined, freq: 2 }) : fc.constant(undefined),
    })
    .map(({ server, target, action, when }) => ({
      ...(server === undefined ? {} : { server }),
      ...target,
      action,
      ...(when === undefined ? {} : { when }),
    }));

const policyRolesArb = (roles: readonly string[]) => fc.uniqueArray(fc.constantFrom(...roles), { minLength: 1, maxLength: 2 });

interface PolicySetOptions {
  readonly withWhen?: boolean;
  readonly roles?: readonly string[];
}

/** Random raw policy sets, parsed through the config schema (ids p0, p1, …). */
const policiesArb = ({ withWhen = true, roles = [...KNOWN_ROLES, '*'] }: PolicySetOptions = {}) =>
  fc
    .array(fc.record({ roles: policyRolesArb(roles), rules: fc.array(ruleArb(withWhen), { minLength: 1, maxLength: 5 }) }), {
      maxLength: 4,
    })
    .map((list) => parse(list.map((p, i) => ({ id: `p${i}`, ...p }))));

function parse(policies: unknown[]): PolicyConfig[] {
  return configSchema.parse({ policies }).policies;
}

const callerArb = (roles: readonly string[] = [...KNOWN_ROLES, 'd']) =>
  fc
    .record({
      roles: fc.uniqueArray(fc.constantFrom(...roles), { maxLength: roles.length }),
      keyId: fc.constantFrom<string | null>('k1', null),
    })
    .map(({ roles: r, keyId }): Identity => ({
      consumerId: 'alice',
      keyId,
      method: keyId === null ? 'jwt' : 'api-key',
      roles: r,
      claims: {},
      expiresAt: null,
    }));

const targetArb: fc.Arbitrary<Target> = fc.oneof(
  fc.record({ server: fc.constantFrom(...SERVERS), kind: fc.constant('tool' as const), name: fc.constantFrom(...NAMES) }),
  fc.record({ server: fc.constantFrom(...SERVERS), kind: fc.constant('prompt' as const), name: fc.constantFrom(...NAMES) }),
  fc.record({ server: fc.constantFrom(...SERVERS), kind: fc.constant('resource' as const), name: fc.constantFrom(...URIS) }),
);

const argsArb: fc.Arbitrary<Record<string, unknown> | undefined> = fc.option(
  fc.record({ a: fc.constantFrom(...ARG_VALUES), b: fc.constantFrom(...ARG_VALUES) }, { requiredKeys: [] }),
  { nil: undefined },
);

/** Every argument object over the alphabet: both paths, each missing or any value, and none at all. */
const ALL_ARGS: ReadonlyArray<Record<string, unknown> | undefined> = (() => {
  const choices = [MISSING, ...ARG_VALUES];
  const out: Array<Record<string, unknown> | undefined> = [undefined];
  for (const a of choices) {
    for (const b of choices) {
      const args: Record<string, unknown> = {};
      if (a !== MISSING) args['a'] = a;
      if (b !== MISSING) args['b'] = b;
      out.push(args);
    }
  }
  return out;
})();

// ---------------------------------------------------------------------------------------------
// A naive reference model of the contract, written independently of the engine.

const glob = (pattern: string, input: string) => picomatch(pattern, { dot: true, windows: false })(input);

function applies(policy: PolicyConfig, caller: Identity): boolean {
  return policy.roles.includes('*') || policy.roles.some((role) => caller.roles.includes(role));
}

function ruleCoversTarget(rule: RuleConfig, target: Target): boolean {
  if (target.server === 'gateway') {
    // Only a server pattern that names "gateway" (and matches it) reaches the gateway's own tools.
    if (rule.server === undefined || !rule.server.includes('gateway') || !glob(rule.server, 'gateway')) return false;
  } else if (rule.server !== undefined && !glob(rule.server, target.server)) return false;
  if (rule.tool !== undefined) return target.kind === 'tool' && glob(rule.tool, target.name);
  if (rule.prompt !== undefined) return target.kind === 'prompt' && glob(rule.prompt, target.name);
  if (rule.resource !== undefined) return target.kind === 'resource' && glob(rule.resource, target.name);
  return true;
}

/** Kleene AND of the rule's conditions: false if one is false, else unknown if one is unknown. */
function conditionsHold(rule: RuleConfig, caller: Identity, args: Record<string, unknown> | undefined): Truth {
  const truths = Object.entries(rule.when ?? {}).map(([path, condition]) => {
    const key = path.slice('args.'.length);
    const value = args !== undefined && Object.hasOwn(args, key) ? args[key] : MISSING;
    return ORACLES.get(JSON.stringify(condition))!(value, caller);
  });
  if (truths.includes(false)) return false;
  return truths.includes(undefined) ? undefined : true;
}

function modelDecide(policies: PolicyConfig[], caller: Identity, target: Target, args: Record<string, unknown> | undefined) {
  const applicable = policies.filter((p) => applies(p, caller));
  // An allow rule needs its conditions true; deny and forbid apply unless they are false.
  const matches = (rule: RuleConfig) => {
    if (!ruleCoversTarget(rule, target)) return false;
    const truth = conditionsHold(rule, caller, args);
    return rule.action === 'allow' ? truth === true : truth !== false;
  };
  for (const policy of applicable) {
    const j = policy.rules.findIndex((rule) => rule.action === 'forbid' && matches(rule));
    if (j >= 0) return { allowed: false, decidedBy: `${policy.id}#${j}`, action: 'forbid' };
  }
  let deny: { allowed: boolean; decidedBy: string; action: string | null } | null = null;
  for (const policy of applicable) {
    const j = policy.rules.findIndex(matches);
    if (j < 0) continue;
    const action = policy.rules[j]!.action;
    if (action === 'allow') return { allowed: true, decidedBy: `${policy.id}#${j}`, action };
    deny ??= { allowed: false, decidedBy: `${policy.id}#${j}`, action };
  }
  return deny ?? { allowed: false, decidedBy: 'default-deny', action: null };
}

// ---------------------------------------------------------------------------------------------

describe('policy engine properties', () => {
  test('decide agrees with a naive reference model of the contract', () => {
    fc.assert(
      fc.property(policiesArb(), callerArb(), targetArb, argsArb, (policies, caller, target, args) => {
        const decision = new PolicyEngine(policies).decide(caller, target, args);
        expect({ allowed: decision.allowed, decidedBy: decision.decidedBy, action: decision.action }).toEqual(
          modelDecide(policies, caller, target, args),
        );
        if (decision.policyId === null) {
          expect(decision).toEqual({ allowed: false, policyId: null, ruleIndex: null, decidedBy: 'default-deny', action: null });
        } else {
          const policy = policies.find((p) => p.id === decision.policyId)!;
          expect(decision.decidedBy).toBe(`${decision.policyId}#${decision.ruleIndex}`);
          expect(policy.rules[decision.ruleIndex!]!.action).toBe(decision.action);
        }
      }),
      RUNS,
    );
  });

  test('(a) a matching unconditional forbid in any applicable policy always wins', () => {
    fc.assert(
      fc.property(
        policiesArb().filter((p) => p.length > 0),
        callerArb(),
        targetArb,
        argsArb,
        fc.nat(),
        fc.nat(),
        fc.boolean(),
        (base, caller, target, args, policyPick, position, named) => {
          // Plant an unconditional forbid covering the target into one policy, made applicable.
          const i = policyPick % base.length;
          const raw = base.map((p) => structuredClone(p)) as PolicyConfig[];
          const forbid = {
            server: target.server,
            ...(named ? { [target.kind]: target.name } : {}),
            action: 'forbid' as const,
          };
          const host = raw[i]!;
          const rules = [...host.rules];
          rules.splice(position % (rules.length + 1), 0, forbid);
          raw[i] = { ...host, roles: [...host.roles, caller.roles[0] ?? '*'], rules };
          const policies = parse(raw);

          const engine = new PolicyEngine(policies);
          const decision = engine.decide(caller, target, args);
          expect(decision.allowed).toBe(false);
          expect(decision.action).toBe('forbid');
          expect(engine.mayAllow(caller, target)).toBe(false);
        },
      ),
      RUNS,
    );
  });

  test('(b) removing a role never grants more when no policy applying only through that role has a forbid', () => {
    fc.assert(
      fc.property(
        policiesArb(),
        callerArb().filter((c) => c.roles.length > 0),
        fc.nat(),
        targetArb,
        argsArb,
        (base, caller, pick, target, args) => {
          const removed = caller.roles[pick % caller.roles.length]!;
          const fewer: Identity = { ...caller, roles: caller.roles.filter((r) => r !== removed) };
          // Policies that apply with all roles but not without `removed` must hold no forbid:
          // a forbid there is the one way an extra role can take something away. So must a deny
          // or forbid whose condition reads the roles themselves (`in: "${consumer.roles}"`):
          // with one role fewer it may no longer match (seed 1611768296 found it).
          const readsRoles = (rule: (typeof base)[number]['rules'][number]) => JSON.stringify(rule.when ?? {}).includes('consumer.roles');
          const policies = base.map((p) =>
            applies(p, caller) && !applies(p, fewer)
              ? { ...p, rules: p.rules.map((rule) => (rule.action === 'forbid' ? { ...rule, action: 'deny' as const } : rule)) }
              : p,
          );
          fc.pre(!policies.some((p) => p.rules.some((rule) => rule.action !== 'allow' && readsRoles(rule))));
          const engine = new PolicyEngine(policies);
          if (engine.decide(fewer, target, args).allowed) expect(engine.decide(caller, target, args).allowed).toBe(true);
          if (engine.mayAllow(fewer, target)) expect(engine.mayAllow(caller, target)).toBe(true);
        },
      ),
      RUNS,
    );
  });

  test('(b) a role no policy names changes nothing, whatever else the caller holds', () => {
    fc.assert(
      fc.property(policiesArb(), callerArb(KNOWN_ROLES), targetArb, argsArb, (policies, caller, target, args) => {
        const engine = new PolicyEngine(policies);
        const more: Identity = { ...caller, roles: [...caller.roles, 'unknown-role'] };
        expect(engine.decide(more, target, args)).toEqual(engine.decide(caller, target, args));
        expect(engine.mayAllow(more, target)).toBe(engine.mayAllow(caller, target));
      }),
      RUNS,
    );
  });

  test('(c) a caller whose roles no policy names, with no "*" policy, is always denied', () => {
    fc.assert(
      fc.property(policiesArb({ roles: KNOWN_ROLES }), callerArb(['x', 'y', '*']), targetArb, argsArb, (policies, caller, target, args) => {
        const engine = new PolicyEngine(policies);
        expect(engine.decide(caller, target, args)).toEqual({
          allowed: false,
          policyId: null,
          ruleIndex: null,
          decidedBy: 'default-deny',
          action: null,
        });
        expect(engine.mayAllow(caller, target)).toBe(false);
      }),
      RUNS,
    );
  });

  test('(d) without conditions, mayAllow equals decide().allowed', () => {
    fc.assert(
      fc.property(policiesArb({ withWhen: false }), callerArb(), targetArb, argsArb, (policies, caller, target, args) => {
        const engine = new PolicyEngine(policies);
        expect(engine.mayAllow(caller, target)).toBe(engine.decide(caller, target, args).allowed);
      }),
      RUNS,
    );
  });

  test('(d) list filtering never shows what a call would refuse: mayAllow false ⇒ denied for every argument', () => {
    fc.assert(
      fc.property(policiesArb(), callerArb(), targetArb, (policies, caller, target) => {
        const engine = new PolicyEngine(policies);
        const anyAllowed = ALL_ARGS.some((args) => engine.decide(caller, target, args).allowed);
        if (!engine.mayAllow(caller, target)) expect(anyAllowed).toBe(false);
        // Equivalently: whatever some call allows, the list shows.
        if (anyAllowed) expect(engine.mayAllow(caller, target)).toBe(true);
      }),
      RUNS,
    );
  });
});

describe('why monotonicity needs the forbid exception', () => {
  test('an extra role whose policy forbids turns an allow into a deny', () => {
    const engine = new PolicyEngine(
      parse([
        { id: 'dev', roles: ['dev'], rules: [{ action: 'allow' }] },
        { id: 'contractor', roles: ['contractor'], rules: [{ tool: 'deploy', action: 'forbid' }] },
      ]),
    );
    const base: Identity = { consumerId: 'c', keyId: 'k', method: 'api-key', roles: ['dev'], claims: {}, expiresAt: null };
    const target: Target = { server: 'ci', kind: 'tool', name: 'deploy' };
    expect(engine.decide(base, target, {}).allowed).toBe(true);
    expect(engine.decide({ ...base, roles: ['dev', 'contractor'] }, target, {}).allowed).toBe(false);
  });
});
