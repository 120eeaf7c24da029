/** Output of listings: aligned columns for people, `--json` for scripts. */

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * A table column: the key of the rows it shows and, for a numeric column, how its numbers are
 * written (such a column is aligned right, so the digits line up).
 */
export interface Column {
  readonly name: string;
  readonly format?: (value: number) => string;
}

/** Milliseconds in a table: always two decimals (the precision of the JSON values). */
export const formatMs = (ms: number): string => ms.toFixed(2);

/** Cost in a table: always six decimals (the precision of the JSON values). */
export const formatCost = (cost: number): string => cost.toFixed(6);

/** Counts in a table: whole numbers. */
export const formatCount = (n: number): string => String(Math.round(n));

/** Prints rows as aligned columns under a header; `(none)` when there are no rows. */
export function printTable(rows: readonly Record<string, unknown>[], columns: readonly (string | Column)[]): void {
  process.stdout.write(formatTable(rows, columns));
}

/** The text `printTable` prints (ending with a newline). */
export function formatTable(rows: readonly Record<string, unknown>[], columns: readonly (string | Column)[]): string {
  if (rows.length === 0) return '(none)\n';
  const specs = columns.map((c): Column => (typeof c === 'string' ? { name: c } : c));
  const cell = (v: unknown, spec: Column) =>
    v === null || v === undefined ? '-' : typeof v === 'number' ? (spec.format ?? formatNumber)(v) : String(v);
  const cells = rows.map((r) => specs.map((c) => cell(r[c.name], c).replace(/\s+/g, ' ')));
  const widths = specs.map((c, i) => Math.min(60, Math.max(c.name.length, ...cells.map((row) => row[i]!.length))));
  const line = (values: readonly string[]) =>
    values
      .map((v, i) =>
        v.length > widths[i]! ? `${v.slice(0, widths[i]! - 1)}…` : specs[i]!.format ? v.padStart(widths[i]!) : v.padEnd(widths[i]!),
      )
      .join('  ')
      .trimEnd();
  return `${line(specs.map((c) => c.name))}\n${cells.map(line).join('\n')}\n`;
}

function formatNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(n < 1 ? 4 : 2);
}
