"""Lock the hub image's Python packages for linux/arm64 and linux/amd64 from requirements.in.

    python hub_images/lock.py            write requirements.txt
    python hub_images/lock.py --check    exit 1, naming the differences, when requirements.txt is stale
    python hub_images/lock.py --upgrade  resolve afresh (newest versions allowed by requirements.in)

For each platform (CPython 3.11, glibc 2.36 as in Debian bookworm, the base of the image's
python:3.11-slim-bookworm and of the local stand-ins) pip's resolver runs once
(`pip install --dry-run --ignore-installed --report ...` with `--platform`, `--only-binary=:all:`),
and the two resolutions are merged into one requirements.txt: a `name==version` line per package
where the platforms agree, a line with a `platform_machine` marker where they differ, and the
sha256 of the wheel pip chose on each platform (the Dockerfile installs with --require-hashes).

The pins already in requirements.txt are passed to pip as constraints (except the packages
requirements.in names itself and those given to --upgrade-package): regenerating keeps today's
versions, so a new upstream release does not make the lock stale, and --check is deterministic.

pip evaluates environment markers for the machine it runs on, not for --platform: it runs here
with `platform.machine()` answering the target's machine, the report's environment is checked to
say so, and every resolution is checked to be complete for its platform (each package's
dependencies, under that platform's markers, are locked at a version they accept).

Standard library and pip only (packaging from pip's own copy when it is not installed), so it
runs with any Python 3.11 that has pip 23+.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pragma: no cover - a Python with pip but without packaging
    from pip._vendor.packaging.markers import Marker
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
INPUT = HERE / "requirements.in"
OUTPUT = HERE / "requirements.txt"

PYTHON_VERSION = "3.11"
GLIBC_MINOR = 36  # Debian bookworm's glibc 2.36
# machine (platform_machine) -> (docker platform, oldest manylinux glibc minor the arch has)
MACHINES = {"aarch64": ("linux/arm64", 17), "x86_64": ("linux/amd64", 5)}
# PEP 600 aliases of the legacy manylinux tags, inserted where pip's own tag list has them.
LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
PIP_TIMEOUT = 600
INDEX_URL = "https://pypi.org/simple"  # where the image's build (the Dockerfile's pip) gets its wheels
# pip's configuration files and PIP_* settings are not read (a machine's local mirror, find-links or
# global constraints must not shape the lock), except these, which only say how to reach the index.
PIP_TRANSPORT_SETTINGS = ("PIP_CERT", "PIP_CLIENT_CERT", "PIP_PROXY", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES")
# pip evaluates python_full_version markers with the interpreter it runs on (here, a 3.11); the
# completeness check does the same, so the two agree (the image's patch release may differ).
_HERE_VERSION = platform.python_version()
PYTHON_FULL_VERSION = _HERE_VERSION if _HERE_VERSION.startswith(PYTHON_VERSION + ".") else PYTHON_VERSION + ".0"

# pip, run with platform.machine() answering the target machine, so that markers such as
# `platform_machine == "aarch64"` in packages' metadata are evaluated for the image, not for here.
PIP_SHIM = (
    "import os, platform, runpy, sys\n"
    "machine = os.environ['LAKEHUB_LOCK_MACHINE']\n"
    "platform.machine = lambda: machine\n"
    "sys.argv = ['pip', *sys.argv[1:]]\n"
    "runpy.run_module('pip', run_name='__main__', alter_sys=True)\n"
)

HEADER = """\
# Full lock of the hub image's Python packages, CPython {python}, for linux/arm64 (Graviton: Fargate
# tiers, t4g/m7g/r7g hubs) and linux/amd64 (x86 on-demand hubs, the local container runtime).
# Generated from requirements.in (the top-level pins) by hub_images/lock.py: pip's resolver, once
# per platform, from PyPI (pip's configuration files and index settings are not read), with the
# pins already here as constraints:
#   pip install --dry-run --ignore-installed --report report.json --only-binary=:all:
#     --implementation cp --python-version {python} --platform manylinux_2_{glibc}_<machine> ...
#     --platform manylinux2014_<machine> --target <tmp> -r requirements.in -c <these pins>
# One `name==version` line where aarch64 and x86_64 agree; a `platform_machine` marker where they
# differ. Each line carries the sha256 of the wheel pip chose for each platform (the Dockerfile
# installs with --require-hashes). Every package is a binary wheel, so the image needs no compiler.
# Regenerate (never edit by hand):  .venv/bin/python hub_images/lock.py
#   --check: exit 1 when this file is stale; --upgrade: newest versions requirements.in allows.
"""


class LockError(Exception):
    """A failure the user can act on: printed as one line, exit 2."""


@dataclass(frozen=True)
class Pin:
    name: str  # as the package's metadata spells it
    version: str
    sha256: str


@dataclass
class Resolution:
    machine: str
    pins: dict[str, Pin] = field(default_factory=dict)  # canonical name -> pin
    requires: dict[str, list[str]] = field(default_factory=dict)  # canonical name -> Requires-Dist
    roots: list[str] = field(default_factory=list)  # requirements.in's lines


@dataclass(frozen=True)
class Entry:
    """One requirement line of the lock."""

    name: str
    version: str
    marker: str | None = None
    hashes: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return canonicalize_name(self.name), self.marker or ""

    def applies_to(self, machine: str) -> bool:
        return self.marker is None or Marker(self.marker).evaluate(marker_environment(machine))


# ------------------------------------------------------------------------------------------------
# Platforms and markers
# ------------------------------------------------------------------------------------------------
def platform_tags(machine: str) -> list[str]:
    """The manylinux platform tags of a glibc 2.36 system, most specific first (as pip orders them)."""
    oldest = MACHINES[machine][1]
    tags = []
    for minor in range(GLIBC_MINOR, oldest - 1, -1):
        tags.append(f"manylinux_2_{minor}_{machine}")
        if minor in LEGACY:
            tags.append(f"{LEGACY[minor]}_{machine}")
    return tags


def marker_environment(machine: str) -> dict[str, str]:
    """PEP 508 environment of the image on `machine` (CPython 3.11 on Linux)."""
    return {
        "implementation_name": "cpython",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "python_version": PYTHON_VERSION,
        "python_full_version": PYTHON_FULL_VERSION,
        "implementation_version": PYTHON_FULL_VERSION,
        "sys_platform": "linux",
        "platform_release": "",
        "platform_version": "",
        "extra": "",
    }


def machine_marker(machine: str) -> str:
    return f'platform_machine == "{machine}"'


# ------------------------------------------------------------------------------------------------
# Reading requirements files
# ------------------------------------------------------------------------------------------------
def logical_lines(text: str) -> list[str]:
    """Requirement lines: comments removed, backslash continuations joined (a comment never continues)."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = "" if raw.lstrip().startswith("#") else raw.split(" #")[0].rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            out.append(line)
    if pending.strip():
        out.append(pending.strip())
    return out


