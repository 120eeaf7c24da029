#!/usr/bin/env node
// Thin launcher: runs the bundled CLI (no TypeScript at run time; Claude Desktop starts this on every
// launch, so it loads one file, not a module graph: scripts/bundle.mjs).
import('../dist/mcp-gateway.js').then(
  (cli) => cli.main(process.argv),
  (err) => {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist')) {
      process.stderr.write('mcp-gateway is not built: run `npm install && npm run build` in its folder\n');
    } else {
      process.stderr.write(`mcp-gateway: ${err && err.stack ? err.stack : err}\n`);
    }
    process.exit(2);
  },
);
