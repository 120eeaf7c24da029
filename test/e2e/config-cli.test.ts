/**
 * The CLI as a user runs it (design §2, §3, §11): exit codes and one-line reasons for a bad
 * config or a missing credential, every problem of a config listed, `init`, `check`, `servers list`, `claude-config`, and `--help`.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { BIN, TEST_KEY, fixture, tempDir, testConfig, writeConfig, type Obj } from '../helpers/gateway.js';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the CLI with a minimal environment (no credential unless given). stdin stays open until the
 * process exits, as an agent would keep it, so `serve` ends only on its own.
 */
function cli(args: string[], options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Run> {
  const cwd = options.cwd ?? tempDir('mcpgw-cli-');
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN, ...args], {
      cwd,
      // TEST_KEY: testConfig() reads the static key from it (it is not the credential).
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? cwd, TEST_KEY, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`mcp-gateway ${args.join(' ')} did not exit within ${options.timeoutMs ?? 60_000} ms; stderr: ${stderr}`));
    }, options.timeoutMs ?? 60_000);
    proc.on('error', reject);
    proc.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Lines of stderr that are not log lines (log lines start with an ISO timestamp). */
function reasonLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z /.test(l));
}

/** A folder with gateway.yaml holding `config`; returns the folder and the file. */
function configIn(config: Obj | string): { dir: string; file: string } {
  const dir = tempDir('mcpgw-cli-');
  return { dir, file: writeConfig(dir, config) };
}

const WITH_KEY = { TEST_KEY, MCP_GATEWAY_API_KEY: TEST_KEY };

