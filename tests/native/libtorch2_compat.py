#!/usr/bin/env python3
"""Every translation unit that uses LibTorch must also compile against LibTorch 2.x.

Debian 12 ships LibTorch 1.13 (CPU); GPU machines use a CUDA LibTorch 2.x. The C++ API changed in
between (autocast functions, the optimizer state's key type, headers no longer pulled in by
<torch/torch.h>), so this check compiles (full semantic analysis, no linking) every such file of a
build's compile_commands.json against the headers of Debian's next release's libtorch-dev (2.x),
fetched once from the machine's own Debian mirror with apt and cached by version (later runs use
the cache without the network). A file that compiled is not compiled again until its compile
command, its own text or any of the project's headers change (the key of results/<sha256> in the
cache), so an unchanged tree costs seconds instead of minutes.

    libtorch2_compat.py BUILD_DIR SOURCE_DIR
Exit 0: all compile; 1: a file fails (its diagnostics are printed); 77: no 2.x headers could be
fetched (no mirror with that release reachable), with the reason.
"""
import concurrent.futures
import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

SUITE = "trixie"  # Debian 13: libtorch-dev 2.6
LIBTORCH_SOURCES = re.compile(r"/(native/(train|models|export|src)/|tests/native/|tests/bench/bench_(train|infer)\.cpp)")


def mirror_uri():
    """The Debian mirror this machine's apt uses (never hard-coded)."""
    for path in [*pathlib.Path("/etc/apt/sources.list.d").glob("*.sources"), pathlib.Path("/etc/apt/sources.list")]:
        if not path.is_file():
            continue
        text = path.read_text()
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return None


def header_root(root):
    return root / "usr" / "include"


def cached_headers(cache):
    """A complete earlier download (the newest), without touching the network."""
    done = sorted(p for p in cache.iterdir() if (p / ".complete").is_file())
    return (header_root(done[-1]), done[-1].name) if done else None


def fetch_headers(cache):
    """Unpacks libtorch-dev from SUITE into cache/<version>; returns that folder's usr/include."""
    cached = cached_headers(cache)
    if cached:
        return cached
    uri = mirror_uri()
    if not uri:
        raise RuntimeError("no Debian mirror in the apt sources")
    apt = cache / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "parts").mkdir(exist_ok=True)
    (apt / "parts" / f"{SUITE}.sources").write_text(
        f"Types: deb\nURIs: {uri}\nSuites: {SUITE}\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    options = ["-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={apt / 'parts'}",
               "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt}",
               "-o", "APT::Sandbox::User=root", "-o", "Debug::NoLocking=1"]
    update = subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True, timeout=600)
    # The candidate of the private source list: SUITE's newest libtorch-dev (the system's 1.13 is
    # installed, so ask for the version the private lists offer, not the installed one).
    policy = subprocess.run(["apt-cache", *options, "madison", "libtorch-dev"], capture_output=True, text=True)
    versions = [v for v in re.findall(r"^\s*libtorch-dev\s*\|\s*(\S+)\s*\|", policy.stdout, re.M)
                if not v.startswith("1.")]
    if not versions:
        raise RuntimeError(f"no libtorch-dev 2.x in {SUITE} at the apt mirror ({update.stderr.strip()[-300:]})")
    version = max(versions, key=lambda v: [int(n) for n in re.findall(r"\d+", v.split("+")[0])])
    download = subprocess.run(["apt-get", *options, "download", f"libtorch-dev={version}"], cwd=cache,
                              capture_output=True, text=True, timeout=600)
    debs = sorted(cache.glob(f"libtorch-dev_{version.replace(':', '%3a')}_*.deb"))
    if download.returncode != 0 or not debs:
        raise RuntimeError(f"apt-get download libtorch-dev={version} failed: {download.stderr.strip()[-300:]}")
    # Unpacked beside the cache entry, then renamed: an interrupted run never leaves a half entry.
    root, partial = cache / version, cache / f".{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(partial)], check=True)
    (partial / ".complete").touch()
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    debs[0].unlink()
    return header_root(root), version


def syntax_command(entry, include):
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-o", "-MF", "-MT"):
            skip = True
        elif a not in ("-MD", "-c"):
            out.append(a)
    # The 2.x headers come before Debian's 1.13 ones (in /usr/include and its torch/ API folder).
    out[1:1] = ["-isystem", str(include / "torch" / "csrc" / "api" / "include"), "-isystem", str(include)]
    return out + ["-fsyntax-only"]


def project_headers_digest(source):
    """One hash over every header of the project: a changed header re-checks every file."""
    digest = hashlib.sha256()
    for folder in ("shared", "native", "tests"):
        for path in sorted((source / folder).rglob("*.h")):
            digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def result_key(entry, command, headers_digest, version):
    digest = hashlib.sha256()
    for part in (version, headers_digest, "\0".join(command), pathlib.Path(entry["file"]).read_bytes()):
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def main():
    build, source = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).resolve()
    cache = pathlib.Path(os.environ.get("LOUPE_CACHE_DIR", pathlib.Path.home() / ".cache" / "loupe")) / "libtorch2-headers"
    cache.mkdir(parents=True, exist_ok=True)
    try:
        include, version = fetch_headers(cache)
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        print(f"libtorch2_compat: skipped: {e}")
        return 77
    commands = build / "compile_commands.json"
    if not commands.is_file():
        print(f"libtorch2_compat: {commands} is missing (configure the build with CMAKE_EXPORT_COMPILE_COMMANDS)")
        return 1
    entries = [e for e in json.loads(commands.read_text())
               if LIBTORCH_SOURCES.search(e["file"]) and str(source) in e["file"]]
    if not entries:
        print("libtorch2_compat: no LibTorch sources in compile_commands.json")
        return 1

    results = cache / "results"
    results.mkdir(exist_ok=True)
    headers_digest = project_headers_digest(source)

    def check(entry):
        command = syntax_command(entry, include)
        passed = results / result_key(entry, command, headers_digest, version)
        if passed.is_file():
            return entry["file"], 0, "", True
        r = subprocess.run(command, cwd=entry["directory"], capture_output=True, text=True)
        if r.returncode == 0:
            passed.touch()
        return entry["file"], r.returncode, r.stderr, False

    failures = cached = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for file, rc, stderr, from_cache in pool.map(check, entries):
            name = os.path.relpath(file, source)
            cached += from_cache
            print(f"{'ok  ' if rc == 0 else 'FAIL'} {name}{' (unchanged since it compiled)' if from_cache else ''}")
            if rc != 0:
                failures += 1
                print("\n".join(stderr.splitlines()[:20]))
    print(f"libtorch2_compat: {len(entries) - failures}/{len(entries)} files compile against libtorch-dev {version}"
          f" ({len(entries) - cached} compiled now, {cached} unchanged since they compiled)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
