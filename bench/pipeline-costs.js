// The in-process cost of each layer of the request pipeline, measured on the compiled modules with
// a forward step that answers at once: what the gateway adds per call, apart from the stdio hops.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { configSchema } from '../dist/config/schema.js';
import { compose } from '../dist/pipeline/compose.js';
import { CallContext } from '../dist/pipeline/context.js';
import { settle } from '../dist/pipeline/settle.js';
import { identify } from '../dist/identity/stage.js';
import { authorize } from '../dist/policy/stage.js';
import { PolicyEngine } from '../dist/policy/index.js';
import { throttle } from '../dist/ratelimit/stage.js';
import { RateLimiter } from '../dist/ratelimit/limiter.js';
import { audit } from '../dist/audit/stage.js';
import { AuditStore } from '../dist/audit/store.js';
import { meter } from '../dist/metering/stage.js';
import { UsageStore } from '../dist/metering/store.js';
import { Recorder } from '../dist/store/recorder.js';
import { openDatabase } from '../dist/store/db.js';
import { KeyStore } from '../dist/store/keys.js';
import { Session } from '../dist/identity/session.js';
import { Redactor } from '../dist/secrets/redactor.js';
import { silentLogger } from '../dist/log.js';

const CALLS = 20_000;
const WARMUP = 2_000;

export async function pipelineCosts(dir) {
  mkdirSync(dir, { recursive: true });
  const config = configSchema.parse({
    servers: [{ id: 'echo', command: 'node', env: { API_TOKEN: 'a-secret-value-123' } }],
    policies: [
      { id: 'deny-admin', roles: ['*'], rules: [{ server: 'gateway', action: 'deny' }] },
      {
        id: 'reader',
        roles: ['reader', 'bench'],
        rules: [
          { tool: 'refund_*', action: 'forbid' },
          { server: 'billing', action: 'deny' },
          { server: 'echo', tool: '{get,list,search}_*', action: 'allow' },
          { server: 'echo', tool: 'echo', action: 'allow', when: { 'args.message': { maxLength: 1000 } } },
        ],
      },
    ],
    rateLimit: { enabled: true, defaultPerMinute: 60_000_000, rules: [{ server: 'echo', tool: 'echo', perMinute: 60_000_000 }] },
  });
  const db = openDatabase(path.join(dir, 'costs.db'));
  const keys = new KeyStore(db);
  keys.insert({
    id: 'benchkey',
    name: 'bench',
    consumerId: 'bench',
    roles: ['bench'],
    hash: 'x',
    createdAt: new Date().toISOString(),
    expiresAt: null,
    ratePerMinute: null,
    rateBurst: null,
    rotatedFrom: null,
  });
  const identity = Object.freeze({
    consumerId: 'bench',
    keyId: 'benchkey',
    method: 'api-key',
    roles: ['bench'],
    claims: {},
    expiresAt: null,
  });
  // The same per-request check a database key gets: one indexed lookup.
  const session = new Session(identity, (id) => {
    const s = keys.state(id.keyId);
    if (!s || s.revokedAt || s.disabled || s.hash !== 'x') throw new Error('refused');
  });
  const redactor = new Redactor([{ name: 'API_TOKEN', value: 'a-secret-value-123' }]);
  const forward = async function forward(ctx) {
    ctx.forwarded = true;
    ctx.result = { content: [{ type: 'text', text: ctx.arguments.message }] };
  };
  const guard = [identify(), authorize(new PolicyEngine(config.policies), '__'), throttle(new RateLimiter(config.rateLimit))];
  const audits = new AuditStore(db, { hashChain: true, hmacKey: null });
  audits.checkMode();
  const recorder = new Recorder(db, audits, new UsageStore(db), silentLogger);
  recorder.prepare();
  const recording = [audit({ recorder, config: config.audit, redactor, log: silentLogger }), meter(recorder, config.servers, redactor)];

  const variants = [
    { label: 'bare forward', stages: [settle(silentLogger), forward] },
    { label: 'identity + policy + buckets', stages: [settle(silentLogger), ...guard, forward] },
    { label: 'identity + policy + buckets + audit + metering', stages: [...recording, settle(silentLogger), ...guard, forward] },
  ];
  const controller = new AbortController();
  const out = [];
  for (const v of variants) {
    const run = compose(v.stages);
    const once = async () => {
      const ctx = new CallContext(session, {
        method: 'tools/call',
        kind: 'tool',
        server: 'echo',
        name: 'echo',
        arguments: { message: 'hello' },
        entryPoint: false,
        signal: controller.signal,
        progressToken: undefined,
        meta: undefined,
        receivedMeta: undefined,
        notify: async () => {},
      });
      await run(ctx);
      if (ctx.error) throw ctx.error;
    };
    for (let i = 0; i < WARMUP; i++) await once();
    const lat = new Float64Array(CALLS);
    let total = 0;
    for (let i = 0; i < CALLS; i++) {
      const s = performance.now();
      await once();
      lat[i] = performance.now() - s;
      total += lat[i];
    }
    lat.sort();
    out.push({ label: v.label, p50: lat[CALLS >> 1] * 1000, mean: (total / CALLS) * 1000 });
  }
  db.close();
  return out;
}
