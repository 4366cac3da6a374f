"""`lakehub deploy`: the arguments, the live table of stack events and the outputs
(lakehub.release.deploy deploys)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections import deque

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lakehub.cli.argtypes import positive_seconds
from lakehub.release import deploy as library
from lakehub.release.deploy import DEFAULT_STACK_NAME, DEFAULT_TIMEOUT, READ_TIMEOUT, DeployResult, Display


class Terminal(Display):
    """On a terminal: each step as a line, a spinner while the endpoint is first contacted and a
    live table of the latest stack events (the main stack's and its nested stacks')."""

    def __init__(self, console: Console):
        self.console = console
        self.live: Live | None = None
        self.title = ""
        self.latest: deque = deque()

    def say(self, line: str) -> None:
        self.console.print(f"[bold]lakehub[/]: {line}")

    def contacting(self, where: str):
        return self.console.status(f"contacting CloudFormation at {where}", spinner="dots")

    @contextlib.contextmanager
    def watching(self, stack_name: str, latest: deque):
        self.title, self.latest = f"stack {stack_name}", latest
        self.live = Live(events_table(self.latest, self.title), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()
        try:
            yield
        finally:
            self.live.stop()
            self.live = None

    def events(self, new: list[dict]) -> None:
        if self.live is not None:
            self.live.update(events_table(self.latest, self.title))


def events_table(events, title: str) -> Table:
    table = Table(title=title, expand=False, show_lines=False)
    table.add_column("time")
    table.add_column("stack")
    table.add_column("resource")
    table.add_column("status")
    table.add_column("reason", overflow="fold", max_width=60)
    for e in events:
        status = e.get("ResourceStatus", "")
        style = "red" if "FAILED" in status or "ROLLBACK" in status else ("green" if status.endswith("COMPLETE") else "")
        table.add_row(
            e["Timestamp"].strftime("%H:%M:%S") if e.get("Timestamp") else "",
            e.get("StackName", "")[-40:],
            e.get("LogicalResourceId", ""),
            f"[{style}]{status}[/]" if style else status,
            (e.get("ResourceStatusReason") or "")[:200],
        )
    return table


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "deploy",
        help="create or update the main stack through a change set",
        description=library.__doc__.split("\n\n")[0],
    )
    p.add_argument("--stack-name", default=DEFAULT_STACK_NAME, help=f"stack name (default {DEFAULT_STACK_NAME})")
    p.add_argument(
        "--parameter", "-p", action="append", default=[], metavar="KEY=VALUE", help="a template parameter (repeatable)"
    )
    p.add_argument(
        "--parameters-file",
        metavar="FILE",
        help="JSON or YAML: {Key: Value} or [{ParameterKey, ParameterValue}]; --parameter wins",
    )
    p.add_argument("--region", help="AWS region (default: AWS_REGION, then AWS_DEFAULT_REGION, then the profile's)")
    p.add_argument("--endpoint-url", help="an AWS emulator's endpoint, e.g. http://127.0.0.1:8700")
    p.add_argument("--template-file", help="send this file as the template body instead of the published main template")
    p.add_argument("--template-url", help="deploy this template URL instead of the published main template")
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the stack (default 3600); each request waits at most {READ_TIMEOUT:.0f} s of it",
    )
    p.add_argument("--format", choices=("table", "json"), default="table", help="how to print the outputs")
    p.add_argument(
        "--preview",
        action="store_true",
        help="show the change set of the main stack (resource, action, replacement) and the Service Catalog "
        "products that --upgrade-products would update; change nothing",
    )
    p.add_argument(
        "--upgrade-products",
        action="store_true",
        help="after the main stack, update every tier and on-demand hub launched from the platform's Service "
        "Catalog products to the product's newest version, and report which runs which version",
    )
    p.set_defaults(func=run)


def _say(line: str) -> None:
    print(f"lakehub: {line}", file=sys.stderr)


def run(args) -> int:
    params: dict[str, str] = {}
    if args.parameters_file:
        params.update(library.read_parameters_file(args.parameters_file))
    for item in args.parameter:
        k, v = library.parse_parameter(item)
        params[k] = v
    as_json = args.format == "json"
    console = Console(stderr=as_json)
    preview = getattr(args, "preview", False)
    upgrade = getattr(args, "upgrade_products", False)
    result = library.deploy(
        params,
        stack_name=args.stack_name,
        region=args.region,
        endpoint_url=args.endpoint_url,
        template_file=args.template_file,
        template_url=args.template_url,
        timeout=args.timeout,
        display=Terminal(console) if console.is_terminal else None,
        progress=None if console.is_terminal else _say,
        preview=preview,
    )
    products = []
    if preview or upgrade:
        products = library.catalog_products(result, args.region, args.endpoint_url, args.timeout, preview, progress=_say)
    failed = [p for p in products if p.status == "failed"]
    if as_json:
        out = {
            "stack_name": result.stack_name,
            "stack_id": result.stack_id,
            "status": result.status,
            "change_set_type": result.change_set_type,
            "outputs": result.outputs,
        }
        if preview:
            out["changes"] = result.changes
        if preview or upgrade:
            out["products"] = [p.row() for p in products]
        print(json.dumps(out, indent=2))
        return 1 if failed else 0
    _print_tables(result, products, preview, upgrade)
    for p in failed:
        print(f"lakehub: error: {p.name} ({p.provisioned_product_id}): {p.detail}", file=sys.stderr)
    return 1 if failed else 0


def _print_tables(result: DeployResult, products: list, preview: bool, upgrade: bool) -> None:
    out = Console()
    if preview:
        table = Table(
            title=f"preview of stack {result.stack_name} ({result.change_set_type.lower()}): {len(result.changes)} changes, nothing executed"
        )
        for column in ("stack", "resource", "type", "action", "replacement"):
            table.add_column(column, overflow="fold")
        for c in result.changes:
            table.add_row(c["stack"], c["resource"], c["type"], c["action"], c["replacement"])
        out.print(table)
    else:
        table = Table(title=f"stack {result.stack_name}: {result.status} ({result.seconds:.0f} s)")
        table.add_column("output")
        table.add_column("value", overflow="fold")
        for k, v in sorted(result.outputs.items()):
            table.add_row(k, v)
        out.print(table)
    if preview or upgrade:
        table = Table(title="Service Catalog provisioned products" + (" (would upgrade)" if preview else ""))
        for column in ("provisioned product", "id", "before", "after", "status", "detail"):
            table.add_column(column, overflow="fold")
        for p in products:
            table.add_row(p.name, p.provisioned_product_id, p.before, p.after, p.status, p.detail)
        out.print(table)
