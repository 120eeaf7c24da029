/**
 * Keeps secret values from leaving the gateway (design §8): every value injected into a child's
 * `env` (6+ characters) and the gateway's own credentials are replaced by `[REDACTED:NAME]` in
 * results, errors, log lines, status and audit rows.
 */

export interface Secret {
  readonly name: string;
  readonly value: string;
}

/** Shorter values are too likely to occur by chance ("true", "1234") to be redacted. */
export const MIN_SECRET_LENGTH = 6;

export class Redactor {
  private readonly secrets: readonly Secret[];
  /** Each secret as it appears inside a JSON string (escaped), when that differs from itself. */
  private readonly escaped: readonly (string | null)[];

  constructor(secrets: Iterable<Secret>) {
    const byValue = new Map<string, Secret>();
    for (const s of secrets) {
      if (s.value.length >= MIN_SECRET_LENGTH && !byValue.has(s.value)) byValue.set(s.value, s);
    }
    // Longest first, so a secret that contains another is replaced whole.
    this.secrets = [...byValue.values()].sort((a, b) => b.value.length - a.value.length);
    this.escaped = this.secrets.map(({ value }) => {
      const escaped = JSON.stringify(value).slice(1, -1);
      return escaped === value ? null : escaped;
    });
  }

  /** True when there is nothing to redact (the hot path then skips the walk). */
  get empty(): boolean {
    return this.secrets.length === 0;
  }

  /** A new Redactor that also redacts `more`. */
  with(more: Iterable<Secret>): Redactor {
    return new Redactor([...this.secrets, ...more]);
  }

  text(s: string): string {
    for (const { name, value } of this.secrets) {
      if (s.includes(value)) s = s.replaceAll(value, `[REDACTED:${name}]`);
    }
    return s;
  }

  /**
   * Redacts secrets in JSON text: a secret appears there as itself, or JSON-escaped when it holds
   * quotes, backslashes or control characters.
   */
  json(text: string): string {
    for (let i = 0; i < this.secrets.length; i++) {
      const { name, value } = this.secrets[i]!;
      const escaped = this.escaped[i];
      if (text.includes(value)) text = text.replaceAll(value, `[REDACTED:${name}]`);
      if (escaped && text.includes(escaped)) text = text.replaceAll(escaped, `[REDACTED:${name}]`);
    }
    return text;
  }

  /**
   * Redacts every string (values and keys) of a JSON-like value. Returns the same object when
   * nothing needed redacting, so the common case allocates nothing.
   */
  value<T>(v: T): T {
    return this.secrets.length === 0 ? v : (this.walk(v) as T);
  }

  private walk(v: unknown): unknown {
    if (typeof v === 'string') return this.text(v);
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) {
      let out: unknown[] | undefined;
      for (let i = 0; i < v.length; i++) {
        const r = this.walk(v[i]);
        if (r !== v[i]) (out ??= v.slice())[i] = r;
      }
      return out ?? v;
    }
    let out: Record<string, unknown> | undefined;
    for (const key of Object.keys(v)) {
      const item = (v as Record<string, unknown>)[key];
      const r = this.walk(item);
      const k = this.text(key);
      if (r !== item || k !== key) {
        out ??= { ...(v as Record<string, unknown>) };
        if (k !== key) delete out[key];
        out[k] = r;
      }
    }
    return out ?? v;
  }
}
