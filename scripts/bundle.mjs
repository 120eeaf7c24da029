#!/usr/bin/env node
// The second half of `npm run build`: bundles the compiled CLI (dist/cli/main.js, from tsc) with
// its pure-JavaScript dependencies into dist/mcp-gateway.js and its chunks, which is what
// bin/mcp-gateway.js runs. An ES module graph of ~400 files costs `serve` about 110 ms of
// resolving, reading and linking before it can answer the agent's first message; one file with
// a few lazily loaded chunks (the commands other than the one run) does not. better-sqlite3 stays
// outside: it loads a native addon.
import { build } from 'esbuild';
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DIST = fileURLToPath(new URL('../dist', import.meta.url));
for (const file of readdirSync(DIST)) if (/^(mcp-gateway|chunk-[A-Z0-9]+)\.js(\.map)?$/.test(file)) rmSync(path.join(DIST, file));

await build({
  entryPoints: { 'mcp-gateway': path.join(DIST, 'cli/main.js') },
  outdir: DIST, // the bundle and its chunks sit one level below the package root, as src/paths.ts expects
  chunkNames: 'chunk-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3'],
  // CommonJS dependencies (commander, …) call require() for Node's own modules.
  banner: {
    js: "import { createRequire as __gatewayCreateRequire } from 'node:module'; const require = __gatewayCreateRequire(import.meta.url);",
  },
  sourcemap: 'linked',
  logLevel: 'warning',
});
