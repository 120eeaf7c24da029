/**
 * Unit tests of the policy engine's contract (design §4): rule matching, precedence, conditions,
 * templates, globs, the gateway-server safety rule and list filtering (`mayAllow`).
 */
import { describe, expect, test } from 'vitest';
import { configSchema, type PolicyConfig } from '../../src/config/schema.js';
import type { Identity } from '../../src/identity/identity.js';
import { PolicyEngine, type Decision, type Target } from '../../src/policy/index.js';

/** Policies as the loader hands them over: parsed (defaults, validation) and deep-frozen. */
function parsePolicies(policies: unknown[]): PolicyConfig[] {
  return deepFreeze(configSchema.parse({ policies }).policies);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

function engineOf(policies: unknown[]): PolicyEngine {
  return new PolicyEngine(parsePolicies(policies));
}

function apiKeyCaller(roles: string[], extra: Partial<Identity> = {}): Identity {
  return { consumerId: 'alice', keyId: 'k1', method: 'api-key', roles, claims: {}, expiresAt: null, ...extra };
}

function jwtCaller(roles: string[], claims: Record<string, unknown>, consumerId = 'alice'): Identity {
  return { consumerId, keyId: null, method: 'jwt', roles, claims, expiresAt: null };
}

const tool = (server: string, name: string): Target => ({ server, kind: 'tool', name });
const prompt = (server: string, name: string): Target => ({ server, kind: 'prompt', name });
const resource = (server: string, uri: string): Target => ({ server, kind: 'resource', name: uri });

const decided = (policyId: string, ruleIndex: number, action: 'allow' | 'deny' | 'forbid'): Decision => ({
  allowed: action === 'allow',
  policyId,
  ruleIndex,
  decidedBy: `${policyId}#${ruleIndex}`,
  action,
});
const DEFAULT_DENY: Decision = { allowed: false, policyId: null, ruleIndex: null, decidedBy: 'default-deny', action: null };

/** True when a single `allow` rule guarded by `when` allows the call for `caller` with `args`. */
function conditionHolds(
  when: Record<string, unknown>,
  args: Record<string, unknown> | undefined,
  caller: Identity = apiKeyCaller(['r']),
): boolean {
  const engine = engineOf([{ id: 'p', roles: ['r'], rules: [{ action: 'allow', when }] }]);
  return engine.decide(caller, tool('fs', 'read'), args).allowed;
}

// ---------------------------------------------------------------------------------------------

describe('operators', () => {
  const a = (condition: Record<string, unknown>) => ({ 'args.a': condition });

  test.each<[string, Record<string, unknown>, Record<string, unknown> | undefined, boolean]>([
    // eq
    ['eq string', a({ eq: 'x' }), { a: 'x' }, true],
    ['eq other string', a({ eq: 'x' }), { a: 'y' }, false],
    ['eq number', a({ eq: 5 }), { a: 5 }, true],
    ['eq no coercion "5" vs 5', a({ eq: 5 }), { a: '5' }, false],
    ['eq no coercion 5 vs "5"', a({ eq: '5' }), { a: 5 }, false],
    ['eq no coercion true vs "true"', a({ eq: true }), { a: 'true' }, false],
    ['eq no coercion 0 vs false', a({ eq: false }), { a: 0 }, false],
    ['eq deep object', a({ eq: { b: [1, { c: 'd' }] } }), { a: { b: [1, { c: 'd' }] } }, true],
    ['eq deep object, other key order', a({ eq: { x: 1, y: 2 } }), { a: { y: 2, x: 1 } }, true],
    ['eq deep object, extra key', a({ eq: { x: 1 } }), { a: { x: 1, y: 2 } }, false],
    ['eq deep object, missing key', a({ eq: { x: 1, y: 2 } }), { a: { x: 1 } }, false],
    ['eq array order matters', a({ eq: [1, 2] }), { a: [2, 1] }, false],
    ['eq array vs object', a({ eq: [] }), { a: {} }, false],
    ['eq missing path', a({ eq: 'x' }), {}, false],
    ['eq null equals null', a({ eq: null }), { a: null }, true],
    ['eq null vs missing', a({ eq: null }), {}, false],
    ['eq null vs 0', a({ eq: null }), { a: 0 }, false],
    ['eq string vs null', a({ eq: 'x' }), { a: null }, false],
    // ne
    ['ne differs', a({ ne: 'x' }), { a: 'y' }, true],
    ['ne same', a({ ne: 'x' }), { a: 'x' }, false],
    ['ne missing path is false', a({ ne: 'x' }), {}, false],
    ['ne null argument is false', a({ ne: 'x' }), { a: null }, false],
    ['ne of another type cannot be evaluated (no coercion): an allow does not match', a({ ne: 5 }), { a: '5' }, false],
    ['ne deep equal is false', a({ ne: { b: [1] } }), { a: { b: [1] } }, false],
    ['ne null operand, value present', a({ ne: null }), { a: 1 }, true],
    // in / notIn
    ['in contains', a({ in: ['x', 'y'] }), { a: 'y' }, true],
    ['in does not contain', a({ in: ['x', 'y'] }), { a: 'z' }, false],
    ['in no coercion', a({ in: [1, 2] }), { a: '1' }, false],
    ['in deep equality', a({ in: [{ k: 1 }] }), { a: { k: 1 } }, true],
    ['in missing path', a({ in: ['x'] }), {}, false],
    ['in null argument', a({ in: [null] }), { a: null }, false],
    ['in empty list', a({ in: [] }), { a: 'x' }, false],
    ['notIn not contained', a({ notIn: ['x'] }), { a: 'y' }, true],
    ['notIn contained', a({ notIn: ['x'] }), { a: 'x' }, false],
    ['notIn missing path is false', a({ notIn: ['x'] }), {}, false],
    ['notIn null argument is false', a({ notIn: ['x'] }), { a: null }, false],
    ['notIn of another type cannot be evaluated (no coercion): an allow does not match', a({ notIn: [1] }), { a: '1' }, false],
    // glob
    ['glob *', a({ glob: 'db-*' }), { a: 'db-prod' }, true],
    ['glob * no match', a({ glob: 'db-*' }), { a: 'web' }, false],
    ['glob * does not cross /', a({ glob: '/data/*' }), { a: '/data/x/y' }, false],
    ['glob ** crosses /', a({ glob: '/data/**' }), { a: '/data/x/y' }, true],
    ['glob dot files', a({ glob: '/data/*' }), { a: '/data/.env' }, true],
    ['glob braces', a({ glob: '*.{md,txt}' }), { a: 'notes.txt' }, true],
    ['glob braces no match', a({ glob: '*.{md,txt}' }), { a: 'run.sh' }, false],
    ['glob character class', a({ glob: 'v[0-9]' }), { a: 'v7' }, true],
    ['glob character class no match', a({ glob: 'v[0-9]' }), { a: 'vx' }, false],
    ['glob non-string', a({ glob: '*' }), { a: 5 }, false],
    ['glob missing', a({ glob: '*' }), {}, false],
    ['glob null', a({ glob: '*' }), { a: null }, false],
    // regex
    ['regex whole value', a({ regex: 'a+' }), { a: 'aaa' }, true],
    ['regex is anchored at the end', a({ regex: 'a+' }), { a: 'aaab' }, false],
    ['regex is anchored at the start', a({ regex: 'a+' }), { a: 'baaa' }, false],
    ['regex alternation is grouped before anchoring', a({ regex: 'foo|bar' }), { a: 'foobar' }, false],
    ['regex alternation', a({ regex: 'foo|bar' }), { a: 'bar' }, true],
    ['regex unicode flag', a({ regex: '.' }), { a: '😀' }, true],
    ['regex non-string', a({ regex: '\\d+' }), { a: 123 }, false],
    ['regex missing', a({ regex: '.*' }), {}, false],
    ['regex null', a({ regex: '.*' }), { a: null }, false],
    // comparisons
    ['lt true', a({ lt: 10 }), { a: 5 }, true],
    ['lt boundary', a({ lt: 10 }), { a: 10 }, false],
    ['lte boundary', a({ lte: 10 }), { a: 10 }, true],
    ['gt true', a({ gt: 0 }), { a: 1 }, true],
    ['gt boundary', a({ gt: 0 }), { a: 0 }, false],
    ['gte boundary', a({ gte: 0 }), { a: 0 }, true],
    ['gte below', a({ gte: 0 }), { a: -1 }, false],
    ['lt numeric string is false', a({ lt: 10 }), { a: '5' }, false],
    ['lt boolean is false', a({ lt: 10 }), { a: false }, false],
    ['lt missing', a({ lt: 10 }), {}, false],
    ['lt null', a({ lt: 10 }), { a: null }, false],
    ['gt operand given as a string in YAML', a({ gt: '3' }), { a: 4 }, true],
    ['range inside', a({ gt: 0, lt: 10 }), { a: 5 }, true],
    ['range outside: every operator must hold', a({ gt: 0, lt: 10 }), { a: 10 }, false],
    // exists
    ['exists true, present', a({ exists: true }), { a: 'x' }, true],
    ['exists true, falsy but present', a({ exists: true }), { a: 0 }, true],
    ['exists true, empty string', a({ exists: true }), { a: '' }, true],
    ['exists true, false', a({ exists: true }), { a: false }, true],
    ['exists true, missing', a({ exists: true }), {}, false],
    ['exists true, null', a({ exists: true }), { a: null }, false],
    ['exists false, missing', a({ exists: false }), {}, true],
    ['exists false, null', a({ exists: false }), { a: null }, true],
    ['exists false, present', a({ exists: false }), { a: 1 }, false],
    ['exists false, no arguments at all', a({ exists: false }), undefined, true],
    ['exists false plus eq on a missing path', a({ exists: false, eq: 1 }), {}, false],
    // maxLength
    ['maxLength string within', a({ maxLength: 3 }), { a: 'abc' }, true],
    ['maxLength string over', a({ maxLength: 3 }), { a: 'abcd' }, false],
    ['maxLength counts code points', a({ maxLength: 3 }), { a: '😀😀😀' }, true],
    ['maxLength code points over', a({ maxLength: 3 }), { a: '😀😀😀😀' }, false],
    ['maxLength array within', a({ maxLength: 3 }), { a: [1, 2, 3] }, true],
    ['maxLength array over', a({ maxLength: 3 }), { a: [1, 2, 3, 4] }, false],
    ['maxLength zero, empty string', a({ maxLength: 0 }), { a: '' }, true],
    ['maxLength number is false', a({ maxLength: 3 }), { a: 5 }, false],
    ['maxLength object is false', a({ maxLength: 3 }), { a: {} }, false],
    ['maxLength missing', a({ maxLength: 3 }), {}, false],
    ['maxLength null', a({ maxLength: 3 }), { a: null }, false],
  ])('%s', (_name, when, args, expected) => {
    expect(conditionHolds(when, args)).toBe(expected);
  });
});

describe('paths', () => {
  test.each<[string, Record<string, unknown>, Record<string, unknown> | undefined, boolean]>([
    ['nested objects', { 'args.a.b.c': { eq: 1 } }, { a: { b: { c: 1 } } }, true],
    ['nested, missing middle', { 'args.a.b.c': { exists: true } }, { a: {} }, false],
    ['through a primitive', { 'args.a.length': { exists: true } }, { a: 'abc' }, false],
    ['array by index', { 'args.items.0.id': { eq: 'x' } }, { items: [{ id: 'x' }] }, true],
    ['array second index', { 'args.items.1': { eq: 'y' } }, { items: ['x', 'y'] }, true],
    ['array index out of range', { 'args.items.5': { exists: false } }, { items: ['x'] }, true],
    ['array "length" is not an element', { 'args.items.length': { exists: true } }, { items: ['x'] }, false],
    ['array non-canonical index', { 'args.items.01': { exists: true } }, { items: ['x', 'y'] }, false],
    ['numeric key on an object', { 'args.m.0': { eq: 'z' } }, { m: { '0': 'z' } }, true],
    ['__proto__ is not inherited', { 'args.__proto__': { exists: true } }, {}, false],
    ['constructor is not inherited', { 'args.constructor': { exists: true } }, {}, false],
    ['toString is not inherited', { 'args.toString': { exists: true } }, {}, false],
    ['nested __proto__ walk is refused', { 'args.a.__proto__.polluted': { exists: true } }, { a: Object.create({ polluted: 1 }) }, false],
    ['inherited property is missing', { 'args.a.inherited': { exists: false } }, { a: Object.create({ inherited: 1 }) }, true],
    ['own __proto__ key (JSON) is found', { 'args.__proto__.x': { eq: 1 } }, JSON.parse('{"__proto__": {"x": 1}}'), true],
    ['own constructor key is found', { 'args.constructor': { eq: 'c' } }, { constructor: 'c' }, true],
    ['no arguments at all', { 'args.a': { exists: true } }, undefined, false],
    ['every path must hold (both)', { 'args.a': { eq: 1 }, 'args.b': { eq: 2 } }, { a: 1, b: 2 }, true],
    ['every path must hold (one fails)', { 'args.a': { eq: 1 }, 'args.b': { eq: 2 } }, { a: 1, b: 3 }, false],
  ])('%s', (_name, when, args, expected) => {
    expect(conditionHolds(when, args)).toBe(expected);
  });
});

describe('templates', () => {
  const api = apiKeyCaller(['r', 'ops']);
  const jwt = jwtCaller(['r'], { org: { tenant: 'acme' }, groups: ['g1', 'g2'], n: 5, gone: null }, 'bob');

  test.each<[string, Record<string, unknown>, Record<string, unknown>, Identity, boolean]>([
    ['consumer.id eq', { 'args.owner': { eq: '${consumer.id}' } }, { owner: 'alice' }, api, true],
    ['consumer.id eq other', { 'args.owner': { eq: '${consumer.id}' } }, { owner: 'mallory' }, api, false],
    ['consumer.id in text', { 'args.path': { eq: '/home/${consumer.id}/x' } }, { path: '/home/alice/x' }, api, true],
    ['consumer.id ne', { 'args.owner': { ne: '${consumer.id}' } }, { owner: 'bob' }, api, true],
    ['consumer.roles in', { 'args.role': { in: '${consumer.roles}' } }, { role: 'ops' }, api, true],
    ['consumer.roles in, not a role', { 'args.role': { in: '${consumer.roles}' } }, { role: 'admin' }, api, false],
    ['consumer.roles notIn', { 'args.role': { notIn: '${consumer.roles}' } }, { role: 'admin' }, api, true],
    ['consumer.roles eq the whole list', { 'args.roles': { eq: '${consumer.roles}' } }, { roles: ['r', 'ops'] }, api, true],
    ['template items in a list', { 'args.owner': { in: ['${consumer.id}', 'shared'] } }, { owner: 'alice' }, api, true],
    ['plain items next to templates', { 'args.owner': { in: ['${consumer.id}', 'shared'] } }, { owner: 'shared' }, api, true],
    ['in a template that is not a list', { 'args.owner': { in: '${consumer.id}' } }, { owner: 'alice' }, api, false],
    ['key.id for an API key', { 'args.key': { eq: '${key.id}' } }, { key: 'k1' }, api, true],
    ['key.id for JWT (null) eq → false', { 'args.key': { eq: '${key.id}' } }, { key: null }, jwt, false],
    ['key.id for JWT ne → false (fail closed)', { 'args.key': { ne: '${key.id}' } }, { key: 'zzz' }, jwt, false],
    ['key.id for JWT notIn → false', { 'args.key': { notIn: ['${key.id}'] } }, { key: 'zzz' }, jwt, false],
    ['key.id for JWT in text → false', { 'args.key': { ne: 'k-${key.id}' } }, { key: 'zzz' }, jwt, false],
    ['claims dotted path', { 'args.tenant': { eq: '${claims.org.tenant}' } }, { tenant: 'acme' }, jwt, true],
    ['claims dotted path, other value', { 'args.tenant': { eq: '${claims.org.tenant}' } }, { tenant: 'evil' }, jwt, false],
    ['claims array index', { 'args.group': { eq: '${claims.groups.1}' } }, { group: 'g2' }, jwt, true],
    ['claims list for in', { 'args.group': { in: '${claims.groups}' } }, { group: 'g1' }, jwt, true],
    ['claims raw number, no coercion', { 'args.n': { eq: '${claims.n}' } }, { n: '5' }, jwt, false],
    ['claims raw number', { 'args.n': { eq: '${claims.n}' } }, { n: 5 }, jwt, true],
    ['claims number interpolated as text', { 'args.n': { eq: 'n-${claims.n}' } }, { n: 'n-5' }, jwt, true],
    ['missing claim → false', { 'args.tenant': { eq: '${claims.org.region}' } }, { tenant: 'acme' }, jwt, false],
    ['missing claim ne → false', { 'args.tenant': { ne: '${claims.nope}' } }, { tenant: 'acme' }, jwt, false],
    ['missing claim notIn → false', { 'args.tenant': { notIn: '${claims.nope}' } }, { tenant: 'acme' }, jwt, false],
    ['null claim → false', { 'args.tenant': { ne: '${claims.gone}' } }, { tenant: 'acme' }, jwt, false],
    ['claims not on API keys', { 'args.tenant': { ne: '${claims.org.tenant}' } }, { tenant: 'x' }, api, false],
    ['claims through the prototype', { 'args.x': { ne: '${claims.constructor}' } }, { x: 'y' }, jwt, false],
    ['a list has no text form', { 'args.x': { ne: 'roles: ${consumer.roles}' } }, { x: 'y' }, api, false],
    ['glob with template', { 'args.path': { glob: '/home/${consumer.id}/**' } }, { path: '/home/alice/a/b' }, api, true],
    ['glob with template, other home', { 'args.path': { glob: '/home/${consumer.id}/**' } }, { path: '/home/bob/a' }, api, false],
    ['glob template inside braces', { 'args.p': { glob: '/{${consumer.id},shared}/*' } }, { p: '/shared/x' }, api, true],
    ['glob template with missing value', { 'args.p': { glob: '/t/${claims.nope}/*' } }, { p: '/t/x/y' }, jwt, false],
    ['glob with a template next to a literal $', { 'args.p': { glob: '$${consumer.id}' } }, { p: '$alice' }, api, true],
    ['literal ${a,b} stays a glob brace', { 'args.p': { glob: 'x${a,b}' } }, { p: 'x$b' }, api, true],
  ])('%s', (_name, when, args, caller, expected) => {
    expect(conditionHolds(when, args, caller)).toBe(expected);
  });

  test('template values are literal inside globs: a consumer id cannot inject pattern syntax', () => {
    const star = apiKeyCaller(['r'], { consumerId: 'a*' });
    const when = { 'args.path': { glob: '/home/${consumer.id}/*' } };
    expect(conditionHolds(when, { path: '/home/a*/x' }, star)).toBe(true);
    expect(conditionHolds(when, { path: '/home/ab/x' }, star)).toBe(false);
    const odd = apiKeyCaller(['r'], { consumerId: '"{x,y}[z]\\!(q)' });
    expect(conditionHolds(when, { path: '/home/"{x,y}[z]\\!(q)/f' }, odd)).toBe(true);
    expect(conditionHolds(when, { path: '/home/x/f' }, odd)).toBe(false);
  });

  // The config schema compiles a regex as written (templates included), where `${` is not valid
  // with the `u` flag; the engine supports templates in regexes, so these rules are built directly.
  function regexEngine(regex: string): PolicyEngine {
    const [policy] = configSchema.parse({
      policies: [{ id: 'p', roles: ['r'], rules: [{ action: 'allow', when: { 'args.a': { regex: 'placeholder' } } }] }],
    }).policies;
    const rule = { ...policy!.rules[0]!, when: { 'args.a': { regex } } };
    return new PolicyEngine([{ ...policy!, rules: [rule] }]);
  }

  test.each<[string, string, string, boolean]>([
    ['alice', '${consumer.id}-[0-9]+', 'alice-12', true],
    ['alice', '${consumer.id}-[0-9]+', 'alice-', false],
    ['a.c', '${consumer.id}', 'abc', false],
    ['a.c', '${consumer.id}', 'a.c', true],
    ['a|b', '${consumer.id}', 'a', false],
    ['x', '(${consumer.id}|shared)/.*', 'shared/f', true],
  ])('regex template: consumer %j, %j on %j → %s', (consumerId, regex, value, expected) => {
    const caller = apiKeyCaller(['r'], { consumerId });
    expect(regexEngine(regex).decide(caller, tool('fs', 'read'), { a: value }).allowed).toBe(expected);
  });

  test('regex template with a missing value fails closed', () => {
    const caller = jwtCaller(['r'], {});
    expect(regexEngine('.*${claims.nope}.*').decide(caller, tool('fs', 'read'), { a: 'anything' }).allowed).toBe(false);
  });
});

describe('precedence', () => {
  const r = apiKeyCaller(['r']);

  test.each<[string, unknown[], Identity, Target, Decision]>([
    [
      'forbid in another policy beats allow',
      [
        { id: 'open', roles: ['r'], rules: [{ action: 'allow' }] },
        { id: 'guard', roles: ['r'], rules: [{ tool: 'delete_*', action: 'forbid' }] },
      ],
      r,
      tool('fs', 'delete_all'),
      decided('guard', 0, 'forbid'),
    ],
    [
      'forbid later in the same policy beats an earlier allow',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow' }, { tool: 'rm', action: 'forbid' }] }],
      r,
      tool('fs', 'rm'),
      decided('p', 1, 'forbid'),
    ],
    [
      'a forbid that does not match changes nothing',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow' }, { tool: 'rm', action: 'forbid' }] }],
      r,
      tool('fs', 'ls'),
      decided('p', 0, 'allow'),
    ],
    [
      'the first of several matching forbids is named',
      [
        { id: 'a', roles: ['r'], rules: [{ action: 'allow' }, { tool: 'x', action: 'forbid' }, { action: 'forbid' }] },
        { id: 'b', roles: ['r'], rules: [{ action: 'forbid' }] },
      ],
      r,
      tool('fs', 'x'),
      decided('a', 1, 'forbid'),
    ],
    [
      'first match per policy: deny before allow',
      [{ id: 'p', roles: ['r'], rules: [{ tool: 'rm', action: 'deny' }, { action: 'allow' }] }],
      r,
      tool('fs', 'rm'),
      decided('p', 0, 'deny'),
    ],
    [
      'first match per policy: later allow for other tools',
      [{ id: 'p', roles: ['r'], rules: [{ tool: 'rm', action: 'deny' }, { action: 'allow' }] }],
      r,
      tool('fs', 'ls'),
      decided('p', 1, 'allow'),
    ],
    [
      'first match per policy: allow before deny',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow' }, { tool: 'rm', action: 'deny' }] }],
      r,
      tool('fs', 'rm'),
      decided('p', 0, 'allow'),
    ],
    [
      'deny in one policy + allow in another = allowed',
      [
        { id: 'strict', roles: ['r'], rules: [{ tool: 'rm', action: 'deny' }] },
        { id: 'loose', roles: ['r'], rules: [{ action: 'allow' }] },
      ],
      r,
      tool('fs', 'rm'),
      decided('loose', 0, 'allow'),
    ],
    [
      'the first allowing policy in config order is named',
      [
        { id: 'one', roles: ['r'], rules: [{ tool: 'zzz', action: 'allow' }] },
        { id: 'two', roles: ['r'], rules: [{ tool: 'nope', action: 'deny' }, { action: 'allow' }] },
        { id: 'three', roles: ['r'], rules: [{ action: 'allow' }] },
      ],
      r,
      tool('fs', 'ls'),
      decided('two', 1, 'allow'),
    ],
    [
      'the first denying policy is named when nothing allows',
      [
        { id: 'other', roles: ['r'], rules: [{ tool: 'zzz', action: 'allow' }] },
        { id: 'd1', roles: ['r'], rules: [{ tool: 'x', action: 'allow', when: { 'args.a': { eq: 1 } } }, { action: 'deny' }] },
        { id: 'd2', roles: ['r'], rules: [{ action: 'deny' }] },
      ],
      r,
      tool('fs', 'x'),
      decided('d1', 1, 'deny'),
    ],
    [
      'default deny when nothing matches',
      [{ id: 'p', roles: ['r'], rules: [{ tool: 'ls', action: 'allow' }] }],
      r,
      tool('fs', 'rm'),
      DEFAULT_DENY,
    ],
    [
      'default deny without applicable policies',
      [{ id: 'p', roles: ['other'], rules: [{ action: 'allow' }] }],
      r,
      tool('fs', 'ls'),
      DEFAULT_DENY,
    ],
    ['default deny with no policies at all', [], r, tool('fs', 'ls'), DEFAULT_DENY],
    [
      '"*" policy applies to every caller',
      [{ id: 'all', roles: ['*'], rules: [{ action: 'allow' }] }],
      r,
      tool('fs', 'ls'),
      decided('all', 0, 'allow'),
    ],
    [
      '"*" policy applies to a caller without roles',
      [{ id: 'all', roles: ['*'], rules: [{ action: 'allow' }] }],
      apiKeyCaller([]),
      tool('fs', 'ls'),
      decided('all', 0, 'allow'),
    ],
    [
      '"*" among other roles',
      [{ id: 'all', roles: ['admin', '*'], rules: [{ action: 'allow' }] }],
      apiKeyCaller(['nobody']),
      tool('fs', 'ls'),
      decided('all', 0, 'allow'),
    ],
    [
      'a caller role "*" is not a wildcard',
      [{ id: 'admins', roles: ['admin'], rules: [{ action: 'allow' }] }],
      apiKeyCaller(['*']),
      tool('fs', 'ls'),
      DEFAULT_DENY,
    ],
    [
      'a "*" forbid binds every caller',
      [
        { id: 'admins', roles: ['admin'], rules: [{ action: 'allow' }] },
        { id: 'nobody-deletes', roles: ['*'], rules: [{ tool: 'delete', action: 'forbid' }] },
      ],
      apiKeyCaller(['admin']),
      tool('fs', 'delete'),
      decided('nobody-deletes', 0, 'forbid'),
    ],
    [
      'a forbid of a role the caller lacks does not apply',
      [
        { id: 'open', roles: ['r'], rules: [{ action: 'allow' }] },
        { id: 'guard', roles: ['guest'], rules: [{ action: 'forbid' }] },
      ],
      r,
      tool('fs', 'rm'),
      decided('open', 0, 'allow'),
    ],
    [
      'multi-role caller: one role denies, another allows',
      [
        { id: 'dev', roles: ['dev'], rules: [{ tool: 'deploy', action: 'deny' }] },
        { id: 'ops', roles: ['ops'], rules: [{ tool: 'deploy', action: 'allow' }] },
      ],
      apiKeyCaller(['dev', 'ops']),
      tool('ci', 'deploy'),
      decided('ops', 0, 'allow'),
    ],
    [
      'multi-role caller: a forbid of any role wins',
      [
        { id: 'dev', roles: ['dev'], rules: [{ tool: 'deploy', action: 'forbid' }] },
        { id: 'ops', roles: ['ops'], rules: [{ tool: 'deploy', action: 'allow' }] },
      ],
      apiKeyCaller(['ops', 'dev']),
      tool('ci', 'deploy'),
      decided('dev', 0, 'forbid'),
    ],
    [
      'a role nobody names gets nothing',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow' }] }],
      apiKeyCaller(['stranger']),
      tool('fs', 'ls'),
      DEFAULT_DENY,
    ],
    [
      'an empty role list gets nothing',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow' }] }],
      apiKeyCaller([]),
      tool('fs', 'ls'),
      DEFAULT_DENY,
    ],
  ])('%s', (_name, policies, caller, target, expected) => {
    expect(engineOf(policies).decide(caller, target, {})).toEqual(expected);
  });

  const conditional = engineOf([
    { id: 'open', roles: ['r'], rules: [{ action: 'allow' }] },
    { id: 'guard', roles: ['r'], rules: [{ tool: 'write', action: 'forbid', when: { 'args.path': { glob: '/etc/**' } } }] },
    {
      id: 'limits',
      roles: ['r'],
      rules: [
        { tool: 'query', action: 'deny', when: { 'args.limit': { gt: 100 } } },
        { tool: 'query', action: 'allow', when: { 'args.limit': { lte: 100 } } },
      ],
    },
  ]);

  test.each<[string, Target, Record<string, unknown>, Decision]>([
    ['a conditional forbid that holds', tool('fs', 'write'), { path: '/etc/passwd' }, decided('guard', 0, 'forbid')],
    ['a conditional forbid that does not hold', tool('fs', 'write'), { path: '/tmp/x' }, decided('open', 0, 'allow')],
    ['a conditional forbid without its argument applies (fail closed)', tool('fs', 'write'), {}, decided('guard', 0, 'forbid')],
    [
      'a conditional forbid on an argument of another type applies',
      tool('fs', 'write'),
      { path: ['/etc/passwd'] },
      decided('guard', 0, 'forbid'),
    ],
    ['a conditional forbid on a null argument applies', tool('fs', 'write'), { path: null }, decided('guard', 0, 'forbid')],
    ['conditional rules fall through when false', tool('db', 'query'), { limit: 5 }, decided('open', 0, 'allow')],
  ])('%s', (_name, target, args, expected) => {
    expect(conditional.decide(apiKeyCaller(['r']), target, args)).toEqual(expected);
  });

  test('a conditional deny that does not hold falls through to the next rule of its policy', () => {
    const engine = engineOf([
      {
        id: 'q',
        roles: ['r'],
        rules: [
          { tool: 'query', action: 'deny', when: { 'args.limit': { gt: 100 } } },
          { tool: 'query', action: 'allow' },
        ],
      },
    ]);
    expect(engine.decide(r, tool('db', 'query'), { limit: 5 })).toEqual(decided('q', 1, 'allow'));
    expect(engine.decide(r, tool('db', 'query'), { limit: 500 })).toEqual(decided('q', 0, 'deny'));
    // Without its argument the deny cannot be evaluated, so it applies (fail closed).
    expect(engine.decide(r, tool('db', 'query'), undefined)).toEqual(decided('q', 0, 'deny'));
    expect(engine.decide(r, tool('db', 'query'), { limit: '500' })).toEqual(decided('q', 0, 'deny'));
  });

  test('an unfrozen roles array that changes is re-evaluated, not served from a stale cache', () => {
    const engine = engineOf([{ id: 'admins', roles: ['admin'], rules: [{ action: 'allow' }] }]);
    const roles = ['admin'];
    const caller = apiKeyCaller(roles);
    expect(engine.decide(caller, tool('fs', 'ls'), {}).allowed).toBe(true);
    roles[0] = 'guest';
    expect(engine.decide(caller, tool('fs', 'ls'), {}).allowed).toBe(false);
  });

  test('role sets are compared as sets, whatever characters roles hold', () => {
    const engine = engineOf([{ id: 'p', roles: ['a,b'], rules: [{ action: 'allow' }] }]);
    expect(engine.decide(apiKeyCaller(['a', 'b']), tool('fs', 'ls'), {}).allowed).toBe(false);
    expect(engine.decide(apiKeyCaller(['a,b']), tool('fs', 'ls'), {}).allowed).toBe(true);
    expect(engine.decide(apiKeyCaller(Object.freeze(['b', 'a']) as string[]), tool('fs', 'ls'), {}).allowed).toBe(false);
  });
});

describe('targets: kinds, globs and the gateway server', () => {
  const r = apiKeyCaller(['r']);
  const allowed = (rule: Record<string, unknown>, target: Target) =>
    engineOf([{ id: 'p', roles: ['r'], rules: [{ action: 'allow', ...rule }] }]).decide(r, target, {}).allowed;

  test.each<[string, Record<string, unknown>, Target, boolean]>([
    // kinds
    ['tool rule matches a tool', { tool: '*' }, tool('fs', 'read'), true],
    ['tool rule does not match a prompt', { tool: '*' }, prompt('fs', 'read'), false],
    ['tool rule does not match a resource', { tool: '**' }, resource('fs', 'file:///a'), false],
    ['prompt rule matches a prompt', { prompt: 'summarize' }, prompt('llm', 'summarize'), true],
    ['prompt rule does not match a tool of that name', { prompt: 'summarize' }, tool('llm', 'summarize'), false],
    ['resource rule matches a resource', { resource: 'file:///data/**' }, resource('fs', 'file:///data/a/b.txt'), true],
    ['resource rule does not match a tool of that name', { resource: '**' }, tool('fs', 'read'), false],
    ['a rule naming no kind matches tools', {}, tool('fs', 'read'), true],
    ['a rule naming no kind matches prompts', {}, prompt('fs', 'p'), true],
    ['a rule naming no kind matches resources', {}, resource('fs', 'file:///x'), true],
    // servers
    ['server glob *', { server: 'db-*' }, tool('db-prod', 'q'), true],
    ['server glob * no match', { server: 'db-*' }, tool('web', 'q'), false],
    ['server braces', { server: '{db,cache}' }, tool('cache', 'get'), true],
    ['server braces no match', { server: '{db,cache}' }, tool('dbx', 'get'), false],
    ['server character class', { server: 'shard[12]' }, tool('shard2', 'q'), true],
    ['server character class no match', { server: 'shard[12]' }, tool('shard3', 'q'), false],
    ['server and tool both must match', { server: 'fs', tool: 'read' }, tool('db', 'read'), false],
    // names
    ['tool glob *', { tool: 'read_*' }, tool('fs', 'read_file'), true],
    ['tool glob * no match', { tool: 'read_*' }, tool('fs', 'write_file'), false],
    ['tool braces', { tool: '{read,list}_*' }, tool('fs', 'list_dir'), true],
    ['tool character class', { tool: 'get_[ab]' }, tool('fs', 'get_b'), true],
    ['tool character class no match', { tool: 'get_[ab]' }, tool('fs', 'get_c'), false],
    ['tool glob ** ', { tool: '**' }, tool('fs', 'anything'), true],
    ['tool glob with dot: true', { tool: '*' }, tool('fs', '.hidden'), true],
    ['tool exact name', { tool: 'read' }, tool('fs', 'read'), true],
    ['tool exact name is not a prefix', { tool: 'read' }, tool('fs', 'read_file'), false],
    // resource URIs
    ['resource * stays within a segment', { resource: 'file:///data/*' }, resource('fs', 'file:///data/a'), true],
    ['resource * does not cross /', { resource: 'file:///data/*' }, resource('fs', 'file:///data/a/b.txt'), false],
    ['resource ** crosses /', { resource: 'file:///data/**' }, resource('fs', 'file:///data/a/b/c.txt'), true],
    ['resource ** elsewhere', { resource: 'file:///data/**' }, resource('fs', 'file:///etc/passwd'), false],
    ['resource ** does not allow .. segments', { resource: 'file:///data/**' }, resource('fs', 'file:///data/../etc/passwd'), false],
    ['resource braces', { resource: 'db://{users,orders}/*' }, resource('db', 'db://orders/42'), true],
    ['resource dot files', { resource: 'file:///data/**' }, resource('fs', 'file:///data/.env'), true],
    // the gateway's own tools
    ['a rule without server never matches the gateway', {}, tool('gateway', 'keys_create'), false],
    ['a tool rule without server never matches the gateway', { tool: '*' }, tool('gateway', 'audit_query'), false],
    ['server: gateway matches the gateway', { server: 'gateway', tool: 'audit_*' }, tool('gateway', 'audit_query'), true],
    ['server: gateway, other tool', { server: 'gateway', tool: 'audit_*' }, tool('gateway', 'keys_create'), false],
    ['server: gateway does not match children', { server: 'gateway' }, tool('fs', 'read'), false],
    ['server: "*" does not reach the gateway', { server: '*' }, tool('gateway', 'keys_create'), false],
    ['a glob that matches "gateway" without naming it does not reach it', { server: 'g*' }, tool('gateway', 'audit_query'), false],
    ['a brace list naming gateway reaches it', { server: '{gateway,fs}', tool: 'audit_*' }, tool('gateway', 'audit_query'), true],
    ['server: "*" still matches every child', { server: '*' }, tool('fs', 'read'), true],
    ['an explicit server glob not matching "gateway"', { server: 'db-*' }, tool('gateway', 'keys_create'), false],
  ])('%s', (_name, rule, target, expected) => {
    expect(allowed(rule, target)).toBe(expected);
  });

  test('{ action: allow } allows every child tool but no admin tool; mayAllow agrees', () => {
    const engine = engineOf([{ id: 'everything', roles: ['r'], rules: [{ action: 'allow' }] }]);
    expect(engine.decide(r, tool('fs', 'read'), {})).toEqual(decided('everything', 0, 'allow'));
    expect(engine.decide(r, tool('gateway', 'keys_create'), {})).toEqual(DEFAULT_DENY);
    expect(engine.mayAllow(r, tool('fs', 'read'))).toBe(true);
    expect(engine.mayAllow(r, tool('gateway', 'keys_create'))).toBe(false);
  });

  test('a forbid without server does not touch the gateway either', () => {
    const engine = engineOf([
      { id: 'admin', roles: ['r'], rules: [{ server: 'gateway', action: 'allow' }] },
      { id: 'no-children', roles: ['r'], rules: [{ action: 'forbid' }] },
    ]);
    expect(engine.decide(r, tool('gateway', 'keys_list'), {})).toEqual(decided('admin', 0, 'allow'));
    expect(engine.decide(r, tool('fs', 'read'), {})).toEqual(decided('no-children', 0, 'forbid'));
  });
});

describe('mayAllow (list filtering)', () => {
  const api = apiKeyCaller(['r']);
  const jwt = jwtCaller(['r'], {});
  const when = { 'args.a': { eq: 1 } };

  test.each<[string, unknown[], Identity, Target, boolean]>([
    ['unconditional allow', [{ id: 'p', roles: ['r'], rules: [{ action: 'allow' }] }], api, tool('fs', 'x'), true],
    ['no applicable policy', [{ id: 'p', roles: ['q'], rules: [{ action: 'allow' }] }], api, tool('fs', 'x'), false],
    ['no match', [{ id: 'p', roles: ['r'], rules: [{ tool: 'y', action: 'allow' }] }], api, tool('fs', 'x'), false],
    ['allow with when is possible', [{ id: 'p', roles: ['r'], rules: [{ action: 'allow', when }] }], api, tool('fs', 'x'), true],
    [
      'unconditional forbid in another policy',
      [
        { id: 'p', roles: ['r'], rules: [{ action: 'allow' }] },
        { id: 'f', roles: ['r'], rules: [{ tool: 'x', action: 'forbid' }] },
      ],
      api,
      tool('fs', 'x'),
      false,
    ],
    [
      'unconditional forbid after an allow in the same policy',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow' }, { tool: 'x', action: 'forbid' }] }],
      api,
      tool('fs', 'x'),
      false,
    ],
    [
      'a conditional forbid is ignored',
      [
        { id: 'p', roles: ['r'], rules: [{ action: 'allow' }] },
        { id: 'f', roles: ['r'], rules: [{ action: 'forbid', when }] },
      ],
      api,
      tool('fs', 'x'),
      true,
    ],
    [
      'a conditional forbid first in the walk: keep walking',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'forbid', when }, { action: 'allow' }] }],
      api,
      tool('fs', 'x'),
      true,
    ],
    [
      'a conditional deny first in the walk: keep walking',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'deny', when }, { action: 'allow' }] }],
      api,
      tool('fs', 'x'),
      true,
    ],
    [
      'an unconditional deny decides the policy',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'deny' }, { action: 'allow' }] }],
      api,
      tool('fs', 'x'),
      false,
    ],
    [
      'an unconditional deny in one policy, allow in another',
      [
        { id: 'd', roles: ['r'], rules: [{ action: 'deny' }] },
        { id: 'a', roles: ['r'], rules: [{ action: 'allow' }] },
      ],
      api,
      tool('fs', 'x'),
      true,
    ],
    ['a conditional deny then nothing', [{ id: 'p', roles: ['r'], rules: [{ action: 'deny', when }] }], api, tool('fs', 'x'), false],
    [
      'allow on ${key.id} for an API key is possible',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow', when: { 'args.k': { eq: '${key.id}' } } }] }],
      api,
      tool('fs', 'x'),
      true,
    ],
    [
      'allow on ${key.id} for a JWT caller can never hold',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow', when: { 'args.k': { eq: '${key.id}' } } }] }],
      jwt,
      tool('fs', 'x'),
      false,
    ],
    [
      'a deny whose template never resolves cannot match: the allow after it counts',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'deny', when: { 'args.k': { ne: '${key.id}' } } }, { action: 'allow' }] }],
      jwt,
      tool('fs', 'x'),
      true,
    ],
    [
      'gateway tools need a server: gateway rule',
      [{ id: 'p', roles: ['r'], rules: [{ server: 'gateway', tool: 'audit_*', action: 'allow' }] }],
      api,
      tool('gateway', 'audit_query'),
      true,
    ],
  ])('%s', (_name, policies, caller, target, expected) => {
    expect(engineOf(policies).mayAllow(caller, target)).toBe(expected);
  });

  test('mayAllow false ⇒ decide denies for those arguments too', () => {
    const engine = engineOf([{ id: 'p', roles: ['r'], rules: [{ action: 'allow', when: { 'args.k': { eq: '${key.id}' } } }] }]);
    expect(engine.mayAllow(jwt, tool('fs', 'x'))).toBe(false);
    for (const k of [null, 'k1', '', undefined]) expect(engine.decide(jwt, tool('fs', 'x'), { k }).allowed).toBe(false);
  });
});

