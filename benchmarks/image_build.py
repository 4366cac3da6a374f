#!/usr/bin/env python3
"""Benchmark: the hub image built locally with podman (lakehub.local.images), then found again.

--cold runs in a podman storage and a download cache of its own (a temporary folder, removed at
the end; CONTAINERS_STORAGE_CONF and LAKEHUB_IMAGE_CACHE), so the first call pays for everything:
debootstrap, the stand-ins, the npm and pip downloads, apt in the hub stage; podman's shared
storage and the images others use are not touched. Without --cold the first call is whatever this
machine has cached. The second call is the cached path that `make local` and the tests take.

Prints a table (rich) and writes JSON to benchmarks/results/image_build-<cold|warm>-<date>.json.
Usage: .venv/bin/python benchmarks/image_build.py [--cold]   (as root: debootstrap and rootful podman)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lakehub.local import images  # noqa: E402
from common import save_result  # noqa: E402


def private_storage(folder: Path) -> None:
    """Point podman (and the image cache) at empty folders of this run only."""
    conf = folder / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{folder / "graph"}"\nrunroot = "{folder / "run"}"\n')
    os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)
    os.environ["LAKEHUB_IMAGE_CACHE"] = str(folder / "cache")
    os.environ["npm_config_cache"] = str(folder / "npm-cache")  # npm pack downloads again too
    images.podman_problem.cache_clear()


def timed(step: str, say) -> dict:
    started = time.monotonic()
    image = images.hub_image(say=say)
    return {
        "step": step,
        "seconds": round(time.monotonic() - started, 1),
        "built": image.built,
        "ref": image.ref,
        "size_bytes": image.size_bytes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cold", action="store_true", help="remove lakehub's images and the download cache first (a first build from nothing)"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lakehub-cold-build-", dir="/var/tmp")) if args.cold else None
    try:
        if folder:
            private_storage(folder)
        return measure(args.cold)
    finally:
        if folder:
            images._remove_rootfs(folder)  # unmounts whatever is still mounted under it first


def measure(cold: bool) -> int:
    problem = images.podman_problem()
    if problem:
        print(f"image_build: {problem}", file=sys.stderr)
        return 2
    marks: list[tuple[float, str]] = []
    started = time.monotonic()

    def say(line: str) -> None:
        marks.append((round(time.monotonic() - started, 1), line))
        print(f"  {time.monotonic() - started:6.0f} s  {line[:120]}", flush=True)

    first = timed("first call" + (" (cold)" if cold else ""), say)
    second = timed("second call (cached)", lambda line: None)
    logs = sorted((images.cache_dir() / "logs").glob("*.log"), key=os.path.getmtime)
    result = {
        "benchmark": "image_build",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cold": cold,
        "calls": [first, second],
        # When each phase started (seconds from the first call's start), from the progress lines.
        "phases": [
            {"at_s": at, "line": line[:160]} for at, line in marks if not line.startswith(("hub image: stage", "stand-in for"))
        ],
        "logs": [] if cold else [str(p) for p in logs[-4:]],
    }
    out = save_result(f"image_build-{'cold' if cold else 'warm'}-{result['date'][:10]}", result)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"hub image, built locally with podman ({os.cpu_count()} CPUs)", title_justify="left")
    for column in ("call", "seconds", "built", "size"):
        table.add_column(column)
    for call in (first, second):
        table.add_row(
            call["step"],
            f"{call['seconds']:.1f}",
            "yes" if call["built"] else "no (cached)",
            f"{call['size_bytes'] / 1e9:.2f} GB",
        )
    Console().print(table)
    print(
        json.dumps(
            {
                "benchmark": "image_build",
                "cold": cold,
                "first_s": first["seconds"],
                "first_built": first["built"],
                "cached_s": second["seconds"],
                "ref": first["ref"],
            }
        )
    )
    print(f"written: {out.relative_to(ROOT)}")
    return 0 if not second["built"] else 1


if __name__ == "__main__":
    sys.exit(main())
