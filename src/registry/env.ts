/**
 * The environment a child gets (design §8): a few basics from the gateway's environment, the names
 * listed in `inheritEnv`, and the server's own `env`. Nothing else: not the gateway's credential,
 * not another server's secret.
 */
import type { ServerConfig } from '../config/schema.js';

export const BASE_ENV = ['PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'TERM'] as const;

export function childEnvironment(
  server: Pick<ServerConfig, 'env' | 'inheritEnv'>,
  parent: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...BASE_ENV, ...server.inheritEnv]) {
    const value = parent[name];
    // Exported shell functions ("() { ...") are a classic injection path; never pass them on.
    if (value !== undefined && !value.startsWith('()')) env[name] = value;
  }
  return { ...env, ...server.env };
}
