"""What the local emulator's write-through of the notebook bucket costs (durable local S3,
issue 16): time per PutObject with and without it.

Two emulators (lakehub.local.emulator_server) on loopback, one started with --persist-dir and
the notebook-like bucket named through its control API, one without; the same N puts of a
body of SIZE bytes to each, in turn, sequentially (one client, as one person saving), ROUNDS
times. Every put that returns is on disk (fsync of the file and its folder) in the first.

    .venv/bin/python benchmarks/durable_s3.py [--puts 200] [--size 51200] [--rounds 3] [--json-only]

Prints a table (per put: median and p95 over all puts), then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lakehub.errors import LakehubError  # noqa: E402
from lakehub.local.emulator import emulator_client, start_emulator_server  # noqa: E402
from lakehub.local import control  # noqa: E402
from lakehub.local.emulator_server import PERSIST_PATH  # noqa: E402

BUCKET = "bench-notebooks"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=200)
    parser.add_argument("--size", type=int, default=50 * 1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args(argv)
    body = os.urandom(args.size)
    results: dict[str, list[float]] = {"without": [], "with": []}
    servers = []
    with tempfile.TemporaryDirectory(prefix="lakehub-bench-durable-") as tmp:
        try:
            clients = {}
            for label in results:
                work = Path(tmp) / label
                try:
                    server = start_emulator_server(
                        work, work_dir=work / "emu", persist_dir=work / "notebooks-export" if label == "with" else None
                    )
                except LakehubError as exc:
                    raise SystemExit(f"the emulator did not start: {exc}") from None
                servers.append(server)
                url, token = server.endpoint_url, server.control_token
                s3 = emulator_client("s3", url)
                s3.create_bucket(Bucket=BUCKET)
                s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
                if label == "with":
                    control.control_request(
                        url,
                        PERSIST_PATH,
                        token,
                        data=json.dumps({"bucket": BUCKET}).encode(),
                        method="POST",
                        content_type="application/json",
                    )
                s3.put_object(Bucket=BUCKET, Key="warm-up", Body=body)
                clients[label] = s3
            for r in range(args.rounds):
                for label, s3 in clients.items():
                    for i in range(args.puts):
                        started = time.perf_counter()
                        s3.put_object(Bucket=BUCKET, Key=f"tiers/t/users/u/nb-{i % 50}.ipynb", Body=body)
                        results[label].append(time.perf_counter() - started)
            mirrored = sum(1 for p in (Path(tmp) / "with" / "notebooks-export").rglob("*") if p.is_file())
        finally:
            for server in servers:
                server.stop()

    def ms(values: list[float], q: float) -> float:
        return round(statistics.quantiles(values, n=100)[int(q) - 1] * 1000, 2) if q < 100 else round(max(values) * 1000, 2)

    figures = {
        label: {
            "median_ms": round(statistics.median(v) * 1000, 2),
            "p95_ms": ms(v, 95),
            "mean_ms": round(statistics.mean(v) * 1000, 2),
        }
        for label, v in results.items()
    }
    figures["overhead_median_ms"] = round(figures["with"]["median_ms"] - figures["without"]["median_ms"], 2)
    figures.update(puts=args.puts * args.rounds, size_bytes=args.size, files_mirrored=mirrored)
    if not args.json_only:
        print(f"{args.puts * args.rounds} PutObject calls of {args.size} bytes each, per put:")
        print(f"  {'':32} {'median':>8} {'p95':>8} {'mean':>8}")
        for label, name in (("without", "no write-through"), ("with", "write-through (fsync, rename)")):
            f = figures[label]
            print(f"  {name:32} {f['median_ms']:6.2f}ms {f['p95_ms']:6.2f}ms {f['mean_ms']:6.2f}ms")
        print(f"  write-through adds {figures['overhead_median_ms']:.2f} ms per put (median)")
    print(json.dumps({"benchmark": "durable_s3", **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