describe('serve refuses a bad config with exit code 2 and one line naming the file and the path', () => {
  test('a missing config file', async () => {
    const dir = tempDir('mcpgw-cli-');
    const file = path.join(dir, 'missing.yaml');
    const r = await cli(['serve', '--config', file], { cwd: dir, env: WITH_KEY });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(file);
  });

  test('no --config and no ./gateway.yaml: the default path is named, never an open default', async () => {
    const dir = tempDir('mcpgw-cli-');
    const r = await cli(['serve'], { cwd: dir, env: WITH_KEY });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(path.join(dir, 'gateway.yaml'));
  });

  test('MCP_GATEWAY_CONFIG is used when --config is not given', async () => {
    const { dir, file } = configIn(testConfig({ servers: [{ id: 'a', command: 'node' }, { id: 'b' }] }));
    const r = await cli(['serve'], { cwd: tempDir('mcpgw-cli-'), env: { ...WITH_KEY, MCP_GATEWAY_CONFIG: file } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toContain('servers[1].command');
    expect(existsSync(path.join(dir, 'gateway.db'))).toBe(false);
  });

  test('an invalid config', async () => {
    const { dir, file } = configIn(testConfig({ servers: [{ id: 'ok', command: 'node' }, { id: 'bad' }] }));
    const r = await cli(['serve', '--config', file], { cwd: dir, env: WITH_KEY });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(file);
    expect(lines[0]).toContain('servers[1].command');
  });

  test('invalid YAML names the line', async () => {
    const { dir, file } = configIn('servers:\n  - id: a\n    command: [oops\n');
    const r = await cli(['serve', '--config', file], { cwd: dir, env: WITH_KEY });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toMatch(/line \d+, column \d+/);
  });

  test('an unset variable names the variable and where it is used', async () => {
    const { dir, file } = configIn(
      testConfig({ servers: [{ id: 'svc', ...fixture('echo.js'), env: { API_TOKEN: '${UNSET_TOKEN_FOR_TEST}' } }] }),
    );
    const r = await cli(['serve', '--config', file], { cwd: dir, env: WITH_KEY });
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(file);
    expect(lines[0]).toContain('servers[0].env.API_TOKEN');
    expect(lines[0]).toContain('UNSET_TOKEN_FOR_TEST');
  });

  test('an unknown key', async () => {
    const { dir, file } = configIn(testConfig({ servers: [{ id: 'svc', command: 'node', comand: 'typo' }] }));
    const r = await cli(['serve', '--config', file], { cwd: dir, env: WITH_KEY });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('servers[0]');
    expect(r.stderr).toContain('comand');
  });

  test('other commands refuse a bad config the same way', async () => {
    const { dir, file } = configIn(testConfig({ servers: [{ id: 'gateway', command: 'node' }] }));
    for (const args of [['check'], ['servers', 'list'], ['claude-config'], ['keys', 'list']]) {
      const r = await cli([...args, '--config', file], { cwd: dir });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain('servers[0].id');
    }
  });
});

describe('a config with several problems: every one is listed, one a line, in our words', () => {
  /** A config with three problems, in three places; the did-you-mean names the key meant. */
  const threeProblems = () =>
    testConfig({
      servers: [
        { id: 'a', command: 'node', timeout: 5000 },
        { id: 'b', args: 'not a list' },
      ],
    });
  const PATHS = ['servers[0]', 'servers[1].command', 'servers[1].args'];

  test('check: exit 2, the file on the first line, then each problem as <path>: <reason>', async () => {
    const { dir, file } = configIn(threeProblems());
    const r = await cli(['check', '--config', file], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]!.startsWith(`mcp-gateway: ${file}: `)).toBe(true);
    const problems = lines.slice(1).map((l) => l.trim());
    expect(problems.map((l) => l.slice(0, l.indexOf(': ')))).toEqual(PATHS);
    expect(problems[0]).toContain('"timeout"');
    expect(problems[0]).toContain('"timeoutMs"');
    for (const line of problems) expect(line).not.toMatch(/Invalid input|expected|received/);
    expect(existsSync(path.join(dir, 'gateway.db'))).toBe(false);
  });

  test('serve: exit 2 before starting anything, naming the file and the first problem', async () => {
    const { dir, file } = configIn(threeProblems());
    const r = await cli(['serve', '--config', file], { cwd: dir, env: WITH_KEY });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = reasonLines(r.stderr);
    expect(lines[0]).toContain(file);
    expect(r.stderr).toContain(PATHS[0]);
    expect(existsSync(path.join(dir, 'gateway.db'))).toBe(false);
  });

  test('every unset variable is listed', async () => {
    const { dir, file } = configIn(
      testConfig({
        servers: [{ id: 'svc', command: '${UNSET_BIN_FOR_TEST}', env: { A: '${UNSET_A_FOR_TEST}', B: '${UNSET_B_FOR_TEST}' } }],
      }),
    );
    const r = await cli(['check', '--config', file], { cwd: dir });
    expect(r.code).toBe(2);
    for (const name of ['UNSET_BIN_FOR_TEST', 'UNSET_A_FOR_TEST', 'UNSET_B_FOR_TEST']) expect(r.stderr).toContain(name);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(4);
  });
});

describe('serve refuses to run without a valid credential (exit 1)', () => {
  test('no credential: a one-line reason naming MCP_GATEWAY_API_KEY', async () => {
    const { dir, file } = configIn(testConfig({ servers: [{ id: 'echo', ...fixture('echo.js') }] }));
    const r = await cli(['serve', '--config', file], { cwd: dir, env: { TEST_KEY } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const reasons = reasonLines(r.stderr);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toContain('MCP_GATEWAY_API_KEY');
  });

  test('a wrong key', async () => {
    const { dir, file } = configIn(testConfig());
    const r = await cli(['serve', '--config', file], {
      cwd: dir,
      env: { TEST_KEY, MCP_GATEWAY_API_KEY: 'gw_testkey1_wrongwrongwrongwrongwrongwrong' },
    });
    expect(r.code).toBe(1);
    expect(reasonLines(r.stderr)).toHaveLength(1);
    // The key itself is never echoed.
    expect(r.stderr).not.toContain('wrongwrongwrongwrong');
  });

  test('something that is not a gateway key', async () => {
    const { dir, file } = configIn(testConfig());
    const r = await cli(['serve', '--config', file], { cwd: dir, env: { TEST_KEY, MCP_GATEWAY_API_KEY: 'hello' } });
    expect(r.code).toBe(1);
    expect(reasonLines(r.stderr)).toHaveLength(1);
    expect(reasonLines(r.stderr)[0]).toContain('MCP_GATEWAY_API_KEY');
  });
});

describe('init', () => {
  test('writes gateway.yaml and .gitignore entries; refuses to overwrite without --force', async () => {
    const dir = tempDir('mcpgw-init-');
    writeFileSync(path.join(dir, '.gitignore'), 'node_modules'); // no final newline
    const first = await cli(['init', '--dir', dir]);
    expect(first.code).toBe(0);
    const file = path.join(dir, 'gateway.yaml');
    expect(existsSync(file)).toBe(true);
    const gitignore = readFileSync(path.join(dir, '.gitignore'), 'utf8').split('\n');
    expect(gitignore[0]).toBe('node_modules');
    for (const entry of ['mcp-gateway.db', 'mcp-gateway.db-wal', 'mcp-gateway.db-shm', 'mcp-gateway.db-reserve'])
      expect(gitignore).toContain(entry);

    // Again: refused (exit 2), the file left as the user edited it.
    writeFileSync(file, `${readFileSync(file, 'utf8')}\n# my edit\n`);
    const again = await cli(['init', '--dir', dir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(file);
    expect(readFileSync(file, 'utf8')).toContain('# my edit');

    // --force overwrites; the .gitignore entries are not added twice.
    const forced = await cli(['init', '--dir', dir, '--force']);
    expect(forced.code).toBe(0);
    expect(readFileSync(file, 'utf8')).not.toContain('# my edit');
    const lines = readFileSync(path.join(dir, '.gitignore'), 'utf8').split('\n');
    expect(lines.filter((l) => l === 'mcp-gateway.db')).toHaveLength(1);
  });

  test('the written config passes `check`, which starts the demo server', async () => {
    const dir = tempDir('mcpgw-init-');
    expect((await cli(['init', '--dir', dir])).code).toBe(0);
    const file = path.join(dir, 'gateway.yaml');
    const r = await cli(['check', '--config', file, '--json'], { cwd: tempDir('mcpgw-cli-') });
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { config: string; servers: Obj[] };
    expect(report.config).toBe(file);
    expect(report.servers).toHaveLength(1);
    expect(report.servers[0]).toMatchObject({ id: 'demo', ok: true, error: null });
    expect(report.servers[0]!.tools as number).toBeGreaterThan(0);
    // The plain report too.
    const plain = await cli(['check', '--config', file], { cwd: dir });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('demo');
  });

  test('init in the current folder by default', async () => {
    const dir = tempDir('mcpgw-init-');
    expect((await cli(['init'], { cwd: dir })).code).toBe(0);
    expect(existsSync(path.join(dir, 'gateway.yaml'))).toBe(true);
    expect(existsSync(path.join(dir, '.gitignore'))).toBe(true);
  });
});

describe('check', () => {
  test('exit 1 when a server cannot start (command not found); the others are still checked', async () => {
    const { dir, file } = configIn(
      testConfig({
        servers: [
          { id: 'echo', ...fixture('echo.js') },
          { id: 'ghost', command: path.join(tempDir('mcpgw-none-'), 'no-such-command') },
        ],
      }),
    );
    const r = await cli(['check', '--config', file, '--json'], { cwd: dir });
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as { servers: Obj[] };
    const byId = Object.fromEntries(report.servers.map((s) => [s.id, s]));
    expect(byId['echo']).toMatchObject({ ok: true });
    expect(byId['ghost']).toMatchObject({ ok: false });
    expect(typeof byId['ghost']!.error).toBe('string');
    expect(reasonLines(r.stderr)).toHaveLength(1);
  });

  test("exit 1 when a server's working folder does not exist, and the report names the folder", async () => {
    const missing = path.join(tempDir('mcpgw-none-'), 'no-such-folder');
    const { dir, file } = configIn(testConfig({ servers: [{ id: 'lost', ...fixture('echo.js'), cwd: missing }] }));
    const r = await cli(['check', '--config', file, '--json'], { cwd: dir });
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as { servers: Obj[] };
    expect(report.servers[0]).toMatchObject({ id: 'lost', ok: false });
    expect(report.servers[0]!.error).toContain(missing);
  });

  test('exit 1 when a server exits during startup', async () => {
    const { dir, file } = configIn(testConfig({ servers: [{ id: 'dies', ...fixture('exit-during-init.js') }] }));
    const r = await cli(['check', '--config', file], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('dies');
  });

  test('exit 0 for a config whose servers all start', async () => {
    const { dir, file } = configIn(
      testConfig({
        servers: [
          { id: 'echo', ...fixture('echo.js') },
          { id: 'off', command: 'nowhere', enabled: false },
        ],
      }),
    );
    const r = await cli(['check', '--config', file, '--json'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { servers: Obj[]; disabled: string[] };
    expect(report.servers.map((s) => s.id)).toEqual(['echo']);
    expect(report.disabled).toEqual(['off']);
  });
});

describe('servers list', () => {
  test('--json lists the servers without starting them and without secret values', async () => {
    const SECRET = 'super-secret-token-value';
    const { dir, file } = configIn(
      testConfig({
        servers: [
          { id: 'echo', name: 'Echo', ...fixture('echo.js'), env: { API_TOKEN: SECRET }, start: 'lazy' },
          { id: 'off', command: 'nowhere', enabled: false, args: ['--token', SECRET] },
        ],
      }),
    );
    const r = await cli(['servers', 'list', '--json', '--config', file], { cwd: dir });
    expect(r.code).toBe(0);
    const { servers } = JSON.parse(r.stdout) as { servers: Obj[] };
    expect(servers).toHaveLength(2);
    expect(servers[0]).toMatchObject({ id: 'echo', name: 'Echo', enabled: true, start: 'lazy', env: ['API_TOKEN'] });
    expect(servers[1]).toMatchObject({ id: 'off', name: 'off', enabled: false, start: 'eager' });
    expect(r.stdout).not.toContain(SECRET);
  });

  test('finds ./gateway.yaml in the working folder', async () => {
    const { dir } = configIn(testConfig({ servers: [{ id: 'here', command: 'node' }] }));
    const r = await cli(['servers', 'list', '--json'], { cwd: dir });
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { servers: Obj[] }).servers.map((s) => s.id)).toEqual(['here']);
  });
});

describe('claude-config', () => {
  test('prints valid JSON with absolute paths', async () => {
    const { dir, file } = configIn(testConfig());
    // Run from another folder with a relative --config: the printed path must still be absolute.
    const r = await cli(['claude-config', '--config', path.relative(path.dirname(dir), file)], { cwd: path.dirname(dir) });
    expect(r.code, r.stderr).toBe(0);
    const parsed = JSON.parse(r.stdout) as { mcpServers: Record<string, { command: string; args: string[]; env: Record<string, string> }> };
    const entry = parsed.mcpServers['mcp-gateway']!;
    expect(path.isAbsolute(entry.command)).toBe(true);
    expect(path.basename(entry.command)).toMatch(/^node/);
    expect(existsSync(entry.command)).toBe(true);
    expect(path.isAbsolute(entry.args[0]!)).toBe(true);
    expect(entry.args[0]!.endsWith(path.join('bin', 'mcp-gateway.js'))).toBe(true);
    expect(existsSync(entry.args[0]!)).toBe(true);
    expect(entry.args.slice(1)).toEqual(['serve', '--config', file]);
    expect(Object.keys(entry.env)).toEqual(['MCP_GATEWAY_API_KEY']);
  });

  test('--name names the entry', async () => {
    const { dir, file } = configIn(testConfig());
    const r = await cli(['claude-config', '--config', file, '--name', 'work-gateway'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(Object.keys((JSON.parse(r.stdout) as { mcpServers: Obj }).mcpServers)).toEqual(['work-gateway']);
  });
});

describe('usage', () => {
  /** Command paths listed under "Commands:" in a help text. */
  function commandsIn(help: string): string[] {
    const section = help.split(/\nCommands:\n/)[1] ?? '';
    return section
      .split('\n')
      .map((l) => /^ {2}(\S+)/.exec(l)?.[1])
      .filter((c): c is string => c !== undefined && c !== 'help');
  }

  test('--help of every command exits 0', async () => {
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    const commands = commandsIn(top.stdout);
    expect(commands).toEqual(expect.arrayContaining(['init', 'serve', 'check', 'servers', 'keys', 'claude-config']));
    const paths: string[][] = [];
    for (const command of commands) {
      paths.push([command]);
      const help = await cli([command, '--help']);
      expect(help.code, `${command} --help: ${help.stderr}`).toBe(0);
      expect(help.stdout).toContain('Usage:');
      for (const sub of commandsIn(help.stdout)) paths.push([command, sub]);
    }
    expect(paths).toEqual(
      expect.arrayContaining([
        ['servers', 'list'],
        ['keys', 'create'],
        ['keys', 'list'],
        ['keys', 'hash'],
      ]),
    );
    for (const p of paths.filter((x) => x.length === 2)) {
      const help = await cli([...p, '--help']);
      expect(help.code, `${p.join(' ')} --help: ${help.stderr}`).toBe(0);
      expect(help.stdout).toContain('Usage:');
    }
  }, 240_000);

  test('an unknown command or option is bad usage: exit 2', async () => {
    expect((await cli(['no-such-command'])).code).toBe(2);
    expect((await cli(['serve', '--no-such-option'])).code).toBe(2);
    expect((await cli(['servers', 'list', '--json', '--config'])).code).toBe(2);
  });

  test('--version exits 0', async () => {
    const r = await cli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});