def parse_lock(text: str) -> list[Entry]:
    entries = []
    for line in logical_lines(text):
        tokens = line.split()
        hashes = tuple(sorted(t.removeprefix("--hash=sha256:") for t in tokens if t.startswith("--hash=")))
        spec = " ".join(t for t in tokens if not t.startswith("--hash="))
        req = Requirement(spec)
        pinned = [s for s in req.specifier if s.operator == "=="]
        if len(pinned) != 1 or len(req.specifier) != 1:
            raise LockError(f"requirements.txt line {spec!r} is not one `name==version` pin; regenerate with lock.py")
        entries.append(Entry(req.name, pinned[0].version, str(req.marker) if req.marker else None, hashes))
    return entries


def pins_for(entries: list[Entry], machine: str) -> dict[str, Entry]:
    """The lock's entries that apply on `machine`, by canonical name."""
    return {canonicalize_name(e.name): e for e in entries if e.applies_to(machine)}


def input_names(text: str) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in logical_lines(text)}


# ------------------------------------------------------------------------------------------------
# Resolving
# ------------------------------------------------------------------------------------------------
def pip_command(
    machine: str,
    requirements: Path,
    constraints: Path,
    report: Path,
    target: Path,
    source: tuple[str, str] = ("--index-url", INDEX_URL),
) -> list[str]:
    command = [
        sys.executable,
        "-c",
        PIP_SHIM,
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--disable-pip-version-check",
        "--report",
        str(report),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
    ]
    for tag in platform_tags(machine):
        command += ["--platform", tag]
    if source[0] == "--find-links":
        command += ["--no-index"]
    return command + [*source, "--target", str(target), "-r", str(requirements), "-c", str(constraints)]


def pip_environment(machine: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in PIP_TRANSPORT_SETTINGS}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INPUT": "1", "LAKEHUB_LOCK_MACHINE": machine}


