/** `mcp-gateway keys …`: create, list, revoke, rotate database keys; hash a key for the config. */
import { loadConfig } from '../../config/load.js';
import { hashKey } from '../../identity/api-keys.js';
import { API_KEY_ENV } from '../../identity/authenticate.js';
import { issueKey, KeyAdminError, rotateKey } from '../../identity/key-admin.js';
import type { KeyRecord, KeyStore } from '../../store/keys.js';
import { openStore } from '../../store/store.js';
import { rolesNoPolicyNames, unnamedRolesWarning } from '../../policy/roles.js';
import { checkFailed, usageError } from '../errors.js';
import { printJson, printTable } from '../output.js';
import { parseExpiry } from '../time.js';
import { claudeEntry } from './claude-config.js';

interface Common {
  config?: string;
  json?: boolean;
}

async function withStore<T>(options: Common, fn: (store: KeyStore, config: ReturnType<typeof loadConfig>) => Promise<T>): Promise<T> {
  const loaded = loadConfig(options.config, process.env, process.cwd(), { withoutServerSecrets: true });
  const store = await openStore(loaded.config.database, { connections: 2 });
  try {
    return await fn(store.keys, loaded);
  } finally {
    await store.close();
  }
}

export async function keysCreate(
  name: string,
  consumerId: string,
  roles: string,
  options: Common & { expires?: string; rate?: string },
): Promise<void> {
  const roleList = roles
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean);
  if (roleList.length === 0) throw usageError('give at least one role, e.g. reader');
  if (!consumerId.trim()) throw usageError('consumerId must not be empty');
  const expiresAt = options.expires ? parseExpiry(options.expires, '--expires') : null;
  let rate: number | null = null;
  if (options.rate !== undefined) {
    rate = Number(options.rate);
    if (!Number.isFinite(rate) || rate <= 0) throw usageError(`--rate: "${options.rate}" is not a positive number of calls per minute`);
  }
  await withStore(options, async (store, loaded) => {
    const { record, key } = await issueKey(store, loaded.config, { name, consumerId, roles: roleList, expiresAt, ratePerMinute: rate });
    printNewKey(record, key, loaded.file, options.json);
    // Created all the same (a policy may be added next), but a typo in a role is said at once.
    const unnamed = rolesNoPolicyNames(loaded.config.policies, roleList);
    if (unnamed.length > 0) {
      process.stderr.write(`mcp-gateway: warning: ${unnamedRolesWarning(loaded.config.policies, unnamed, `key ${record.id}`)}\n`);
    }
  });
}

export async function keysList(options: Common): Promise<void> {
  await withStore(options, async (store, loaded) => {
    const now = Date.now();
    const rows = [
      ...(await store.list()).map((k) => ({ ...describe(k, now), source: 'database' })),
      ...loaded.config.auth.apiKeys.static.map((k) => ({
        id: k.id,
        name: k.name ?? '',
        consumerId: k.consumerId,
        roles: k.roles,
        state: !k.enabled ? 'disabled' : k.expiresAt && Date.parse(k.expiresAt) <= now ? 'expired' : 'active',
        createdAt: null,
        expiresAt: k.expiresAt ?? null,
        revokedAt: null,
        ratePerMinute: k.rateLimit?.perMinute ?? null,
        source: 'config',
      })),
    ];
    if (options.json) printJson({ keys: rows });
    else
      printTable(
        rows.map((r) => ({ ...r, roles: r.roles.join(',') })),
        ['id', 'name', 'consumerId', 'roles', 'state', 'expiresAt', 'source'],
      );
  });
}

export async function keysRevoke(keyId: string, options: Common): Promise<void> {
  await withStore(options, async (store, loaded) => {
    const key = await store.get(keyId);
    if (!key) {
      const isStatic = loaded.config.auth.apiKeys.static.some((k) => k.id === keyId);
      throw checkFailed(isStatic ? `key ${keyId} is defined in the config: remove it or set enabled: false there` : `no key ${keyId}`);
    }
    if (key.revokedAt) {
      process.stdout.write(`key ${keyId} was already revoked at ${key.revokedAt}\n`);
      return;
    }
    await store.revoke(keyId, new Date().toISOString());
    process.stdout.write(
      `revoked key ${keyId} (${key.name}, consumer ${key.consumerId}); running gateways refuse it from their next request\n`,
    );
  });
}

export async function keysRotate(keyId: string, options: Common): Promise<void> {
  await withStore(options, async (store, loaded) => {
    try {
      const { record, key, old } = await rotateKey(store, loaded.config, keyId);
      if (!options.json) process.stdout.write(`revoked key ${old.id}; its replacement:\n`);
      printNewKey(record, key, loaded.file, options.json);
    } catch (err) {
      if (err instanceof KeyAdminError) throw checkFailed(err.message);
      throw err;
    }
  });
}

export async function keysHash(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const key = Buffer.concat(chunks).toString('utf8').trim();
  if (!key) throw usageError('give the key on stdin, e.g. `printf %s "$KEY" | mcp-gateway keys hash`');
  if (Buffer.byteLength(key) > 72) throw usageError('bcrypt uses only the first 72 bytes of a key: use a shorter key');
  process.stdout.write(`${hashKey(key)}\n`);
}

function describe(k: KeyRecord, now: number) {
  const state = k.revokedAt ? 'revoked' : k.disabled ? 'disabled' : k.expiresAt && Date.parse(k.expiresAt) <= now ? 'expired' : 'active';
  return {
    id: k.id,
    name: k.name,
    consumerId: k.consumerId,
    roles: k.roles,
    state,
    createdAt: k.createdAt,
    expiresAt: k.expiresAt,
    revokedAt: k.revokedAt,
    ratePerMinute: k.ratePerMinute,
  };
}

/**
 * The key is printed exactly once (design §11), in the line to paste into the agent's environment;
 * the Claude Desktop entry around it is shown with a placeholder, so the secret does not land in
 * the terminal's scrollback three times.
 */
function printNewKey(record: KeyRecord, key: string, configFile: string, json: boolean | undefined): void {
  if (json) {
    printJson({ key, ...describe(record, Date.now()) });
    return;
  }
  const placeholder = '<the key above>';
  process.stdout.write(
    `key ${record.id} for consumer "${record.consumerId}", roles ${record.roles.join(',')}` +
      (record.expiresAt ? `, expires ${record.expiresAt}` : '') +
      `\n\n  ${API_KEY_ENV}=${key}\n\n` +
      `This is the only time the key is shown (only its hash is stored). Give it to the agent in that\n` +
      `environment variable; for Claude Desktop, add this entry to claude_desktop_config.json with the key\n` +
      `in place of ${placeholder}:\n\n` +
      `${JSON.stringify({ mcpServers: { 'mcp-gateway': claudeEntry(configFile, placeholder) } }, null, 2)}\n`,
  );
}
