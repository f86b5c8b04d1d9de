// Command-line face of startServer() (web/server.mjs); scripts/serve runs it.
// Serves the built web app (public/) with the headers it needs: cross-origin isolation for
// ORT's wasm threads and a CSP that keeps every byte on this machine. See web/server.mjs.
//
//   scripts/serve [--root DIR] [--port N] [--host ADDR] [--plain] [--quiet]
//   PORT=9000 scripts/serve
//
// Port 0 picks a free port. Listens on 127.0.0.1 unless told otherwise. --plain serves like a
// static host that sends no special headers (the page's service worker then provides them).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { startServer } from './server.mjs';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const usage = 'usage: scripts/serve [--root DIR] [--port N] [--host ADDR] [--plain] [--quiet]';

let options;
try {
  ({ values: options } = parseArgs({
    options: {
      root: { type: 'string', default: path.join(repoRoot, 'public') },
      port: { type: 'string', default: process.env.PORT ?? '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      plain: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (error) {
  console.error(`${error.message}\n${usage}`);
  process.exit(2);
}
if (options.help) {
  console.log(usage);
  process.exit(0);
}
const port = Number(options.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`invalid port '${options.port}'\n${usage}`);
  process.exit(2);
}

try {
  const { url, root } = await startServer({ root: options.root, port, host: options.host, log: !options.quiet,
                                           plain: options.plain });
  console.log(`Serving ${root} at ${url}${options.plain ? ' (plain: no security headers; the service worker adds them)' : ''}`);
} catch (error) {
  console.error(`scripts/serve: ${error.message}`);
  process.exit(1);
}
