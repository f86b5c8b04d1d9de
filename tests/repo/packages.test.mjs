// Every Debian package a script or CMake file needs is on scripts/apt-packages.txt, which is what
// scripts/setup installs: a script cannot require a package that a fresh machine lacks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { directDpkgQueries, packageMentions, readPackageList, unlistedMentions } from './package_mentions.mjs';

const root = resolve(import.meta.dirname, '../..');
const listText = readFileSync(join(root, 'scripts/apt-packages.txt'), 'utf8');
const listed = readPackageList(listText);
const describe = (ms) => ms.map((m) => `${m.file}:${m.line}: ${m.how} ${m.package}`).join('\n');

test('every package a script or CMake file asks for is on scripts/apt-packages.txt', () => {
  const unlisted = unlistedMentions(root, listed);
  assert.equal(unlisted.length, 0, `not on scripts/apt-packages.txt:\n${describe(unlisted)}`);
});

test('only scripts/lib/apt-packages.sh asks dpkg about packages', () => {
  const direct = directDpkgQueries(root);
  assert.deepEqual(direct, [], 'use apt_require / apt_package_installed from scripts/lib/apt-packages.sh');
});

test('the wasm dependencies and the browser need packages the list has', () => {
  // The mentions the check must see; if the scanner missed them, the first test would pass vacuously.
  const text = readFileSync(join(root, 'scripts/setup-wasm-deps'), 'utf8');
  const seen = new Set(packageMentions('scripts/setup-wasm-deps', text).map((m) => m.package));
  for (const pkg of ['libimgui-dev', 'libopencv-core-dev', 'emscripten']) assert.ok(seen.has(pkg), pkg);
});

test('removing a package from the list makes the check fail, naming the script that needs it', () => {
  const without = new Set([...listed].filter((p) => p !== 'libimgui-dev'));
  const unlisted = unlistedMentions(root, without);
  assert.ok(unlisted.some((m) => m.file === 'scripts/setup-wasm-deps' && m.package === 'libimgui-dev'),
    describe(unlisted));
});

test('the scanner reads the forms scripts use', () => {
  const sample = [
    'command -v x || die "x not found: apt-get install -y foo-dev bar"',
    "status=$(dpkg-query -W -f='${Status}' baz 2>/dev/null)",
    'apt_require qux-dev "why"',
    'message(FATAL_ERROR "install it: apt install quux")',
    'DEPS=(\n  "src1   bin1-dev"\n)',
    'apt-get install -y "${missing[@]}"',
  ].join('\n');
  const got = packageMentions('sample', sample).map((m) => m.package).sort();
  assert.deepEqual(got, ['bar', 'baz', 'bin1-dev', 'foo-dev', 'quux', 'qux-dev']);
});

test('the runtime guard refuses a package that is not listed, and one that is not installed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'loupe-apt-'));
  const script = join(dir, 'probe.sh');
  writeFileSync(script, `source ${join(root, 'scripts/lib/apt-packages.sh')}\napt_require "$1"\necho ok\n`);
  const run = (pkg) => {
    try {
      return { status: 0, out: execFileSync('bash', [script, pkg], { encoding: 'utf8', stdio: 'pipe' }) };
    } catch (e) {
      return { status: e.status, out: String(e.stderr) };
    }
  };
  const notListed = run('loupe-no-such-package');
  assert.equal(notListed.status, 1);
  assert.match(notListed.out, /loupe-no-such-package, which .*apt-packages\.txt does not list/);
  // A listed package: installed (scripts/setup ran) or, if not, refused with "run scripts/setup".
  const cmake = run('cmake');
  if (cmake.status === 0) assert.match(cmake.out, /ok/);
  else assert.match(cmake.out, /cmake is not installed: run scripts\/setup/);
});
