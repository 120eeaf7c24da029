/**
 * Processes starting together on a new database file (`keys create` twice, a gateway and a CLI
 * command): SQLite answers some races to turn on WAL and migrate with SQLITE_BUSY at once,
 * without waiting out the busy timeout. Each must still open the file (store/db.ts retries).
 * Before the fix, 2 of 40 such starts failed with "database is locked".
 */
import { expect, test } from 'vitest';
import { tempDir, writeConfig } from '../helpers/gateway.js';
import { cli } from '../helpers/security.js';

test('three `keys create` at once on a new database, ten times: every one succeeds, every key is kept', async () => {
  for (let round = 0; round < 10; round++) {
    const dir = tempDir('mcpgw-race-');
    const config = writeConfig(dir, { database: './gateway.db', policies: [{ id: 'r', roles: ['reader'], rules: [{ action: 'allow' }] }] });
    const runs = await Promise.all(
      ['a', 'b', 'c'].map((name) => cli(['keys', 'create', name, name, 'reader', '--json', '--config', config], { cwd: dir })),
    );
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    const list = await cli(['keys', 'list', '--json', '--config', config], { cwd: dir });
    expect((JSON.parse(list.stdout) as { keys: unknown[] }).keys).toHaveLength(3);
  }
}, 120_000);
