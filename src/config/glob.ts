/**
 * The one glob dialect of gateway.yaml (policies, rate-limit rules, pricing): picomatch with
 * `dot: true` (names may start with a dot), `windows: false` (a backslash escapes, never
 * separates: matching is the same on every host), and `debug: true` (an invalid glob throws
 * instead of silently never matching). The schema uses `globProblem` so a bad glob is a config
 * error with its path; the modules that match use `compileGlob`.
 */
import picomatch from 'picomatch';

export const GLOB_OPTIONS: picomatch.PicomatchOptions = Object.freeze({ dot: true, windows: false, debug: true });

/** A compiled string test. */
export type Matcher = (input: string) => boolean;

/** Compiles a glob into a matcher; throws on an invalid glob. */
export function compileGlob(glob: string): Matcher {
  const re = picomatch.makeRe(glob, GLOB_OPTIONS);
  // Same test as picomatch's own matcher (exact text first, empty input never matches), without
  // the result object it allocates per call.
  return (input) => input === glob || (input !== '' && re.test(input));
}

/** Why a glob cannot be compiled, or null. Templates (`${consumer.id}`) count as literal text. */
export function globProblem(glob: string): string | null {
  if (glob === '') return 'an empty glob matches nothing';
  try {
    picomatch.makeRe(glob.replace(/\$\{[^}]*\}/g, 'x'), GLOB_OPTIONS);
    return null;
  } catch (err) {
    return `invalid glob ${JSON.stringify(glob)}: ${(err as Error).message}`;
  }
}
