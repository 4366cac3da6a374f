"""The `compliance` settings key (issue 19) and `build_templates.py --out DIR`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lakehub.assets import TEMPLATES_DIR
from lakehub.release.build import render_all
from lakehub.settings import COMPLIANCE_PROFILES, SettingsError, load_settings, parse_settings

ROOT = TEMPLATES_DIR.parent


def run_build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "build_templates.py"), "--no-package", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_default_profile_is_standard():
    assert load_settings(None).compliance == "standard"
    assert COMPLIANCE_PROFILES == ("standard", "strict")


def test_a_file_holding_only_compliance_strict_is_valid(tmp_path):
    path = tmp_path / "strict.yaml"
    path.write_text("compliance: strict\n")
    settings = load_settings(path)
    default = load_settings(None)
    assert settings.compliance == "strict" and settings.strict
    # every other key at its default
    assert settings.tiers == default.tiers
    assert settings.platform_name == default.platform_name
    assert settings.log_retention_days == 365  # the strict profile keeps logs a year (CT.CLOUDWATCH.PR.2)


def test_explicit_standard_builds_the_committed_templates():
    assert render_all(parse_settings({"compliance": "standard"})) == render_all(load_settings(None))


@pytest.mark.parametrize("value", ["strcit", "Strict", True, 1, None, ["strict"]])
def test_bad_profile_is_one_line_naming_key_values_and_fix(value):
    with pytest.raises(SettingsError) as err:
        parse_settings({"compliance": value})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("settings: compliance:")
    assert "standard" in message and "strict" in message


def test_bad_profile_exits_non_zero_with_one_line_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("compliance: paranoid\n")
    out = tmp_path / "out"
    result = run_build("--settings", str(path), "--out", str(out))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "compliance" in lines[0] and "'paranoid'" in lines[0] and "standard or strict" in lines[0], (
        result.stderr
    )
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not out.exists()


def test_lakehub_build_cli_exit_code_for_a_bad_profile(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("compliance: 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "lakehub.cli", "build", "--no-package", "--settings", str(path), "--out", str(tmp_path / "o")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "compliance" in result.stderr, result.stderr


def _files(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(d.iterdir())}


def test_out_writes_the_whole_set_there_and_leaves_templates_alone(tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in TEMPLATES_DIR.iterdir()}
    out = tmp_path / "a" / "b"
    result = run_build("--out", str(out))
    assert result.returncode == 0, result.stderr
    assert _files(out) == _files(TEMPLATES_DIR)  # the default profile is the committed set
    assert {p.name: p.stat().st_mtime_ns for p in TEMPLATES_DIR.iterdir()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.slow
def test_check_honours_out(tmp_path):
    settings = tmp_path / "strict.yaml"
    settings.write_text("compliance: strict\n")
    out = tmp_path / "strict"
    assert run_build("--settings", str(settings), "--out", str(out)).returncode == 0
    ok = run_build("--check", "--settings", str(settings), "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    # the strict set is not the standard one: checking it against the standard profile fails
    drift = run_build("--check", "--out", str(out))
    assert drift.returncode == 1 and "differ" in drift.stderr
    (out / "tier.template.yaml").write_text("edited\n")
    edited = run_build("--check", "--settings", str(settings), "--out", str(out))
    assert edited.returncode == 1 and "tier.template.yaml" in edited.stderr and "--out" in edited.stderr


def test_check_of_a_missing_out_dir_is_one_line(tmp_path):
    result = run_build("--check", "--out", str(tmp_path / "none"))
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_out_that_is_a_file_is_one_line(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    result = run_build("--out", str(target))
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1 and "not a directory" in result.stderr
    assert target.read_text() == "x"


def test_a_failed_write_leaves_the_previous_set_whole(tmp_path, monkeypatch):
    from lakehub.release import build
    from lakehub.errors import LakehubError

    out = tmp_path / "set"
    old = {"a.template.yaml": "old a\n", "b.template.yaml": "old b\n"}
    build.write_all(old, out)
    real_fdopen = build.os.fdopen
    calls = []

    def failing_fdopen(fd, *args, **kwargs):
        calls.append(fd)
        if len(calls) == 2:
            build.os.close(fd)
            raise OSError(28, "No space left on device")
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(build.os, "fdopen", failing_fdopen)
    with pytest.raises(LakehubError, match="no template was changed"):
        build.write_all({"a.template.yaml": "new a\n", "b.template.yaml": "new b\n"}, out)
    assert _files(out) == old  # neither file replaced, no temporary file left
