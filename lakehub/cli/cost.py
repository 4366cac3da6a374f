"""`lakehub cost`: the arguments and the tables (lakehub.cost.model estimates)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lakehub.assets import TEMPLATES_DIR
from lakehub.cost import model
from lakehub.cost.model import DEFAULT_REGION, DEFAULT_SERVER_SIZE, CostError, Profile, estimate
from lakehub.stacks import names


def _money(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"${x:,.{digits}f}"


def print_table(result: dict[str, Any], file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, width=140)
    prof = result["profile"]
    title = (
        f"lakehub cost, {result['region']}: {prof['users']} users x {prof['hours_per_day']:g} h x {prof['days_per_month']:g} days "
        f"({prof['user_hours_per_month']:,.0f} user-hours), {prof['server_size']} servers, egress {result['configuration']['egress_mode']}"
        + (
            f", on-demand hubs {prof['off_hours_hub_hours_per_month']:g} h outside business hours"
            if prof.get("off_hours_hub_hours_per_month")
            else ""
        )
    )
    t = Table(title=title, title_justify="left")
    t.add_column("Component")
    t.add_column("Nobody signed in\n$/month", justify="right")
    t.add_column("Per active\nuser-hour", justify="right")
    t.add_column("Profile\n$/month", justify="right")
    t.add_column("What is counted", overflow="fold", max_width=60)
    for c in result["components"].values():
        t.add_row(
            c["label"],
            _money(c["idle_monthly_usd"]),
            _money(c["per_user_hour_usd"], 4),
            _money(c["profile_monthly_usd"]),
            c["detail"],
        )
    t.add_section()
    t.add_row(
        "Total",
        _money(result["idle_monthly_usd"]),
        _money(result["per_user_hour_usd"], 4),
        _money(result["profile_monthly_usd"]),
        "",
        style="bold",
    )
    console.print(t)

    sm = result["sagemaker"]
    cmp = Table(title="Side by side, same prices and usage", title_justify="left")
    cmp.add_column("")
    cmp.add_column("Nobody signed in\n$/month", justify="right")
    cmp.add_column("Per active\nuser-hour", justify="right")
    cmp.add_column("Profile\n$/month", justify="right")
    cmp.add_row(
        "lakehub (this configuration)",
        _money(result["idle_monthly_usd"]),
        _money(result["per_user_hour_usd"], 4),
        _money(result["profile_monthly_usd"]),
        style="bold",
    )
    cmp.add_row(
        "Reference design (2 x 1 vCPU / 2 GB x86 24x7, ALB)",
        _money(result["reference_idle_monthly_usd"]),
        _money(result["reference_per_user_hour_usd"], 4),
        _money(result["reference_profile_monthly_usd"]),
    )
    cmp.add_row(
        f"SageMaker Studio ({sm['instance'] or 'no matching size'})",
        _money(0.0),
        _money(sm["per_user_hour_usd"], 4),
        _money(sm["profile_monthly_usd"]),
    )
    console.print(cmp)
    console.print(f"Idle cost is {result['idle_vs_reference']:.1%} of the reference design's. Prices: {result['prices']}.")
    for note in result["notes"]:
        console.print(f"note: {note}", highlight=False)


def _parameters(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0]:
            raise CostError(f"--parameter {item!r}: write Key=Value, e.g. EgressMode=nat-gateway")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _as_number(option: str, text: str, kind=float):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise CostError(f"{option} {text!r}: not a {'whole ' if kind is int else ''}number") from None


def run(args: argparse.Namespace) -> int:
    profile = Profile(
        users=_as_number("--users", args.users, int),
        hours_per_day=_as_number("--hours-per-day", args.hours_per_day),
        days_per_month=_as_number("--days-per-month", args.days_per_month),
        server_size=args.server_size,
        off_hours_hub_hours=_as_number("--off-hours-hub-hours", args.off_hours_hub_hours),
        home_gb_per_user=None if args.home_gb_per_user is None else _as_number("--home-gb-per-user", args.home_gb_per_user),
    )
    result = estimate(
        templates_dir=args.templates,
        parameters=_parameters(args.parameter),
        profile=profile,
        region=args.region,
        prices_path=args.prices,
        main_file=args.main,
    )
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--parameter",
        "-p",
        action="append",
        metavar="KEY=VALUE",
        help="a template parameter, e.g. EgressMode=nat-gateway, ServerMode=shared, TaskCpu=1024, Schedule=always (repeatable)",
    )
    p.add_argument("--users", default="20", help="data scientists in the profile (default 20)")
    p.add_argument("--hours-per-day", default="8", help="active hours per user per working day (default 8)")
    p.add_argument("--days-per-month", default="21", help="working days per month (default 21)")
    p.add_argument(
        "--off-hours-hub-hours",
        default="0",
        help="hours a month on-demand EC2 hubs run outside business hours (overlapping hubs count once); the NAT instance runs for them (default 0)",
    )
    p.add_argument(
        "--home-gb-per-user",
        default=None,
        help="GB each user keeps in their EFS home (default: the price file's home_gb_per_user, 2)",
    )
    p.add_argument(
        "--server-size",
        default=DEFAULT_SERVER_SIZE,
        help="each user's server: CPU/MEMORY in Fargate units (2048/8192 = 2 vCPU / 8 GB) or a size name the tiers offer (small, medium...)",
    )
    p.add_argument("--region", default=DEFAULT_REGION, help="price region (must be in the price file; default us-east-1)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")
    p.add_argument("--templates", type=Path, default=TEMPLATES_DIR, help="folder of generated templates (default templates/)")
    p.add_argument(
        "--main",
        default=names.MAIN_TEMPLATE,
        choices=(names.MAIN_TEMPLATE, names.MAIN_EXISTING_VPC_TEMPLATE),
        help="entry-point template",
    )
    p.add_argument("--prices", type=Path, default=None, help="price file (default lakehub/cost/prices.yaml)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cost",
        help="estimate the monthly cost of a configuration from the generated templates",
        description=model.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)
