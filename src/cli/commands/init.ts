/** `mcp-gateway init`: writes a commented gateway.yaml and keeps the database out of git. */
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initTemplate } from '../template.js';
import { usageError } from '../errors.js';

const IGNORE_LINES = ['mcp-gateway.db', 'mcp-gateway.db-wal', 'mcp-gateway.db-shm', 'mcp-gateway.db-reserve'];

/** The demo server inside this package (dist/cli/commands → ../../../demo). */
export function demoServerPath(): string {
  return fileURLToPath(new URL('../../../demo/demo-server.js', import.meta.url));
}

export async function init(options: { dir: string; force?: boolean }): Promise<void> {
  const dir = path.resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'gateway.yaml');
  if (existsSync(file) && !options.force) {
    throw usageError(`${file} already exists (use --force to overwrite it)`);
  }
  writeFileSync(file, initTemplate(demoServerPath(), process.execPath), { mode: 0o644 });

  const gitignore = path.join(dir, '.gitignore');
  const existing = existsSync(gitignore) ? readFileSync(gitignore, 'utf8') : '';
  const present = new Set(existing.split(/\r?\n/).map((l) => l.trim()));
  const missing = IGNORE_LINES.filter((l) => !present.has(l));
  if (missing.length > 0) {
    const prefix = existing === '' || existing.endsWith('\n') ? '' : '\n';
    writeFileSync(gitignore, `${existing}${prefix}# mcp-gateway database (keys, audit log, usage)\n${missing.join('\n')}\n`);
  }

  process.stdout.write(
    `wrote ${file}\n` +
      (missing.length > 0 ? `added the database to ${gitignore}\n` : '') +
      `\nnext:\n` +
      `  mcp-gateway check --config ${file}\n` +
      `  mcp-gateway keys create "my laptop" me reader --config ${file}\n` +
      `  mcp-gateway claude-config --config ${file}\n`,
  );
}
