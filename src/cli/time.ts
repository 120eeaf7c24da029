/** Times on the command line (design §11): ISO dates, or durations such as `24h`, `7d`, `90m`. */
import { usageError } from './errors.js';

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** Milliseconds of a duration like `90d`; throws a usage error otherwise. */
export function parseDuration(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(text.trim());
  if (!m) throw usageError(`${option}: "${text}" is not a duration (use e.g. 30m, 24h, 7d, 4w)`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

/**
 * An instant: an ISO date or date-time, or a duration meaning "that long ago" (`--since 24h`).
 * Returns ISO 8601 UTC with milliseconds, as the audit log stores it.
 */
export function parseInstant(text: string, option: string, now = Date.now()): string {
  if (/^\d+(?:\.\d+)?\s*[smhdw]$/.test(text.trim())) return new Date(now - parseDuration(text, option)).toISOString();
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw usageError(`${option}: "${text}" is not a date (use ISO 8601 such as 2026-11-01 or a duration such as 24h)`);
  return new Date(t).toISOString();
}

/** A time in the future: a duration from now (`90d`) or an ISO date. */
export function parseExpiry(text: string, option: string, now = Date.now()): string {
  if (/^\d+(?:\.\d+)?\s*[smhdw]$/.test(text.trim())) {
    const ms = parseDuration(text, option);
    if (ms <= 0) throw usageError(`${option}: ${text} is not in the future`);
    return new Date(now + ms).toISOString();
  }
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw usageError(`${option}: "${text}" is not a date or a duration (e.g. 90d or 2027-06-30)`);
  if (t <= now) throw usageError(`${option}: ${text} is in the past`);
  return new Date(t).toISOString();
}

/**
 * An instant for people, in UTC: `2026-03-01 10:27`, with the seconds when it has any
 * (`10:27:14`), and without the date when `sameDayAs` (ISO) is on the same UTC day.
 */
export function formatUtc(iso: string, sameDayAs?: string): string {
  const text = new Date(iso).toISOString(); // 2026-03-01T10:27:14.123Z
  const day = text.slice(0, 10);
  const time = text.slice(17, 23) === '00.000' ? text.slice(11, 16) : text.slice(11, 19);
  return sameDayAs !== undefined && new Date(sameDayAs).toISOString().slice(0, 10) === day ? time : `${day} ${time}`;
}
