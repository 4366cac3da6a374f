"""`lakehub build` and `python build_templates.py`: the arguments and what is printed.

The work (render, write, drift, lint, the AWS rules) is lakehub.release.build's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lakehub.assets import TEMPLATES_DIR
from lakehub.checks.aws_rules import AWS_RULES
from lakehub.errors import LakehubError
from lakehub.release import build, packaging
from lakehub.settings import load_settings


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out_dir = Path(args.out).resolve() if args.out else TEMPLATES_DIR
    # docs/PARAMETERS.md documents the committed set (templates/); a set built elsewhere (e.g. the
    # strict profile into build/templates-strict) leaves it alone.
    committed = out_dir == TEMPLATES_DIR.resolve()
    if args.out and out_dir.exists() and not out_dir.is_dir():
        raise LakehubError(f"--out {args.out}: not a directory; give a directory for the templates")
    settings = load_settings(args.settings)
    rendered = build.render_all(settings)
    docs = build.render_docs(settings) if committed else {}
    if args.check:
        if not out_dir.is_dir():
            raise LakehubError(
                f"--out {args.out}: no such directory; build it first with `python build_templates.py --out {args.out}`"
            )
        differ = build.drift(rendered, out_dir) + [f"docs/{n}" for n in build.drift_docs(docs)]
        if differ:
            for name in differ:
                if name.startswith("docs/"):
                    doc = name.removeprefix("docs/")
                    sys.stdout.write(build.unified_diff(build.DOCS_DIR / doc, docs[doc], name))
                else:
                    sys.stdout.write(build.unified_diff(out_dir / name, rendered.get(name), name))
            again = (
                "python build_templates.py"
                + (f" --settings {args.settings}" if args.settings else "")
                + (f" --out {args.out}" if args.out else "")
            )
            print(
                f"templates in {build._shown(out_dir)}/ differ from what the code generates: "
                + ", ".join(differ)
                + f"; run `{again}`"
                + (" and commit templates/" if committed else ""),
                file=sys.stderr,
            )
            return 1
        print(f"templates up to date ({len(rendered)} files in {build._shown(out_dir)}/)")
        return 0
    written = build.write_all(rendered, out_dir)
    written += [f"docs/{n}" for n in build.write_docs(docs)]
    where = f"{build._shown(out_dir)}/" + (f", docs/{build.PARAMETERS_DOC}" if committed else "")
    print(
        f"wrote {len(written)} of {len(rendered) + len(docs)} files ({settings.compliance} profile) to {where}"
        + (f": {', '.join(written)}" if written else " (unchanged)")
    )
    if args.package:
        zips = packaging.build_all()
        if zips:
            print(f"packaged {len(zips)} functions into build/functions")
    if args.lint:
        paths = [out_dir / n for n in rendered]
        if not _passes("cfn-lint", "", build.lint(paths), f"over {len(rendered)} templates in {', '.join(build.LINT_REGIONS)}"):
            return 1
        if not _passes(
            "AWS rules",
            " (docs/AWS_NOTES.md)",
            build.aws_findings(paths),
            f"({len(AWS_RULES)} rules: what cfn-lint and the emulator do not check)",
        ):
            return 1
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


def _passes(checker: str, note: str, findings: list[str], clean: str) -> bool:
    """Print a checker's findings and their count to stderr (False), or its clean line (True)."""
    if findings:
        print("\n".join(findings), file=sys.stderr)
        print(f"{checker}: {len(findings)} findings{note}", file=sys.stderr)
        return False
    print(f"{checker}: 0 findings {clean}")
    return True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", metavar="FILE", help="YAML build-time settings (default tiers); see settings.example.yaml")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="directory the templates are written to (default templates/, the committed standard set); --check compares DIR",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only compare the templates (templates/ or --out DIR) with what the code generates; print a unified diff of each file that differs, name them and exit 1",
    )
    parser.add_argument(
        "--lint",
        action="store_true",
        help="run cfn-lint over every template for several regions, then the AWS-behaviour rules (lakehub/checks/aws_rules.py)",
    )
    parser.add_argument("--no-package", dest="package", action="store_false", help="do not build the function zips")


def register(subparsers) -> None:
    p = subparsers.add_parser("build", help="generate templates/, package functions, lint", description=build.__doc__)
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """`python build_templates.py`: the same arguments, its own program name in errors."""
    parser = argparse.ArgumentParser(prog="build_templates.py", description=build.__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except LakehubError as exc:
        print(f"build_templates.py: error: {exc}", file=sys.stderr)
        return exc.exit_code
