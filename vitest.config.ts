import { defineConfig } from 'vitest/config';

/**
 * The agent-facing end-to-end suites, run a second time with a 2026-07-28 agent (MCP_TEST_AGENT,
 * read by test/helpers/gateway.ts): the same tests, not copies. Suites about the CLI, files,
 * processes or the wire framing do not depend on the agent's era and run once.
 */
const AGENT_FACING = [
  'core',
  'children',
  'faults',
  'fidelity',
  'fidelity-notifications',
  'metrics',
  'naming',
  'paging',
  'policy-ratelimit',
  'auth',
  'security-conditions',
  'security-gaps',
  'security-memory',
  'security-oracle',
  'security-pipeline',
  'security-redaction',
  'security-redos',
  'security-routing',
  'security-uri',
  'shutdown',
].map((name) => `test/e2e/${name}.test.ts`);

const shared = {
  testTimeout: 60_000,
  hookTimeout: 60_000,
  pool: 'forks' as const,
};

export default defineConfig({
  test: {
    // Two cores: end-to-end files spawn gateways and children of their own.
    maxWorkers: 2,
    projects: [
      { test: { ...shared, name: 'legacy-agent', include: ['test/**/*.test.ts'] } },
      { test: { ...shared, name: 'modern-agent', include: AGENT_FACING, env: { MCP_TEST_AGENT: 'modern' } } },
    ],
  },
});
