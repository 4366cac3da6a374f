"""Package the custom-resource functions: one deterministic zip per function.

`build/functions/<name>-<hash>.zip` (the name comes from `lakehub.assets.function_zip_name`)
holds:
  - the function's folder (lambdas/<name>/: index.py, requirements.txt, ...),
  - its requirements, installed for the Lambda runtime (`pip install --target`, arm64 wheels,
    `--no-compile`; boto3 is left to the runtime),
  - the extra folders listed in `assets.FUNCTIONS` (the shared `lakehub_cr/` for the crhelper
    functions; the example notebooks, as `notebooks/`).

The same sources always give the same bytes: entries sorted, fixed timestamps (1980-01-01),
fixed permissions (0644), fixed compression level, no .pyc, and none of pip's per-install
metadata (RECORD, INSTALLER, REQUESTED, direct_url.json) or scripts.

Caching: a zip whose name (source hash) already exists is not rebuilt; installed requirements
are kept in build/.cache/requirements/<hash of requirements.txt, platform, runtime>/, so a code
change repacks in milliseconds and only a requirements change runs pip.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from lakehub import assets
from lakehub.errors import LakehubError

# The Lambda runtime the zips are built for (lakehub.stacks.builder.LAMBDA_RUNTIME: python3.13, arm64).
LAMBDA_PYTHON_VERSION = "3.13"
LAMBDA_PLATFORM = "manylinux2014_aarch64"
# Bump when the zip layout changes, so cached requirement trees are rebuilt.
PACKAGING_VERSION = "1"

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644 << 16
COMPRESS_LEVEL = 9
REQUIREMENTS_CACHE = assets.BUILD_DIR / ".cache" / "requirements"
# pip's per-install files (they vary between installs) and what the runtime never needs.
DROPPED_DIST_INFO_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
PIP_TIMEOUT = 600


def _requirements_key(requirements: bytes) -> str:
    digest = hashlib.sha256()
    for part in (requirements, LAMBDA_PLATFORM.encode(), LAMBDA_PYTHON_VERSION.encode(), PACKAGING_VERSION.encode()):
        digest.update(part + b"\0")
    return digest.hexdigest()[:16]


def _has_requirements(text: str) -> bool:
    return any(line.split("#", 1)[0].strip() for line in text.splitlines())


def install_requirements(name: str, cache_dir: Path | None = None) -> Path | None:
    """The folder holding the function's installed requirements (cached), or None if it has none."""
    cache_dir = cache_dir or REQUIREMENTS_CACHE
    req = assets.LAMBDAS_DIR / name / "requirements.txt"
    if not req.exists() or not _has_requirements(req.read_text()):
        return None
    target = cache_dir / _requirements_key(req.read_bytes())
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--no-compile",
        "--target",
        str(tmp),
        "--platform",
        LAMBDA_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON_VERSION,
        "--only-binary=:all:",
        "--requirement",
        str(req),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LakehubError(
            f"installing the requirements of function {name} took over {PIP_TIMEOUT} s; check access to PyPI"
        ) from None
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"pip exited with {proc.returncode}"
        raise LakehubError(
            f"could not install lambdas/{name}/requirements.txt for the Lambda runtime "
            f"(python{LAMBDA_PYTHON_VERSION}, arm64): {detail}"
        )
    try:
        tmp.rename(target)
    except OSError:  # another build got there first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _dependency_files(deps: Path) -> list[tuple[str, Path]]:
    files = []
    for path in sorted(deps.rglob("*")):
        rel = path.relative_to(deps)
        if not path.is_file() or path.is_symlink():
            continue
        if "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo") or rel.parts[0] == "bin":
            continue
        if rel.parts[0].endswith(".dist-info") and rel.name in DROPPED_DIST_INFO_FILES:
            continue
        files.append((rel.as_posix(), path))
    return files


def zip_entries(name: str, deps: Path | None) -> list[tuple[str, Path]]:
    """(archive name, file) for every entry of a function's zip, sorted by archive name."""
    entries = dict(assets._source_files(name))
    for arcname, path in _dependency_files(deps) if deps else []:
        if arcname in entries:
            raise LakehubError(
                f"function {name}: {arcname} is both a source file and part of a requirement; rename the source file"
            )
        entries[arcname] = path
    return sorted(entries.items())


