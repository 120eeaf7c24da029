/**
 * The install a user really does (README "Install"): the project packed with `npm pack`, the
 * tarball installed into a temporary global prefix, and the `mcp-gateway` command it puts on the
 * PATH run from an empty folder: `--version`, `init`, then every command `init` suggests. The
 * package has a name of its own, so nothing here can resolve to another package of the registry.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ROOT, tempDir } from '../helpers/gateway.js';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(
  command: string,
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, [...args], { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    proc.on('error', reject);
    proc.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('the packed package, installed globally', { timeout: 600_000 }, () => {
  test('puts mcp-gateway on the PATH; --version, init and every command init suggests work from an empty folder', async () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
    const tmp = tempDir('mcpgw-pack-');
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

    // `npm test` has just built dist/: pack it as is (prepack would rebuild it under running tests).
    const packed = await run(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: ROOT });
    expect(packed.code, packed.stderr).toBe(0);
    const [{ filename }] = JSON.parse(packed.stdout) as [{ filename: string }];
    expect(filename).toBe(`${pkg.name}-${pkg.version}.tgz`);

    const prefix = path.join(tmp, 'prefix');
    const installed = await run(
      npm,
      ['install', '--global', '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline', path.join(tmp, filename)],
      { cwd: tmp, timeoutMs: 540_000 },
    );
    expect(installed.code, installed.stderr).toBe(0);

    const bin = path.join(prefix, 'bin');
    const env = { PATH: `${bin}${path.delimiter}${path.dirname(process.execPath)}${path.delimiter}/usr/bin:/bin`, HOME: tmp };
    const work = path.join(tmp, 'empty');
    mkdirSync(work);
    const gateway = (args: readonly string[]) => run('mcp-gateway', args, { cwd: work, env });

    const version = await gateway(['--version']);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(pkg.version);

    const init = await gateway(['init']);
    expect(init.code, init.stderr).toBe(0);
    // Every command init suggests, run as printed.
    const hints = init.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('mcp-gateway '));
    expect(hints.length).toBeGreaterThanOrEqual(3);
    for (const hint of hints) {
      const args = [...hint.slice('mcp-gateway '.length).matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
      const r = await gateway(args);
      expect(r.code, `${hint}\n${r.stdout}\n${r.stderr}`).toBe(0);
      if (args[0] === 'claude-config') {
        // The entry Claude Desktop would start points into the installed package.
        const entry = (JSON.parse(r.stdout) as { mcpServers: Record<string, { args: string[] }> }).mcpServers['mcp-gateway']!;
        expect(entry.args[0]!.startsWith(prefix)).toBe(true);
      }
    }
    // And check from the folder itself, with the config it found there.
    const check = await gateway(['check']);
    expect(check.code, `${check.stdout}\n${check.stderr}`).toBe(0);
  });
});
