"""The hub image's Python lock (hub_images/requirements.txt): one file for linux/arm64 and
linux/amd64 made from requirements.in by hub_images/lock.py.

Offline: the top-level pins are locked on both platforms, markers only split by machine, every
line is hash-pinned, and each platform's set is complete by the installed packages' metadata.
Network (PyPI): `lock.py --check` passes on the committed files and fails, naming the package,
on a stale copy.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "hub_images"
LOCK_TOOL = HUB / "lock.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("hub_images_lock", LOCK_TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


lock = _load_tool()
MACHINES = ("aarch64", "x86_64")


@pytest.fixture(scope="module")
def entries():
    return lock.parse_lock((HUB / "requirements.txt").read_text())


def _top_level():
    pins = {}
    for line in lock.logical_lines((HUB / "requirements.in").read_text()):
        name, sep, version = line.partition("==")
        assert sep, f"requirements.in line {line!r} is not a name==version pin"
        pins[lock.canonicalize_name(name)] = version
    return pins


# --------------------------------------------------------------------------------------------
# Offline
# --------------------------------------------------------------------------------------------
def test_the_tool_locks_both_image_platforms():
    assert set(lock.MACHINES) == set(MACHINES)
    assert {platform for platform, _ in lock.MACHINES.values()} == {"linux/arm64", "linux/amd64"}
    # glibc 2.36 (bookworm) down to each arch's oldest manylinux, legacy aliases included.
    assert lock.platform_tags("aarch64")[0] == "manylinux_2_36_aarch64"
    assert "manylinux2014_aarch64" in lock.platform_tags("aarch64")
    assert lock.platform_tags("x86_64")[-1] == "manylinux1_x86_64"


@pytest.mark.parametrize("machine", MACHINES)
def test_every_top_level_pin_is_locked_at_its_version(entries, machine):
    locked = {name: e.version for name, e in lock.pins_for(entries, machine).items()}
    top = _top_level()
    assert len(top) >= 15
    for name, version in top.items():
        assert locked.get(name) == version, f"requirements.in pins {name}=={version}; the {machine} lock has {locked.get(name)}"


def test_markers_only_split_by_machine_and_each_package_is_locked_once_per_machine(entries):
    allowed = {None, 'platform_machine == "aarch64"', 'platform_machine == "x86_64"'}
    for e in entries:
        assert e.marker in allowed, f"{e.name}: marker {e.marker!r} names something other than aarch64/x86_64"
    for machine in MACHINES:
        names = [lock.canonicalize_name(e.name) for e in entries if e.applies_to(machine)]
        assert len(names) == len(set(names)), f"a package is locked twice for {machine}"
    # Sorted by normalized name: a regenerated file diffs only where the lock changed.
    keys = [lock.canonicalize_name(e.name) for e in entries]
    assert keys == sorted(keys)


def test_every_line_is_hash_pinned_and_the_image_requires_hashes(entries):
    for e in entries:
        assert e.hashes, f"{e.name}=={e.version} has no --hash"
        for h in e.hashes:
            assert re.fullmatch(r"[0-9a-f]{64}", h), f"{e.name}: {h!r} is not a sha256"
        # Shared lines of binary wheels carry one hash per platform; never more.
        assert len(e.hashes) <= (1 if e.marker else len(MACHINES))
    dockerfile = (HUB / "Dockerfile").read_text()
    assert re.search(r"pip install [^\n]*--require-hashes[^\n]*-r /tmp/requirements.txt", dockerfile)


def _installed_requires(pins: dict[str, str]) -> dict[str, list[str]]:
    """Requires-Dist of the installed distributions whose version is the locked one."""
    requires = {}
    for dist in importlib.metadata.distributions():
        name = lock.canonicalize_name(dist.metadata["Name"])
        if pins.get(name) == dist.version:
            requires[name] = dist.requires or []
    return requires


@pytest.mark.parametrize("machine", MACHINES)
def test_each_platforms_lock_is_complete_by_the_installed_metadata(entries, machine):
    pins = {name: e.version for name, e in lock.pins_for(entries, machine).items()}
    requires = _installed_requires(pins)
    # The project's environment holds most of the image's packages at the locked versions (the
    # `hub` extra); without most of them this test would check little.
    assert len(requires) >= 0.6 * len(pins), f"only {len(requires)} of {len(pins)} locked versions are installed here"
    roots = lock.logical_lines((HUB / "requirements.in").read_text())
    assert lock.dependency_problems(pins, requires, roots, machine) == []


def test_the_completeness_check_finds_what_a_platform_misses():
    roots = ["a==1"]
    requires = {"a": ['b>=2; platform_machine == "aarch64"', "c", 'd; extra == "docs"'], "b": [], "c": []}
    # b is needed only on aarch64; d only for a[docs], which nobody asks for.
    assert lock.dependency_problems({"a": "1", "c": "1"}, requires, roots, "x86_64") == []
    problems = lock.dependency_problems({"a": "1", "c": "1"}, requires, roots, "aarch64")
    assert problems == ["a==1 needs b>=2 but b is not locked for aarch64"]
    assert lock.dependency_problems({"a": "1", "b": "1", "c": "1"}, requires, roots, "aarch64") == [
        "a==1 needs b>=2 but b==1 is locked for aarch64"
    ]
    # With every package's metadata known, a package nothing needs is named too.
    assert lock.dependency_problems({"a": "1", "b": "2", "c": "1"}, requires, roots, "x86_64") == [
        "b is locked for x86_64 but nothing in requirements.in needs it there"
    ]


def test_the_completeness_check_on_the_real_lock_names_a_removed_dependency(entries):
    pins = {name: e.version for name, e in lock.pins_for(entries, "x86_64").items()}
    requires = _installed_requires(pins)
    assert "python-dateutil" in requires, "python-dateutil is installed at its locked version (the hub extra)"
    del pins["six"]  # python-dateutil needs it
    problems = lock.dependency_problems(pins, requires, lock.logical_lines((HUB / "requirements.in").read_text()), "x86_64")
    assert any("needs six" in p and "six is not locked" in p for p in problems), problems


def test_merge_shares_a_line_where_platforms_agree_and_marks_where_they_differ():
    def res(machine, **pins):
        r = lock.Resolution(machine)
        for name, (version, digest) in pins.items():
            r.pins[name] = lock.Pin(name, version, digest * 64)
        return r

    merged = lock.merge(
        [
            res("aarch64", same=("1.0", "a"), split=("2.0", "b"), armonly=("1", "c")),
            res("x86_64", same=("1.0", "d"), split=("2.1", "e")),
        ]
    )
    text = lock.render(merged)
    assert lock.parse_lock(text) == merged
    got = {(e.name, e.version, e.marker): e.hashes for e in merged}
    assert got == {
        ("armonly", "1", 'platform_machine == "aarch64"'): ("c" * 64,),
        ("same", "1.0", None): ("a" * 64, "d" * 64),
        ("split", "2.0", 'platform_machine == "aarch64"'): ("b" * 64,),
        ("split", "2.1", 'platform_machine == "x86_64"'): ("e" * 64,),
    }
    assert 'split==2.1 ; platform_machine == "x86_64" \\\n    --hash=sha256:' + "e" * 64 in text
    assert {n: e.version for n, e in lock.pins_for(merged, "x86_64").items()} == {"same": "1.0", "split": "2.1"}


def test_the_build_context_has_the_lock_but_not_its_inputs_or_tool():
    from lakehub.local import images

    files = images.context_files(HUB)
    assert "requirements.txt" in files
    assert "lock.py" not in files and "requirements.in" not in files


def test_a_missing_input_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, str(LOCK_TOOL), "--check", "--input", str(tmp_path / "nope.in"), "--output", str(tmp_path / "out.txt")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "nope.in does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def _wheel(folder: Path, name: str, version: str, tag: str = "py3-none-any", requires: tuple[str, ...] = ()) -> None:
    """A minimal wheel (metadata only): enough for pip's resolver."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\n"
        f"Name: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    files[f"{dist}.dist-info/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{dist}-{tag}.whl", "w") as whl:
        for path, content in files.items():
            whl.writestr(path, content)