describe('construction', () => {
  test.each<[string, unknown[], RegExp]>([
    [
      'invalid tool glob names the rule',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow' }, { tool: 'x[z-a]', action: 'allow' }] }],
      /^policies\[0\]\.rules\[1\] \(policy "p"\)\.tool: invalid glob "x\[z-a\]"/,
    ],
    [
      'invalid server glob names the rule',
      [
        { id: 'ok', roles: ['r'], rules: [{ action: 'allow' }] },
        { id: 'bad', roles: ['r'], rules: [{ server: 'db{', action: 'allow' }] },
      ],
      /^policies\[1\]\.rules\[0\] \(policy "bad"\)\.server: invalid glob/,
    ],
    [
      'invalid resource glob',
      [{ id: 'p', roles: ['r'], rules: [{ resource: 'file:///[z-a]', action: 'allow' }] }],
      /^policies\[0\]\.rules\[0\] \(policy "p"\)\.resource: invalid glob/,
    ],
    [
      'invalid condition glob names rule and condition',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow', when: { 'args.path': { glob: 'a{' } } }] }],
      /^policies\[0\]\.rules\[0\] \(policy "p"\)\.when\["args\.path"\]\.glob: invalid glob "a\{"/,
    ],
    [
      'unknown template',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow', when: { 'args.o': { eq: '${consumer.name}' } } }] }],
      /^policies\[0\]\.rules\[0\] \(policy "p"\)\.when\["args\.o"\]\.eq: unknown template \$\{consumer\.name\}/,
    ],
    [
      'in: a string that is not a single template',
      [{ id: 'p', roles: ['r'], rules: [{ action: 'allow', when: { 'args.o': { in: 'abc' } } }] }],
      /when\["args\.o"\]\.in: give a list/,
    ],
  ])('%s', (_name, policies, message) => {
    // The schema rejects bad globs too; the engine must stand on its own (it compiles what it is given).
    expect(() => new PolicyEngine(policies as PolicyConfig[])).toThrow(message);
  });

  test('an invalid regex names the rule (bypassing schema validation)', () => {
    const [policy] = configSchema.parse({
      policies: [{ id: 'p', roles: ['r'], rules: [{ action: 'allow', when: { 'args.a': { regex: 'x' } } }] }],
    }).policies;
    const rule = { ...policy!.rules[0]!, when: { 'args.a': { regex: '(' } } };
    expect(() => new PolicyEngine([{ ...policy!, rules: [rule] }])).toThrow(
      /^policies\[0\]\.rules\[0\] \(policy "p"\)\.when\["args\.a"\]\.regex: invalid regular expression "\("/,
    );
  });

  test('the engine does not modify the frozen config and returns frozen decisions', () => {
    const policies = parsePolicies([{ id: 'p', roles: ['r'], rules: [{ action: 'allow' }] }]);
    const engine = new PolicyEngine(policies);
    const decision = engine.decide(apiKeyCaller(['r']), tool('fs', 'x'), {});
    expect(Object.isFrozen(decision)).toBe(true);
    expect(Object.isFrozen(engine.decide(apiKeyCaller([]), tool('fs', 'x'), {}))).toBe(true);
  });
});
