/**
 * The documentation and the code must not drift apart: every example config parses, the README's
 * error table lists exactly the error catalogue, and the CLI section names every command.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { ERROR_CODES } from '../../src/errors.js';
import { buildProgram } from '../../src/cli/main.js';
import { initTemplate } from '../../src/cli/template.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

describe('documentation agrees with the code', () => {
  test('gateway.example.yaml parses (with the variables it references set)', () => {
    const { config } = loadConfig(path.join(ROOT, 'gateway.example.yaml'), {
      GITHUB_TOKEN: 'ghp_example',
      JWT_SECRET: 'x'.repeat(40),
      METRICS_TOKEN: 'm'.repeat(32),
    });
    expect(config.servers.map((s) => s.id)).toEqual(['github']);
    expect(config.policies.length).toBeGreaterThan(0);
  });

  test('demo/gateway.yaml parses with no environment at all', () => {
    const { config } = loadConfig(path.join(ROOT, 'demo/gateway.yaml'), {});
    expect(config.servers.map((s) => s.id)).toEqual(['demo']);
  });

  test('the init template parses', () => {
    const { config } = parseConfig(initTemplate('/x/demo-server.js', '/usr/bin/node'), '/tmp/gateway.yaml', {});
    expect(config.policies.map((p) => p.id)).toEqual(['reader', 'admin']);
  });

  test('the README error table lists exactly the error catalogue', () => {
    const documented = [...readme.matchAll(/^\| ([A-Z_]+) \|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });

  test('no command the README gives runs another package: no `npx mcp-gateway`, and the package has a name of its own', () => {
    const blocks = [...readme.matchAll(/```(?:sh|bash)?\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(blocks.join('\n')).not.toMatch(/\bnpx\s+mcp-gateway\b/);
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; bin: Record<string, string> };
    expect(pkg.name).not.toBe('mcp-gateway');
    expect(Object.keys(pkg.bin)).toEqual(['mcp-gateway']);
    expect(readme).toContain(`npm install -g ${pkg.name}`);
  });

  test('the README CLI section names every command', () => {
    const names = (cmd: ReturnType<typeof buildProgram>, prefix = ''): string[] =>
      cmd.commands.flatMap((c) => {
        const full = `${prefix}${c.name()}`;
        return c.commands.length > 0 ? names(c, `${full} `) : [full];
      });
    for (const name of names(buildProgram())) expect(readme, name).toContain(`mcp-gateway ${name.split(' ')[0]}`);
  });
});
