#!/usr/bin/env python3
"""Benchmark: what the committed templates cost in several configurations (lakehub cost).

Prints a Markdown table (the one in docs/COST.md) and a JSON line per scenario. Every figure
comes from `lakehub.cost.estimate` over templates/ with lakehub/cost/prices.yaml.
Usage: .venv/bin/python benchmarks/cost_report.py [--users 20 --hours-per-day 8 --days-per-month 21]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lakehub.cost import Profile, estimate  # noqa: E402

SCENARIOS: list[tuple[str, dict[str, str]]] = [
    ("Defaults: per-user, business hours, hub and users on Spot, NAT instance", {}),
    ("Hub on on-demand Fargate (UseSpot=false)", {"UseSpot": "false"}),
    ("Hubs and NAT instance 24x7 (Schedule=always)", {"Schedule": "always"}),
    ("NAT gateways instead of the NAT instance", {"EgressMode": "nat-gateway"}),
    ("Users' servers on on-demand Fargate", {"UserServersOnSpot": "false"}),
    (
        "Shared mode, 4 vCPU / 16 GB tasks, up to 5 per tier, on-demand",
        {"ServerMode": "shared", "TaskCpu": "4096", "TaskMemory": "16384", "MaxTasks": "5", "UseSpot": "false"},
    ),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--hours-per-day", type=float, default=8)
    parser.add_argument("--days-per-month", type=float, default=21)
    parser.add_argument("--server-size", default="2048/8192")
    args = parser.parse_args(argv)
    profile = dict(
        users=args.users, hours_per_day=args.hours_per_day, days_per_month=args.days_per_month, server_size=args.server_size
    )
    rows = []
    for label, params in SCENARIOS:
        r = estimate(parameters=params, profile=Profile(**profile))
        rows.append((label, r))
    ref = rows[0][1]
    print(
        f"{args.users} users x {args.hours_per_day:g} h x {args.days_per_month:g} days, {ref['profile']['server_size']} servers, {ref['region']}\n"
    )
    print("| Configuration | Nobody signed in ($/month) | vs reference | Per user-hour ($) | Profile month ($) |")
    print("|---|--:|--:|--:|--:|")
    for label, r in rows:
        print(
            f"| {label} | {r['idle_monthly_usd']:.2f} | {r['idle_vs_reference']:.1%} | {r['per_user_hour_usd']:.4f} | {r['profile_monthly_usd']:.2f} |"
        )
    print(
        f"| Reference design (2 x 1 vCPU / 2 GB x86 24x7) | {ref['reference_idle_monthly_usd']:.2f} | 100% | {ref['reference_per_user_hour_usd']:.4f} | {ref['reference_profile_monthly_usd']:.2f} |"
    )
    sm = ref["sagemaker"]
    print(f"| SageMaker Studio ({sm['instance']}) | 0.00 | - | {sm['per_user_hour_usd']:.4f} | {sm['profile_monthly_usd']:.2f} |")
    print()
    for label, r in rows:
        print(
            json.dumps(
                {
                    "scenario": label,
                    **{
                        k: r[k]
                        for k in ("idle_monthly_usd", "per_user_hour_usd", "profile_monthly_usd", "reference_idle_monthly_usd")
                    },
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
