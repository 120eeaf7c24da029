/**
 * What the audit log must never hold (design §6, §8): values under `redactKeys` at any depth, and
 * secret values (injected env, the caller's credential). Values longer than `maxRecordBytes` are
 * cut, keeping the SHA-256 of the whole (redacted) value.
 */
import { createHash } from 'node:crypto';
import type { Redactor } from '../secrets/redactor.js';

export const REDACTED = '[REDACTED]';

/**
 * Key names match case-insensitively and ignoring "-" and "_", on the whole name or its end:
 * with `token`, "access_token" and "X-Token" are redacted, "max_tokens" is not. Case is compared
 * by Unicode case folding (the RegExp `iu` flags), so "K" (KELVIN SIGN) is a "k" and "ſ" (LONG S)
 * an "s": the audit pre-filter uses the same folding, so the two always agree on a key.
 */
export function keyMatcher(redactKeys: readonly string[]): (key: string) => boolean {
  const names = keyPattern(redactKeys, (c) => c);
  if (names === null) return () => false;
  const re = new RegExp(`(?:${names})[-_]*$`, 'iu');
  return (key) => re.test(key);
}

/**
 * The pattern of any of `redactKeys` as written in a key: its letters (each passed through
 * `write`, then escaped) with any run of "-" or "_" between them; null when there is none. The
 * runs are `[-_]*` between letters that are never "-" or "_", so a scan does not backtrack.
 */
function keyPattern(redactKeys: readonly string[], write: (letter: string) => string): string | null {
  const names = redactKeys
    .map((k) => [...k.replace(/[-_]/g, '')])
    .filter((letters) => letters.length > 0)
    .map((letters) => letters.map((c) => write(c).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('[-_]*'));
  return names.length > 0 ? names.join('|') : null;
}

/** A copy of `value` with matching keys' values replaced and secret values redacted. */
export function redactForAudit(value: unknown, isSecretKey: (key: string) => boolean, redactor: Redactor): unknown {
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return redactor.text(v);
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return v.map(walk);
    const out: Record<string, unknown> = {};
    for (const [k, item] of Object.entries(v)) out[redactor.text(k)] = isSecretKey(k) ? REDACTED : walk(item);
    return out;
  };
  return walk(value);
}

/**
 * The JSON text the audit log stores for a value: keys under `redactKeys` replaced, secret values
 * redacted, cut to `maxBytes`. Most values hold no such key: the text is then made with one
 * JSON.stringify and one scan, without copying the value.
 */
export function auditJsonFactory(redactKeys: readonly string[], redactor: Redactor, maxBytes: number): (value: unknown) => string {
  const isSecretKey = keyMatcher(redactKeys);
  // A key can match only if its letters appear in the text (JSON-escaped, as JSON.stringify writes
  // a quote, backslash or control character), with "-"/"_" between them, under the same case
  // folding as the matcher: it must never skip a text the matcher would redact a key in.
  const names = keyPattern(redactKeys, (c) => JSON.stringify(c).slice(1, -1));
  const mayHaveKey = names !== null ? new RegExp(names, 'iu') : null;
  return (value) => {
    let text = JSON.stringify(value) ?? 'null';
    if (mayHaveKey?.test(text)) text = JSON.stringify(redactForAudit(value, isSecretKey, redactor)) ?? 'null';
    else if (!redactor.empty) text = redactor.json(text);
    return boundedJson(text, maxBytes);
  };
}

/** JSON text cut to `maxBytes` (UTF-8) as `{"$truncated": {...}}` when longer. */
export function boundedJson(text: string, maxBytes: number): string {
  // A UTF-16 unit is at most 3 UTF-8 bytes: most values are decided without encoding them.
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text) <= maxBytes) return text;
  const bytes = Buffer.byteLength(text);
  const sha256 = createHash('sha256').update(text).digest('hex');
  // Leave room for the envelope; the preview is escaped again inside it, so shrink until it fits.
  const room = Math.max(0, maxBytes - 200);
  let preview = text.slice(0, room);
  while (preview.length > 0 && Buffer.byteLength(JSON.stringify(preview)) > room) {
    preview = preview.slice(0, Math.floor(preview.length * 0.8));
  }
  if (/[\uD800-\uDBFF]$/.test(preview)) preview = preview.slice(0, -1);
  return JSON.stringify({ $truncated: { bytes, sha256, preview } });
}
