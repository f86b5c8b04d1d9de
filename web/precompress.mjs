// Brotli copies of the site's big files, written beside them at install time: web/server.mjs sends
// them to browsers that accept brotli. Brotli at its highest quality is too slow to run per request
// (about 40 s for ORT's 14 MB wasm on this machine kind) but shrinks that file to 2.3 MB, against
// 3.7 MB for gzip -9; so it is done once per file content.
//
// A copy is named after what it was made from: FILE.<first 16 hex digits of FILE's SHA-256>.br. The
// server hashes the file it would send and uses the copy only when the names agree, so a file
// rebuilt or replaced without running this script is never answered with a stale copy.
//
//   node web/precompress.mjs PUBLIC_DIR        (cmake --install runs it; see web/CMakeLists.txt)
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { brotliCompress, constants } from 'node:zlib';

const compress = promisify(brotliCompress);

// What is worth it: the wasm and scripts (code compresses well) and the models (float32 weights
// only a little, int8 ones more). Small files are left to the server's on-the-fly gzip.
export const PRECOMPRESSED_EXTENSIONS = new Set(['.wasm', '.js', '.mjs', '.onnx']);
export const PRECOMPRESSED_MIN_BYTES = 64 * 1024;

// The name of `file`'s brotli copy for these bytes.
export function brotliCopyName(file, bytes) {
  return `${file}.${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}.br`;
}

function* files(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* files(file);
    else if (entry.isFile() && PRECOMPRESSED_EXTENSIONS.has(path.extname(entry.name))) yield file;
  }
}

export async function precompress(root) {
  for (const file of files(root)) {
    const bytes = await readFile(file);
    if (bytes.length < PRECOMPRESSED_MIN_BYTES) continue;
    const target = brotliCopyName(file, bytes);
    const stale = readdirSync(path.dirname(file))
      .filter((name) => name.startsWith(`${path.basename(file)}.`) && name.endsWith('.br'))
      .map((name) => path.join(path.dirname(file), name))
      .filter((copy) => copy !== target);
    for (const copy of stale) await rm(copy, { force: true });
    if (existsSync(target)) continue;
    const started = Date.now();
    const compressed = await compress(bytes, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
        [constants.BROTLI_PARAM_LGWIN]: constants.BROTLI_MAX_WINDOW_BITS,
        [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
      },
    });
    if (compressed.length > bytes.length * 0.95) continue;  // not worth a copy: sent as it is
    await writeFile(target, compressed);
    console.log(`-- Brotli: ${path.relative(root, file)} ${(bytes.length / 1e6).toFixed(2)} MB -> ` +
                `${(compressed.length / 1e6).toFixed(2)} MB (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = process.argv[2];
  if (!root || !existsSync(root)) {
    console.error('usage: node web/precompress.mjs PUBLIC_DIR');
    process.exit(2);
  }
  await precompress(path.resolve(root));
}