def write_zip(entries: list[tuple[str, Path]], dest: Path, modes: dict[str, int] | None = None) -> None:
    """Write a byte-for-byte reproducible zip (atomically). `modes`: external attributes by
    archive name (default: a regular 0644 file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp_name, "w") as zf:
            for arcname, path in entries:
                info = zipfile.ZipInfo(arcname, date_time=FIXED_DATE_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (modes or {}).get(arcname, FILE_MODE)
                info.create_system = 3  # unix, whatever the build machine
                zf.writestr(info, path.read_bytes(), compresslevel=COMPRESS_LEVEL)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _remove_stale(name: str, keep: Path, out_dir: Path) -> None:
    pattern = re.compile(rf"^{re.escape(name)}-[0-9a-f]{{16}}\.zip$")
    for old in out_dir.glob(f"{name}-*.zip"):
        if old != keep and pattern.match(old.name):
            old.unlink(missing_ok=True)


def build_function(name: str, *, out_dir: Path | None = None, force: bool = False) -> Path:
    """Build (or reuse) one function's zip; returns its path."""
    if name not in assets.FUNCTIONS:
        raise LakehubError(f"unknown function {name!r}; known: {', '.join(sorted(assets.FUNCTIONS))}")
    if not (assets.LAMBDAS_DIR / name / "index.py").exists():
        raise LakehubError(f"lambdas/{name}/index.py is missing")
    out_dir = out_dir or assets.FUNCTIONS_BUILD_DIR
    dest = out_dir / assets.function_zip_name(name)
    if dest.exists() and not force and zipfile.is_zipfile(dest):
        return dest
    write_zip(zip_entries(name, install_requirements(name)), dest)
    _remove_stale(name, dest, out_dir)
    return dest


# The hub image's build source for the pipeline's S3 source type: buildspec.yml and hub_images/,
# at the key the pipeline template's SourceObjectKey parameter defaults to.
SOURCE_ZIP_KEY = "source/hub-image.zip"
SOURCE_PATHS = ("buildspec.yml", "hub_images")
SOURCE_BUILD_DIR = assets.BUILD_DIR / "source"
EXEC_MODE = 0o100755 << 16


def _source_zip_entries() -> list[tuple[str, Path]]:
    entries = []
    for rel in SOURCE_PATHS:
        base = assets.ROOT / rel
        paths = [base] if base.is_file() else sorted(base.rglob("*")) if base.is_dir() else []
        for path in paths:
            parts = path.relative_to(assets.ROOT).parts
            if not path.is_file() or path.is_symlink():
                continue
            if any(p in ("__pycache__", ".ipynb_checkpoints", ".pytest_cache") or p.endswith(".egg-info") for p in parts):
                continue
            if path.suffix in (".pyc", ".pyo"):
                continue
            entries.append(("/".join(parts), path))
    return sorted(entries)


def build_source_zip(out_dir: Path | None = None) -> Path:
    """The hub image's build source (buildspec.yml + hub_images/), reproducible; executable
    files keep their executable bit (entry-point scripts)."""
    dest = (out_dir or SOURCE_BUILD_DIR) / Path(SOURCE_ZIP_KEY).name
    entries = _source_zip_entries()
    if not entries:
        raise LakehubError("nothing to pack for the hub image source: buildspec.yml and hub_images/ are missing")
    modes = {arc: EXEC_MODE if os.access(path, os.X_OK) else FILE_MODE for arc, path in entries}
    # The build's stable version: CodeBuild sets no resolved source version for an S3 source,
    # so buildspec.yml tags the image with this digest of the files it builds from.
    version_file = dest.parent / SOURCE_VERSION_FILE
    version_file.parent.mkdir(parents=True, exist_ok=True)
    version_file.write_text(source_digest(entries) + "\n")
    entries = sorted([*entries, (SOURCE_VERSION_FILE, version_file)])
    write_zip(entries, dest, modes=modes)
    return dest


SOURCE_VERSION_FILE = "SOURCE_VERSION"


def source_digest(entries: list[tuple[str, Path]]) -> str:
    """sha256 over the archive names and contents, in order: the same files give the same
    version, whatever the zip's timestamps."""
    digest = hashlib.sha256()
    for arcname, path in sorted(entries):
        digest.update(arcname.encode() + b"\0" + path.read_bytes() + b"\0")
    return "src-" + digest.hexdigest()[:40]


def build_all(*, out_dir: Path | None = None, force: bool = False) -> dict[str, Path]:
    """Build (or reuse) every function's zip: {function name: zip path}."""
    return {name: build_function(name, out_dir=out_dir, force=force) for name in sorted(assets.FUNCTIONS)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehub.release.packaging", description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when the zip exists")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        zips = build_all(force=args.force)
    except LakehubError as exc:
        print(f"lakehub: error: {exc}", file=sys.stderr)
        return exc.exit_code
    for name, path in zips.items():
        print(f"{name:20} {path.relative_to(assets.ROOT)}  {path.stat().st_size:>8} bytes")
    print(f"{len(zips)} function zips in {time.perf_counter() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
