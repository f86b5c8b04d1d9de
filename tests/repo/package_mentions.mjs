// Finds every Debian package that the project's scripts and CMake files ask dpkg about, require,
// or tell the user to install, so that tests/repo/packages.test.mjs can hold them against
// scripts/apt-packages.txt (the list scripts/setup installs).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const PACKAGE = /^[a-z0-9][a-z0-9+.-]+$/;

// Files that can check for or name a system package: scripts, CMake, test drivers.
export function candidateFiles(root) {
  const tracked = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' })
    .split('\n').filter(Boolean);
  return tracked.filter((f) => /^scripts\//.test(f) || /(^|\/)CMakeLists\.txt$/.test(f) || /\.cmake$/.test(f)
    || /^tests\/.*\.(sh|py)$/.test(f));
}

export function readPackageList(text) {
  return new Set(text.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean));
}

// Words after a command up to the end of the shell word list (quote, ;, |, &, ), newline).
function wordsAfter(text, index) {
  const rest = text.slice(index).split(/[\n;|&)`"'\\]/)[0];
  return rest.split(/\s+/).filter(Boolean);
}

function literalPackages(words) {
  return words.filter((w) => !w.startsWith('-') && !w.startsWith('$') && !w.includes('=') && PACKAGE.test(w));
}

// Returns [{file, line, package, how}] for every package mention in one file's text.
export function packageMentions(file, text) {
  const found = [];
  const add = (index, pkgs, how) => {
    const line = text.slice(0, index).split('\n').length;
    for (const pkg of pkgs) found.push({ file, line, package: pkg, how });
  };
  for (const m of text.matchAll(/\bapt(?:-get)?\s+install\b/g)) {
    add(m.index, literalPackages(wordsAfter(text, m.index + m[0].length)), 'apt-get install');
  }
  for (const m of text.matchAll(/\bdpkg-query\b/g)) {
    // dpkg-query -W -f='...' PKG: the format is quoted, so read past it first.
    const after = text.slice(m.index + m[0].length).split('\n')[0].replace(/'[^']*'|"[^"]*"/g, ' ');
    add(m.index, literalPackages(wordsAfter(after, 0)), 'dpkg-query');
  }
  for (const m of text.matchAll(/\bdpkg\s+(?:-s|-l|-L|--status|--list)\b/g)) {
    add(m.index, literalPackages(wordsAfter(text, m.index + m[0].length)), 'dpkg');
  }
  for (const m of text.matchAll(/\b(?:apt_require|apt_source_version|apt_package_installed)\s+"?([a-z0-9][a-z0-9+.-]+)/g)) {
    add(m.index, [m[1]], 'apt-packages.sh');
  }
  // setup-wasm-deps: DEPS=( "source-package binary-package" ... )
  for (const block of text.matchAll(/^DEPS=\(\n([\s\S]*?)^\)/gm)) {
    for (const entry of block[1].matchAll(/"\s*[^\s"]+\s+([^\s"]+)\s*"/g)) {
      add(block.index + entry.index, [entry[1]], 'DEPS');
    }
  }
  return found;
}

export function unlistedMentions(root, listed) {
  const out = [];
  for (const file of candidateFiles(root)) {
    if (file === 'scripts/apt-packages.txt') continue;
    for (const m of packageMentions(file, readFileSync(join(root, file), 'utf8'))) {
      if (!listed.has(m.package)) out.push(m);
    }
  }
  return out;
}

// dpkg-query outside the helper would bypass the list's check at run time.
export function directDpkgQueries(root) {
  const out = [];
  for (const file of candidateFiles(root)) {
    if (file === 'scripts/lib/apt-packages.sh') continue;
    const text = readFileSync(join(root, file), 'utf8');
    for (const m of text.matchAll(/\bdpkg-query\b|\bdpkg\s+(?:-s|-l|--status)\b/g)) {
      out.push({ file, line: text.slice(0, m.index).split('\n').length });
    }
  }
  return out;
}
