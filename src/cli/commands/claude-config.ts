/** `mcp-gateway claude-config`: the Claude Desktop entry that starts this gateway, with absolute paths. */
import path from 'node:path';
import { loadConfig } from '../../config/load.js';
import { API_KEY_ENV } from '../../identity/authenticate.js';
import { PACKAGE_ROOT } from '../../paths.js';

export function launcherPath(): string {
  return path.join(PACKAGE_ROOT, 'bin', 'mcp-gateway.js');
}

export function claudeEntry(configFile: string, key = '<paste the key from `mcp-gateway keys create`>') {
  return {
    // Claude Desktop starts servers without a login shell's PATH: absolute paths only.
    command: process.execPath,
    args: [launcherPath(), 'serve', '--config', configFile],
    env: { [API_KEY_ENV]: key },
  };
}

export async function claudeConfig(options: { config?: string; name: string }): Promise<void> {
  const loaded = loadConfig(options.config, process.env, process.cwd(), { withoutServerSecrets: true });
  process.stdout.write(`${JSON.stringify({ mcpServers: { [options.name]: claudeEntry(loaded.file) } }, null, 2)}\n`);
  process.stderr.write(
    'Paste this into claude_desktop_config.json (macOS: ~/Library/Application Support/Claude/, ' +
      'Windows: %APPDATA%\\Claude\\), merging "mcpServers" if it exists, then restart Claude Desktop.\n',
  );
}
