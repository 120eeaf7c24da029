/**
 * The pipeline engine: stages run in order, each deciding whether and when to run the rest with
 * `next()`. Code a stage writes after `await next()` runs after every inner stage, which is how the
 * recorder sees outcomes it did not cause.
 */

/**
 * One step of the request path. Throwing is allowed; the outer stages see the exception. A stage
 * that only checks before passing on need not be async: it returns `next()` or, to stop, `DONE`.
 */
export type Stage<C> = (ctx: C, next: () => Promise<void>) => Promise<void>;

/** What a synchronous stage returns when it ends the request itself. */
export const DONE: Promise<void> = Promise.resolve();

/** Composes stages outermost first into one function. A stage may call `next()` at most once. */
export function compose<C>(stages: readonly Stage<C>[]): (ctx: C) => Promise<void> {
  const chain = [...stages];
  return function run(ctx: C): Promise<void> {
    let last = -1;
    const dispatch = (i: number): Promise<void> => {
      if (i <= last) return Promise.reject(new Error(`next() called more than once by stage ${stageName(chain[i - 1])}`));
      last = i;
      const stage = chain[i];
      if (!stage) return Promise.resolve();
      try {
        return stage(ctx, () => dispatch(i + 1));
      } catch (err) {
        return Promise.reject(err);
      }
    };
    return dispatch(0);
  };
}

function stageName(stage: { readonly name: string } | undefined): string {
  return stage?.name || '(anonymous)';
}
