"""Where the build's assets live, locally and in the assets bucket.

The assets bucket holds, under AssetsKeyPrefix:
  templates/<name>.template.yaml          every generated template
  functions/<function>-<hash>.zip         one zip per custom-resource function

A function's key carries a hash of its sources (its folder under lambdas/, plus any extra
inputs such as the example notebooks), so a code change gives a new key and CloudFormation
updates the function; the same sources always give the same key (templates stay deterministic).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = ROOT / "templates"
LAMBDAS_DIR = ROOT / "lambdas"
HUB_IMAGES_DIR = ROOT / "hub_images"
BUILD_DIR = ROOT / "build"
FUNCTIONS_BUILD_DIR = BUILD_DIR / "functions"

TEMPLATES_KEY = "templates/"
FUNCTIONS_KEY = "functions/"

# Custom-resource functions and the extra source folders (relative to ROOT) packed with them.
# lambdas/lakehub_cr: what the crhelper functions share (packed as lakehub_cr/ into each zip).
CR_SHARED = "lambdas/lakehub_cr"
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "seed_notebooks": (CR_SHARED, "hub_images/notebooks"),
    "wait_for_image": (CR_SHARED,),
    "listener_priority": (CR_SHARED,),
    "nat_egress": (),
    "product_template": (CR_SHARED,),
    "secret_arn": (CR_SHARED,),
    "image_digest": (CR_SHARED,),
}


def _packed(path: Path, base: Path) -> bool:
    """Whether a file under base belongs in a function: not caches, not hidden files or folders
    (.ipynb_checkpoints, .DS_Store, editors' swap files)."""
    rel = path.relative_to(base)
    return (
        path.is_file()
        and "__pycache__" not in rel.parts
        and path.suffix not in (".pyc", ".pyo")
        and not any(part.startswith(".") for part in rel.parts)
    )


def _source_files(name: str) -> list[tuple[str, Path]]:
    """(archive name, path) for every source file of a function, sorted by archive name."""
    files: list[tuple[str, Path]] = []
    folder = LAMBDAS_DIR / name
    for path in sorted(folder.rglob("*")):
        if _packed(path, folder):
            files.append((path.relative_to(folder).as_posix(), path))
    for extra in FUNCTIONS[name]:
        base = ROOT / extra
        for path in sorted(base.rglob("*")) if base.exists() else []:
            if _packed(path, base):
                files.append(((Path(base.name) / path.relative_to(base)).as_posix(), path))
    return sorted(files)


def function_hash(name: str) -> str:
    """Short content hash of a function's sources."""
    if name not in FUNCTIONS:
        raise KeyError(f"unknown function {name!r}; known: {', '.join(sorted(FUNCTIONS))}")
    digest = hashlib.sha256()
    for arcname, path in _source_files(name):
        digest.update(arcname.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def function_zip_name(name: str) -> str:
    return f"{name}-{function_hash(name)}.zip"


def function_key(name: str) -> str:
    """Key of a function's zip under AssetsKeyPrefix."""
    return FUNCTIONS_KEY + function_zip_name(name)


def template_key(filename: str) -> str:
    """Key of a template under AssetsKeyPrefix."""
    return TEMPLATES_KEY + filename
