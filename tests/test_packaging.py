"""Function zips: deterministic, complete, cached."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from lakehub import assets
from lakehub.release import packaging
from lakehub.errors import LakehubError

ROOT = Path(__file__).resolve().parents[1]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def two_cold_builds(tmp_path_factory):
    """Two builds from nothing: separate output folders and separate requirement caches (so
    pip installs twice)."""
    results = []
    for i in range(2):
        base = tmp_path_factory.mktemp(f"build{i}")
        mp = pytest.MonkeyPatch()
        mp.setattr(packaging, "REQUIREMENTS_CACHE", base / "cache")
        try:
            started = time.perf_counter()
            zips = packaging.build_all(out_dir=base / "functions")
            results.append((zips, time.perf_counter() - started))
        finally:
            mp.undo()
    return results


def uses_crhelper(name: str) -> bool:
    """Custom resources list crhelper in their requirements; event-driven functions do not."""
    req = assets.LAMBDAS_DIR / name / "requirements.txt"
    return any(line.split("#", 1)[0].strip().startswith("crhelper") for line in req.read_text().splitlines())


def test_custom_resources_carry_crhelper_and_the_nat_egress_function_needs_nothing():
    assert {n for n in assets.FUNCTIONS if uses_crhelper(n)} == {
        "seed_notebooks",
        "wait_for_image",
        "listener_priority",
        "product_template",
        "secret_arn",
        "image_digest",
    }
    assert not uses_crhelper("nat_egress")


def test_two_builds_are_byte_identical(two_cold_builds):
    (first, _), (second, _) = two_cold_builds
    assert sorted(first) == sorted(assets.FUNCTIONS)
    for name in first:
        assert first[name].name == second[name].name == assets.function_zip_name(name)
        assert first[name].read_bytes() == second[name].read_bytes(), f"{name} zips differ"


def test_zip_holds_the_function_its_requirements_and_nothing_variable(two_cold_builds):
    zips, _ = two_cold_builds[0]
    for name, path in zips.items():
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            assert zf.testzip() is None
        assert names == sorted(names), "entries are not sorted"
        assert "index.py" in names and "requirements.txt" in names
        if uses_crhelper(name):
            assert "crhelper/resource_helper.py" in names
            assert any(n.startswith("crhelper-2.0.12.dist-info/") for n in names)
        else:
            assert not any(n.startswith("crhelper") for n in names), f"{name} lists no crhelper and must not carry it"
        assert not any(n.startswith(("boto3/", "botocore/")) for n in names), "boto3 comes from the runtime"
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            assert not info.filename.endswith((".pyc", "/RECORD", "/INSTALLER", "/REQUESTED", "/direct_url.json"))
            assert "__pycache__" not in info.filename and not info.filename.startswith("bin/")


def test_seed_zip_carries_the_example_notebooks(two_cold_builds):
    zips, _ = two_cold_builds[0]
    examples = sorted(
        p.relative_to(assets.HUB_IMAGES_DIR).as_posix()
        for p in (assets.HUB_IMAGES_DIR / "notebooks").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    with zipfile.ZipFile(zips["seed_notebooks"]) as zf:
        packed = sorted(n for n in zf.namelist() if n.startswith("notebooks/"))
    assert packed == examples


def test_the_packaged_handler_imports_with_only_its_zip(two_cold_builds, tmp_path):
    """Unpacked alone (plus boto3, as in the runtime), each zip imports its handler."""
    zips, _ = two_cold_builds[0]
    for name, path in zips.items():
        target = tmp_path / name
        with zipfile.ZipFile(path) as zf:
            zf.extractall(target)
        code = (
            (
                "import sys; sys.path.insert(0, sys.argv[1]); import index, crhelper; "
                "assert crhelper.__file__.startswith(sys.argv[1]), crhelper.__file__; "
                "assert callable(index.handler)"
            )
            if uses_crhelper(name)
            else "import sys; sys.path.insert(0, sys.argv[1]); import index; assert callable(index.handler)"
        )
        env = {"PATH": "/usr/bin:/bin", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
        # -S: no site-packages (crhelper must come from the zip); boto3 added explicitly.
        import boto3

        boto_site = str(Path(boto3.__file__).parents[1])
        proc = subprocess.run(
            [sys.executable, "-S", "-c", f"import sys; sys.path.append({boto_site!r}); exec({code!r})", str(target)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr


def test_cached_builds_are_fast_and_do_not_rewrite(tmp_path, monkeypatch, two_cold_builds):
    monkeypatch.setattr(packaging, "REQUIREMENTS_CACHE", tmp_path / "cache")
    out = tmp_path / "functions"
    packaging.build_all(out_dir=out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    started = time.perf_counter()
    packaging.build_all(out_dir=out)
    warm = time.perf_counter() - started
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert warm < 1.0
    cold = two_cold_builds[0][1]
    print(f"\npackaging: cold build of {len(assets.FUNCTIONS)} zips {cold:.2f} s, warm {warm * 1000:.1f} ms")


def test_a_source_change_gives_a_new_zip_and_removes_the_stale_one(tmp_path, monkeypatch):
    lambdas = tmp_path / "lambdas"
    shutil.copytree(
        assets.LAMBDAS_DIR / "listener_priority", lambdas / "listener_priority", ignore=shutil.ignore_patterns("__pycache__")
    )
    monkeypatch.setattr(assets, "LAMBDAS_DIR", lambdas)
    out = tmp_path / "functions"
    first = packaging.build_function("listener_priority", out_dir=out)
    (lambdas / "listener_priority" / "index.py").write_text(
        (lambdas / "listener_priority" / "index.py").read_text() + "\n# changed\n"
    )
    second = packaging.build_function("listener_priority", out_dir=out)
    assert first.name != second.name
    assert [p.name for p in out.iterdir() if p.suffix == ".zip"] == [second.name]


def test_unknown_function_is_a_clear_error():
    with pytest.raises(LakehubError, match="unknown function 'nope'"):
        packaging.build_function("nope")


def test_source_zip_is_reproducible(tmp_path):
    a = packaging.build_source_zip(tmp_path / "a")
    b = packaging.build_source_zip(tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        names = zf.namelist()
    assert names == sorted(names)
    assert any(n.startswith("hub_images/") for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
