"""checkov (offline, its own virtual environment) over every template and the hub image's
Dockerfile: zero failed checks; every skip is argued in the resource (Metadata.checkov.skip, or a
`# checkov:skip=` comment in the Dockerfile) and listed in the skip table of docs/SECURITY.md."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, SECURITY_MD, build_strict, template_paths

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
DOCKERFILE = ROOT / "hub_images" / "Dockerfile"
MIN_REASON = 40  # characters: a reason, not a label

pytestmark = [
    pytest.mark.scanner,
    pytest.mark.skipif(
        not CHECKOV.exists(), reason="checkov is not installed in .venv-checkov (run `make scanners`; `make test` does)"
    ),
]


def run_checkov(args: list[str]) -> dict:
    proc = subprocess.run(
        [str(CHECKOV), "--skip-download", "--output", "json", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode in (0, 1), f"checkov failed to run ({proc.returncode}): {proc.stderr[-2000:]}"
    data = json.loads(proc.stdout)
    reports = data if isinstance(data, list) else [data]
    assert len(reports) == 1, [r.get("check_type") for r in reports]
    return reports[0]


STRICT_DIR = ROOT / "build" / "checkov-strict"  # the strict profile's set, built for the run


def strict_paths() -> list[Path]:
    return sorted(STRICT_DIR.glob("*.template.yaml"))


@pytest.fixture(scope="module")
def checkov_reports() -> dict[str, dict]:
    """One run per framework and per compliance profile, started in parallel."""
    build_strict(STRICT_DIR)
    jobs = {
        "cloudformation": ["--framework", "cloudformation", "--directory", "templates"],
        "dockerfile": ["--framework", "dockerfile", "--directory", "hub_images"],
        "strict": ["--framework", "cloudformation", "--directory", str(STRICT_DIR)],
    }
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_checkov, args) for name, args in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def describe(check: dict) -> str:
    return f"{check['check_id']} {check['resource']} ({check.get('file_path')}): {check['check_name']}"


@pytest.mark.parametrize("framework", ["cloudformation", "dockerfile", "strict"])
def test_checkov_fails_nothing(checkov_reports, framework):
    report = checkov_reports[framework]
    results = report["results"]
    assert not results.get("parsing_errors"), results.get("parsing_errors")
    failed = results.get("failed_checks", [])
    assert not failed, "\n".join(describe(c) for c in failed)
    assert report["summary"]["passed"] > 50


def test_checkov_scanned_every_template_and_the_dockerfile(checkov_reports):
    cfn = checkov_reports["cloudformation"]["results"]
    scanned = {Path(c["file_path"]).name for kind in ("passed_checks", "skipped_checks") for c in cfn[kind]}
    expected = {p.name for p in template_paths()}
    # main stacks hold only nested stacks and parameters; checkov may have nothing to check there
    assert expected - scanned <= {"main.template.yaml", "main-existing-vpc.template.yaml"}, expected - scanned
    docker = checkov_reports["dockerfile"]["results"]
    assert {Path(c["file_path"]).name for c in docker["passed_checks"]} == {"Dockerfile"}


def declared_skips() -> list[tuple[str, str, str]]:
    """(check id, where, reason) of every skip in the templates and the Dockerfile."""
    from lakehub.cfn.template import load

    skips = []
    build_strict(STRICT_DIR)  # writes only what changed
    for path in [*template_paths(), *strict_paths()]:
        for name, res in (load(path).get("Resources") or {}).items():
            for skip in ((res.get("Metadata") or {}).get("checkov") or {}).get("skip", []):
                skips.append((skip["id"], f"{path.name}:{name}", skip.get("comment", "")))
    for m in re.finditer(r"#\s*checkov:skip=([A-Z0-9_]+):(.*)", DOCKERFILE.read_text()):
        skips.append((m.group(1), "hub_images/Dockerfile", m.group(2).strip()))
    return skips


def skip_rows() -> dict[tuple[str, str], str]:
    """(check id, where) -> reason, from the skip table in docs/SECURITY.md: `| CKV_... | where | reason |`."""
    rows = {}
    for line in SECURITY_MD.read_text().splitlines():
        m = re.match(r"^\|\s*`?(CKV2?_[A-Z0-9_]+)`?\s*\|\s*`?([^|`]+?)`?\s*\|(.*)\|\s*$", line)
        if m:
            rows[(m.group(1), m.group(2).strip())] = m.group(3).strip()
    return rows


def skip_table() -> set[tuple[str, str]]:
    return set(skip_rows())


def test_security_md_gives_each_skip_the_reason_argued_in_place():
    """The table is the argument a reviewer reads: it must say what the template says (a reason
    changed in the code and not in the table, or the other way round, fails)."""
    rows = skip_rows()
    for check_id, where, reason in declared_skips():
        if (check_id, where) in rows:
            assert rows[(check_id, where)] == reason, (
                f"{check_id} on {where}: docs/SECURITY.md says {rows[(check_id, where)]!r}, the skip says {reason!r}"
            )


def test_every_skip_is_argued_in_place_and_listed_in_security_md():
    skips = declared_skips()
    assert skips, "no skips found: the parser is broken"
    for check_id, where, reason in skips:
        assert len(reason) >= MIN_REASON, f"{check_id} on {where}: the reason is too short to be an argument"
    declared = {(c, w) for c, w, _ in skips}
    table = skip_table()
    assert declared - table == set(), f"skips missing from the docs/SECURITY.md table: {sorted(declared - table)}"
    assert table - declared == set(), f"rows of docs/SECURITY.md for skips that no longer exist: {sorted(table - declared)}"


def test_checkov_skipped_only_the_declared_checks(checkov_reports):
    declared = {(c, w.split(":")[-1]) for c, w, _ in declared_skips()}
    for framework, report in checkov_reports.items():
        for check in report["results"].get("skipped_checks", []):
            resource = check["resource"].split(".", 1)[-1] if framework != "dockerfile" else "hub_images/Dockerfile"
            assert (check["check_id"], resource) in declared, describe(check)
