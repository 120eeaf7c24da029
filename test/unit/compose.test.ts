/**
 * Unit tests of the pipeline engine (src/pipeline/compose.ts): stages run outermost first, code
 * after `await next()` runs after the inner stages, a second `next()` is refused, errors reach the
 * outer stages.
 */
import { describe, expect, test } from 'vitest';
import { DONE, compose, type Stage } from '../../src/pipeline/compose.js';

interface Ctx {
  log: string[];
}

const ctx = (): Ctx => ({ log: [] });

/** A stage that logs around next(). */
const around =
  (name: string): Stage<Ctx> =>
  async (c, next) => {
    c.log.push(`${name}:before`);
    await next();
    c.log.push(`${name}:after`);
  };

describe('compose', () => {
  test('runs stages in order, and code after next() after every inner stage (onion order)', async () => {
    const c = ctx();
    await compose([around('a'), around('b'), around('c')])(c);
    expect(c.log).toEqual(['a:before', 'b:before', 'c:before', 'c:after', 'b:after', 'a:after']);
  });

  test('code after next() runs after asynchronous inner stages have finished', async () => {
    const c = ctx();
    const slow: Stage<Ctx> = async (x) => {
      await new Promise((r) => setTimeout(r, 20));
      x.log.push('inner done');
    };
    await compose([around('outer'), slow])(c);
    expect(c.log).toEqual(['outer:before', 'inner done', 'outer:after']);
  });

  test('a stage that does not call next() ends the chain there', async () => {
    const c = ctx();
    const stop: Stage<Ctx> = async (x) => {
      x.log.push('stop');
    };
    await compose([around('a'), stop, around('never')])(c);
    expect(c.log).toEqual(['a:before', 'stop', 'a:after']);
  });

  test('an empty pipeline resolves', async () => {
    await expect(compose<Ctx>([])(ctx())).resolves.toBeUndefined();
  });

  test('a second next() rejects, naming the stage', async () => {
    const c = ctx();
    let second: unknown;
    const twice: Stage<Ctx> = async function twice(_x, next) {
      await next();
      try {
        await next();
      } catch (err) {
        second = err;
      }
    };
    await compose([twice, around('inner')])(c);
    expect(second).toBeInstanceOf(Error);
    expect((second as Error).message).toContain('twice');
    // The inner stage ran once only.
    expect(c.log).toEqual(['inner:before', 'inner:after']);
  });

  test('a second next() that is not caught fails the whole run', async () => {
    const twice: Stage<Ctx> = async (_x, next) => {
      await next();
      await next();
    };
    await expect(compose([twice])(ctx())).rejects.toThrow();
  });

  test('errors from inner stages propagate to the outer stages and to the caller', async () => {
    const c = ctx();
    const seen: string[] = [];
    const recorder: Stage<Ctx> = async (_x, next) => {
      try {
        await next();
      } catch (err) {
        seen.push(`caught ${(err as Error).message}`);
        throw err;
      } finally {
        seen.push('finally');
      }
    };
    const boom: Stage<Ctx> = async () => {
      throw new Error('boom');
    };
    await expect(compose([recorder, around('mid'), boom])(c)).rejects.toThrow('boom');
    expect(seen).toEqual(['caught boom', 'finally']);
    // mid's after-code did not run: the error went past it.
    expect(c.log).toEqual(['mid:before']);
  });

  test('a stage that throws synchronously becomes a rejection', async () => {
    const sync = ((): Promise<void> => {
      throw new Error('sync');
    }) as Stage<Ctx>;
    const run = compose([sync]);
    let result: Promise<void> | undefined;
    expect(() => {
      result = run(ctx());
    }).not.toThrow();
    await expect(result).rejects.toThrow('sync');
  });

  test('an outer stage may recover from an inner error', async () => {
    const c = ctx();
    const recover: Stage<Ctx> = async (x, next) => {
      try {
        await next();
      } catch {
        x.log.push('recovered');
      }
    };
    await compose([recover, async () => Promise.reject(new Error('x'))])(c);
    expect(c.log).toEqual(['recovered']);
  });

  test('each run is independent: the composed function can be called many times, concurrently', async () => {
    const run = compose([around('a'), around('b')]);
    const cs = [ctx(), ctx(), ctx()];
    await Promise.all(cs.map((c) => run(c)));
    for (const c of cs) expect(c.log).toEqual(['a:before', 'b:before', 'b:after', 'a:after']);
  });

  test('a synchronous check stage passes on with next() or stops with DONE; outer stages still finish', async () => {
    const check =
      (pass: boolean): Stage<Ctx> =>
      (x, next) => {
        x.log.push(`check:${pass}`);
        return pass ? next() : DONE;
      };
    const passed = ctx();
    await compose([around('outer'), check(true), around('inner')])(passed);
    expect(passed.log).toEqual(['outer:before', 'check:true', 'inner:before', 'inner:after', 'outer:after']);
    const stopped = ctx();
    await compose([around('outer'), check(false), around('never')])(stopped);
    expect(stopped.log).toEqual(['outer:before', 'check:false', 'outer:after']);
  });

  test('an inner rejection passes through a synchronous stage to the outer ones', async () => {
    const c = ctx();
    const check: Stage<Ctx> = (_x, next) => next();
    const recover: Stage<Ctx> = async (x, next) => {
      try {
        await next();
      } catch (err) {
        x.log.push(`recovered:${(err as Error).message}`);
      }
    };
    await compose([recover, check, async () => Promise.reject(new Error('inner'))])(c);
    expect(c.log).toEqual(['recovered:inner']);
  });
});
