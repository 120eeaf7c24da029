/** `mcp-gateway init`: writes a commented gateway.yaml and keeps the database out of git. */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { compileGlob } from '../../config/glob.js';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../paths.js';
import { initTemplate } from '../template.js';
import { usageError } from '../errors.js';

const IGNORE_LINES = ['mcp-gateway.db', 'mcp-gateway.db-wal', 'mcp-gateway.db-shm', 'mcp-gateway.db-reserve'];

/** The demo server inside this package. */
export function demoServerPath(): string {
  return path.join(PACKAGE_ROOT, 'demo', 'demo-server.js');
}

export async function init(options: { dir: string; force?: boolean; config?: string }): Promise<void> {
  // --config names the file to write (like every command's --config names the file to read).
  const file = options.config !== undefined ? path.resolve(options.config) : path.join(path.resolve(options.dir), 'gateway.yaml');
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true });
  if (existsSync(file) && !options.force) {
    throw usageError(`${file} already exists (use --force to overwrite it)`);
  }
  writeFileSync(file, initTemplate(demoServerPath(), process.execPath), { mode: 0o644 });

  const gitignore = path.join(dir, '.gitignore');
  const existing = existsSync(gitignore) ? readFileSync(gitignore, 'utf8') : '';
  // A file that already ignores what is needed (`*.db`, a rule in a parent folder) is left alone.
  const missing = IGNORE_LINES.filter((name) => !isIgnored(dir, name, existing));
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

/**
 * Whether git ignores `name` in `dir`: asked of git itself when `dir` is in a repository (every
 * .gitignore and exclude file counts), else read from the folder's own .gitignore text.
 */
function isIgnored(dir: string, name: string, gitignoreText: string): boolean {
  const git = spawnSync('git', ['check-ignore', '-q', '--', name], { cwd: dir, stdio: 'ignore', timeout: 5_000 });
  if (git.status === 0) return true;
  if (git.status === 1) return false;
  // No git, or not a repository: the last matching line of .gitignore decides (`!` re-includes).
  let ignored = false;
  for (const raw of gitignoreText.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.endsWith('/')) continue;
    const negated = line.startsWith('!');
    const pattern = (negated ? line.slice(1) : line).replace(/^\//, '');
    try {
      if (compileGlob(pattern)(name)) ignored = !negated;
    } catch {
      // A pattern our glob dialect does not take: it decides nothing here.
    }
  }
  return ignored;
}