def resolve(
    machine: str,
    requirements: Path,
    constraints: dict[str, str],
    workdir: Path,
    timeout: float = PIP_TIMEOUT,
    source: tuple[str, str] = ("--index-url", INDEX_URL),
) -> Resolution:
    """pip's resolution of `requirements` for `machine`, with `constraints` (name -> version)."""
    work = workdir / machine
    work.mkdir(parents=True, exist_ok=True)
    constraints_file = work / "constraints.txt"
    constraints_file.write_text("".join(f"{name}=={version}\n" for name, version in sorted(constraints.items())))
    report = work / "report.json"
    command = pip_command(machine, requirements, constraints_file, report, work / "target", source)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=pip_environment(machine))
    except subprocess.TimeoutExpired:
        raise LockError(f"pip's resolver took over {timeout:.0f} s for {machine}; check access to PyPI") from None
    if done.returncode != 0:
        detail = " | ".join(line.strip() for line in done.stderr.strip().splitlines()[-6:])
        hint = (
            ("; if a new requirements.in pin conflicts with a locked version, rerun with --upgrade (or --upgrade-package NAME)")
            if constraints
            else ""
        )
        raise LockError(f"pip could not resolve {requirements.name} for {machine}: {detail}{hint}")
    data = json.loads(report.read_text())
    seen = data.get("environment", {}).get("platform_machine")
    if seen != machine:
        raise LockError(f"pip evaluated markers for {seen!r}, not {machine!r}: this pip ignores the machine override")
    result = Resolution(machine, roots=logical_lines(requirements.read_text()))
    for item in data["install"]:
        meta = item["metadata"]
        hashes = item["download_info"].get("archive_info", {}).get("hashes", {})
        if "sha256" not in hashes:
            raise LockError(f"pip's report has no sha256 for {meta['name']} {meta['version']} ({machine})")
        name = canonicalize_name(meta["name"])
        result.pins[name] = Pin(meta["name"], meta["version"], hashes["sha256"])
        result.requires[name] = list(meta.get("requires_dist") or [])
    return result


def dependency_problems(pins: dict[str, str], requires: dict[str, list[str]], roots: list[str], machine: str) -> list[str]:
    """What makes `pins` (canonical name -> version) not a complete install of `roots` on `machine`.

    Walks from the roots through each package's Requires-Dist (where `requires` has it),
    evaluating markers for `machine` with the extras each package is asked for. Returns missing
    dependencies, versions a dependent does not accept, and (when every package's metadata is
    known) packages nothing needs.
    """
    env = marker_environment(machine)
    problems: list[str] = []
    extras_seen: dict[str, set[str]] = {}
    queue: list[tuple[str, Requirement]] = [("requirements.in", Requirement(line)) for line in roots]
    while queue:
        parent, req = queue.pop()
        if req.marker and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{parent} needs {req} but {name} is not locked for {machine}")
            continue
        if not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{parent} needs {req} but {name}=={pins[name]} is locked for {machine}")
        asked = {canonicalize_name(e) for e in req.extras}
        known = extras_seen.get(name)
        new = {""} | asked if known is None else asked - known
        if not new:
            continue
        extras_seen[name] = (known or set()) | new
        for spec in requires.get(name, []):
            dep = Requirement(spec)
            if not dep.marker:
                if "" in new:
                    queue.append((f"{name}=={pins[name]}", dep))
                continue
            if any(dep.marker.evaluate({**env, "extra": extra}) for extra in new):
                dep.marker = None
                queue.append((f"{name}=={pins[name]}", dep))
    if set(pins) <= set(requires):
        for name in sorted(set(pins) - set(extras_seen)):
            problems.append(f"{name} is locked for {machine} but nothing in requirements.in needs it there")
    return problems


# ------------------------------------------------------------------------------------------------
# Merging and writing
# ------------------------------------------------------------------------------------------------
def merge(resolutions: list[Resolution]) -> list[Entry]:
    """One entry per package where every platform has the same version; marker entries otherwise."""
    machines = [r.machine for r in resolutions]
    entries = []
    for name in sorted(set().union(*(r.pins for r in resolutions))):
        have = {r.machine: r.pins[name] for r in resolutions if name in r.pins}
        versions = {pin.version for pin in have.values()}
        if len(have) == len(machines) and len(versions) == 1:
            first = have[machines[0]]
            entries.append(Entry(first.name, first.version, None, tuple(sorted({p.sha256 for p in have.values()}))))
        else:
            for machine in machines:
                if machine in have:
                    pin = have[machine]
                    entries.append(Entry(pin.name, pin.version, machine_marker(machine), (pin.sha256,)))
    return entries


