/**
 * `${VAR}` / `${VAR:-default}` substitution from the environment (design §2), applied to every
 * string value of the parsed YAML. Only names of environment variables are substituted: policy
 * templates such as `${consumer.id}` or `${claims.tenant}` (they contain a dot) are left for the
 * policy engine. `$${` writes a literal `${`.
 */

export class UnsetVariableError extends Error {
  constructor(
    readonly variable: string,
    readonly path: (string | number)[],
  ) {
    super(`\${${variable}} is not set (set ${variable} in the environment, or write \${${variable}:-default})`);
  }
}

/**
 * A `${...}` that starts like a variable name and has no dot (so is no policy template), but is not
 * `${NAME}` or `${NAME:-default}`: `${GITHUB-TOKEN}`, `${VAR-x}`, `${VAR:x}`. Left as it is, the
 * literal text would silently become the value (a token, a path); it is an error instead. The
 * loader reports it like an unset variable: with its path.
 */
export class InvalidReferenceError extends UnsetVariableError {
  constructor(reference: string, path: (string | number)[]) {
    super(reference, path);
    this.message = `\${${reference}} is not a variable reference: write \${NAME} or \${NAME:-default} (NAME of letters, digits and _), or $\${...} for the literal text`;
  }
}

const REFERENCE = /\$(\$?)\{([^}]*)\}/g;
const NAME_REFERENCE = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;
/** What only a mistyped `${VAR}` looks like: `${1}`, `${@}` (shell) and `${consumer.id}` are left alone. */
const LOOKS_LIKE_VARIABLE = /^[A-Za-z_][^.]*$/;

/** Whether an unset variable at this path may be read as empty (commands that start no server). */
export type TolerateUnset = (path: readonly (string | number)[]) => boolean;

export function interpolateString(
  value: string,
  env: NodeJS.ProcessEnv,
  path: (string | number)[],
  used?: Map<string, string>,
  tolerate?: TolerateUnset,
): string {
  if (!value.includes('${')) return value;
  return value.replace(REFERENCE, (whole, escape: string, inner: string) => {
    const reference = NAME_REFERENCE.exec(inner);
    if (escape) return reference || LOOKS_LIKE_VARIABLE.test(inner) ? whole.slice(1) : whole;
    if (!reference) {
      if (LOOKS_LIKE_VARIABLE.test(inner)) throw new InvalidReferenceError(inner, path);
      return whole;
    }
    const name = reference[1]!;
    const fallback = reference[2];
    const found = env[name];
    if (found !== undefined && found !== '') {
      used?.set(name, found);
      return found;
    }
    if (fallback !== undefined) return fallback;
    if (tolerate?.(path)) return '';
    throw new UnsetVariableError(name, path);
  });
}

/**
 * Returns a copy of `node` with every string interpolated. `used` collects the variables read, so
 * their values can be treated as secrets where they land in `env` or `key`.
 */
export function interpolate(
  node: unknown,
  env: NodeJS.ProcessEnv,
  path: (string | number)[] = [],
  used?: Map<string, string>,
  tolerate?: TolerateUnset,
): unknown {
  if (typeof node === 'string') return interpolateString(node, env, path, used, tolerate);
  if (Array.isArray(node)) return node.map((item, i) => interpolate(item, env, [...path, i], used, tolerate));
  if (node !== null && typeof node === 'object' && !(node instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) out[k] = interpolate(v, env, [...path, k], used, tolerate);
    return out;
  }
  return node;
}

/** `servers[1].env.TOKEN` from `['servers', 1, 'env', 'TOKEN']`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else {
      const key = String(part);
      out += /^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(key) ? (out ? `.${key}` : key) : `[${JSON.stringify(key)}]`;
    }
  }
  return out || '(top level)';
}
