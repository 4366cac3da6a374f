"""What one pass of the local alarm evaluator (lakehub.local.alarms) costs against a moto server:
N tiers' worth of alarms on HubUp-like series with an hour of one-a-minute datapoints each (what
the hubs' exporters leave), plus `lakehub local status`'s read of the figures (observe).

    .venv/bin/python benchmarks/alarm_eval.py --alarms 10 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.common import save_result  # noqa: E402
from lakehub.local.emulator import start_moto_server  # noqa: E402
from lakehub.local.alarms import AlarmEvaluator  # noqa: E402
from lakehub.local.observe import observe  # noqa: E402
from tests.local.helpers import put_hub_down_alarm  # noqa: E402


def run(count: int, passes: int = 5) -> dict:
    server = start_moto_server()
    try:
        env = server.client_env()
        session = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]
        )

        def client(service: str):
            return session.client(service, endpoint_url=server.endpoint_url, region_name="us-east-1")

        cw = client("cloudwatch")
        now = time.time()
        tiers = [f"tier{i}" for i in range(count)]
        for tier in tiers:
            dims = [{"Name": "Platform", "Value": "bench"}, {"Name": "Tier", "Value": tier}]
            data = [
                {
                    "MetricName": "HubUp",
                    "Dimensions": dims,
                    "Value": 1.0,
                    "Timestamp": datetime.fromtimestamp(now - 60 * i, timezone.utc),
                }
                for i in range(60)
            ]
            for start in range(0, len(data), 20):
                cw.put_metric_data(Namespace="lakehub", MetricData=data[start : start + 20])
            put_hub_down_alarm(cw, f"bench-{tier}-hub-down", "bench", tier, TreatMissingData="breaching")
        evaluator = AlarmEvaluator(client, interval=3600)
        seconds = []
        for _ in range(passes):
            started = time.monotonic()
            evaluator.evaluate_once()
            seconds.append(time.monotonic() - started)
        reads = []
        for _ in range(passes):
            started = time.monotonic()
            seen = observe(
                server.endpoint_url,
                {"AccessKeyId": env["AWS_ACCESS_KEY_ID"], "SecretAccessKey": env["AWS_SECRET_ACCESS_KEY"]},
                "bench",
                tiers,
            )
            reads.append(time.monotonic() - started)
            assert not seen["error"], seen["error"]
        return {
            "alarms": count,
            "datapoints": count * 60,
            "pass_seconds_median": round(statistics.median(seconds), 3),
            "first_pass_seconds": round(seconds[0], 3),
            "observe_seconds_median": round(statistics.median(reads), 3),
        }
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, nargs="+", default=[10, 50])
    args = parser.parse_args()
    rows = [run(n) for n in args.alarms]
    for row in rows:
        print(row)
    save_result("alarm_eval", {"runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