def test_the_tool_locks_each_platform_with_its_own_markers_and_wheels(tmp_path):
    """Offline, with pip's real resolver over a local index: a dependency that only one machine's
    markers select, and a binary package whose newest release has wheels for x86_64 only."""
    index = tmp_path / "index"
    index.mkdir()
    _wheel(
        index,
        "probe",
        "1.0",
        requires=('probe-arm; platform_machine == "aarch64"', 'probe-x86; platform_machine == "x86_64"', "native"),
    )
    _wheel(index, "probe-arm", "1.0")
    _wheel(index, "probe-x86", "1.0")
    _wheel(index, "native", "1.0", "cp311-cp311-manylinux_2_17_aarch64")
    _wheel(index, "native", "1.0", "cp311-cp311-manylinux_2_17_x86_64")
    _wheel(index, "native", "1.1", "cp311-cp311-manylinux_2_28_x86_64")
    (tmp_path / "requirements.in").write_text("probe==1.0\n")
    out = tmp_path / "requirements.txt"
    # The machine's pip settings are not the lock's: wheels offered through PIP_FIND_LINKS are not seen.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _wheel(elsewhere, "probe-x86", "9.9")
    env = {**os.environ, "PIP_FIND_LINKS": str(elsewhere)}
    command = [
        sys.executable,
        str(LOCK_TOOL),
        "--find-links",
        str(index),
        "--input",
        str(tmp_path / "requirements.in"),
        "--output",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    got = {(e.name, e.version, e.marker) for e in lock.parse_lock(out.read_text())}
    assert got == {
        ("native", "1.0", 'platform_machine == "aarch64"'),
        ("native", "1.1", 'platform_machine == "x86_64"'),
        ("probe", "1.0", None),
        ("probe-arm", "1.0", 'platform_machine == "aarch64"'),
        ("probe-x86", "1.0", 'platform_machine == "x86_64"'),
    }
    digest = hashlib.sha256((index / "native-1.1-cp311-cp311-manylinux_2_28_x86_64.whl").read_bytes()).hexdigest()
    assert f'native==1.1 ; platform_machine == "x86_64" \\\n    --hash=sha256:{digest}\n' in out.read_text()
    # Regenerating keeps the file as it is, and --check agrees.
    before = out.read_text()
    check = subprocess.run([*command, "--check"], capture_output=True, text=True, timeout=120, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert out.read_text() == before


def test_a_hand_edited_lock_that_does_not_parse_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "requirements.in").write_text("probe==1.0\n")
    (tmp_path / "requirements.txt").write_text("probe>=1.0\n")
    result = subprocess.run(
        [
            sys.executable,
            str(LOCK_TOOL),
            "--find-links",
            str(tmp_path),
            "--input",
            str(tmp_path / "requirements.in"),
            "--output",
            str(tmp_path / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "rerun with --upgrade" in result.stderr


# --------------------------------------------------------------------------------------------
# Network: pip's resolver against PyPI
# --------------------------------------------------------------------------------------------
def _check(*args):
    return subprocess.run(
        [sys.executable, str(LOCK_TOOL), "--check", "--timeout", "150", *args], capture_output=True, text=True, timeout=180
    )


@pytest.mark.network
@pytest.mark.timeout(200)
def test_the_committed_lock_is_what_the_tool_makes_from_requirements_in():
    result = _check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


@pytest.mark.network
@pytest.mark.timeout(200)
def test_check_fails_naming_a_changed_pin(tmp_path):
    original = (HUB / "requirements.txt").read_text()
    assert "\njupyterhub==6.1.1 \\\n" in original
    stale = tmp_path / "requirements.txt"
    stale.write_text(original.replace("\njupyterhub==6.1.1 \\\n", "\njupyterhub==6.1.0 \\\n"))
    result = _check("--input", str(HUB / "requirements.in"), "--output", str(stale))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "jupyterhub: locked 6.1.0, resolves to 6.1.1" in result.stderr
    assert "is stale" in result.stderr and len(result.stderr.strip().splitlines()) == 2  # the one difference
    assert stale.read_text() != original and (HUB / "requirements.txt").read_text() == original
