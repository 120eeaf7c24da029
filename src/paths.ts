/**
 * Where this package is installed. The compiled modules sit one level below its root (dist/), and
 * so do the bundle `bin/mcp-gateway.js` runs and its chunks (scripts/bundle.mjs): files shipped
 * beside dist/ are found from here, whichever of the two is running.
 */
import { fileURLToPath } from 'node:url';

export const PACKAGE_ROOT: string = fileURLToPath(new URL('..', import.meta.url));