def render(entries: list[Entry]) -> str:
    lines = [HEADER.format(python=PYTHON_VERSION, glibc=GLIBC_MINOR).rstrip("\n")]
    for e in entries:
        head = f"{e.name}=={e.version}" + (f" ; {e.marker}" if e.marker else "")
        lines.append(" \\\n".join([head, *(f"    --hash=sha256:{h}" for h in e.hashes)]))
    return "\n".join(lines) + "\n"


def describe_differences(old: list[Entry], new: list[Entry]) -> list[str]:
    """One line per package whose lock entry differs between `old` (the file) and `new`."""
    before = {e.key: e for e in old}
    after = {e.key: e for e in new}
    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        where = f" ; {key[1]}" if key[1] else ""
        if a is None:
            out.append(f"missing: {b.name}=={b.version}{where}")
        elif b is None:
            out.append(f"not needed: {a.name}=={a.version}{where}")
        elif a.version != b.version:
            out.append(f"{b.name}{where}: locked {a.version}, resolves to {b.version}")
        elif a.hashes != b.hashes:
            out.append(f"{b.name}=={b.version}{where}: wheel hashes differ")
    return out


def lock(
    input_path: Path,
    output_path: Path,
    upgrade: bool = False,
    upgrade_packages: tuple[str, ...] = (),
    timeout: float = PIP_TIMEOUT,
    source: tuple[str, str] = ("--index-url", INDEX_URL),
) -> tuple[str, list[Entry], list[Entry]]:
    """Resolve input_path for every machine: (the new file's text, its entries, the file's entries)."""
    if not input_path.is_file():
        raise LockError(f"{input_path} does not exist; it lists the image's top-level pins")
    old_text = output_path.read_text() if output_path.is_file() else ""
    try:
        old = parse_lock(old_text)
    except (ValueError, LockError) as exc:  # packaging's InvalidRequirement / InvalidMarker, or not a pin
        if not upgrade:
            raise LockError(f"{output_path} does not parse ({exc}); rerun with --upgrade to write it afresh") from None
        old = []
    skip = input_names(input_path.read_text()) | {canonicalize_name(n) for n in upgrade_packages}
    with tempfile.TemporaryDirectory(prefix="lakehub-lock-") as tmp, ThreadPoolExecutor(len(MACHINES)) as pool:
        futures = []
        for machine in MACHINES:
            constraints = {} if upgrade else {e.name: e.version for name, e in pins_for(old, machine).items() if name not in skip}
            futures.append(pool.submit(resolve, machine, input_path, constraints, Path(tmp), timeout, source))
        resolutions = [f.result() for f in futures]
    for r in resolutions:
        problems = dependency_problems({n: p.version for n, p in r.pins.items()}, r.requires, r.roots, r.machine)
        if problems:
            raise LockError(
                f"pip's resolution for {r.machine} is not complete: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            )
    entries = merge(resolutions)
    return render(entries), entries, old


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lock.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the lock is stale")
    parser.add_argument("--upgrade", action="store_true", help="ignore the current pins (newest allowed versions)")
    parser.add_argument(
        "--upgrade-package", action="append", default=[], metavar="NAME", help="ignore the current pin of NAME (repeatable)"
    )
    parser.add_argument("--input", type=Path, default=INPUT, help="top-level pins (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the lock (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=PIP_TIMEOUT, help="seconds per pip run (default: %(default)s)")
    parser.add_argument("--index-url", default=INDEX_URL, help="package index (default: %(default)s)")
    parser.add_argument("--find-links", metavar="DIR", help="resolve from the wheels in DIR only, no index (tests)")
    args = parser.parse_args(argv)
    source = ("--find-links", args.find_links) if args.find_links else ("--index-url", args.index_url)
    try:
        text, entries, old = lock(args.input, args.output, args.upgrade, tuple(args.upgrade_package), args.timeout, source)
    except LockError as exc:
        print(f"lock.py: error: {exc}", file=sys.stderr)
        return 2
    current = args.output.read_text() if args.output.is_file() else None
    if args.check:
        if current == text:
            print(f"{args.output.name} is up to date ({len(entries)} lines for {', '.join(MACHINES)})")
            return 0
        differences = describe_differences(old, entries) or ["the header or the layout differs"]
        print(f"{args.output} is stale; regenerate it with `.venv/bin/python hub_images/lock.py`:", file=sys.stderr)
        for line in differences:
            print(f"  {line}", file=sys.stderr)
        return 1
    if current != text:
        args.output.write_text(text)
    changed = describe_differences(old, entries)
    print(f"wrote {args.output} ({len(entries)} lines for {', '.join(MACHINES)}; {len(changed)} changed)")
    for line in changed:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
