"""How jupyter_server's own contents tests (its sdist's tests/, fetched by `make contract-suite`
into build/jupyter_server-tests) are pointed at the project's contents manager.

The one mapping, and why it hides nothing: the suite addresses the manager's root, which in the
product is a read-only listing of the mounts (tests/contents/test_tier_contents.py covers that).
`SuiteRootedTierContentsManager` is the product's TierContentsManager with its mount resolution
(`_split`/`_outer`/`_is_root`, the only place the router maps paths) changed so that the root is
the user's own mount: every call still goes through the router's get/save/delete/rename/copy/
checkpoint forwarding and the mount's LakehubS3ContentsManager, on the emulator's S3.

The suite's file-system side is served by S3 too: `contents_dir` is a UPath (universal_pathlib
over s3fs, listing cache off) at the same S3 prefix, so its fixtures write real objects and its
`pathlib.Path(...)` checks look in S3; test_manager's `_make_dir`/`_make_big_dir`/`_get_os_path`
are replaced by S3 equivalents (as s3contents' own test suite overrides make_dir).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
from lakehub_hub.contents import TierContentsManager
from upath import UPath
from upath.implementations.cloud import S3Path

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "build" / "jupyter_server-tests"
PACKAGE = "jupyter_server_contract"  # the sdist's tests/ package, under a name of its own


class SuiteRootedTierContentsManager(TierContentsManager):
    """TierContentsManager whose root is the user's own mount (see the module docstring)."""

    home = "alice"

    def _split(self, path, write=False):
        from lakehub_hub.contents import _norm

        return self.home, self._managers[self.home], _norm(path)

    @staticmethod
    def _outer(mount, path):
        return path

    @staticmethod
    def _is_root(path):
        return False

    def _get_os_path(self, path):
        """test_manager's os path of an API path: here the object's S3 URL."""
        mgr = self._managers[self.home]
        return f"s3://{mgr.bucket}/{mgr._key(path)}"


def load_suite_module(name: str) -> types.ModuleType:
    """Import build/jupyter_server-tests/services/contents/<name>.py as part of its package."""
    installed = importlib.import_module("jupyter_server").__version__
    version_file = SUITE / "VERSION"
    if not version_file.exists() or version_file.read_text().strip() != installed:
        raise RuntimeError(f"jupyter_server {installed}'s contract tests are not in {SUITE}: run `make contract-suite`")
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, SUITE / "__init__.py", submodule_search_locations=[str(SUITE)])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = pkg
        spec.loader.exec_module(pkg)
        # test_api imports `dirs` from `tests.conftest` (absolute): give it the sdist's list, read
        # from its conftest without importing that (it pulls in the suite's mock extensions).
        conftest = types.ModuleType("tests.conftest")
        for node in ast.parse((SUITE / "conftest.py").read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "dirs" for t in node.targets):
                conftest.dirs = ast.literal_eval(node.value)
        sys.modules.setdefault("tests.conftest", conftest)
    return importlib.import_module(f"{PACKAGE}.services.contents.{name}")


def suite_conftest_fixtures() -> dict:
    """The sdist conftest's `contents` and `folders` fixtures (run as written, on a UPath)."""
    src = (SUITE / "conftest.py").read_text()
    tree = ast.parse(src)
    keep = [
        n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) and "tests" not in (getattr(n, "module", "") or "")
    ]
    keep += [n for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "dirs" for t in n.targets)]
    keep += [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("contents", "folders")]
    namespace: dict = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(SUITE / "conftest.py"), "exec"), namespace)  # noqa: S102
    return {"contents": namespace["contents"], "folders": namespace["folders"]}


def suite_tests(module: types.ModuleType, not_applicable: dict, tag: str = "") -> dict:
    """The suite module's test functions, run as written, by the name to collect them under
    (`test_<tag>_...` with a tag); those in `not_applicable` marked skip with their reason."""
    tests = {}
    for name in dir(module):
        if name.startswith("test_") and callable(getattr(module, name)):
            func = getattr(module, name)
            if name in not_applicable:
                func = pytest.mark.skip(reason=f"not applicable: {not_applicable[name]}")(func)
            tests[f"test_{tag}_{name[5:]}" if tag else name] = func
    return tests


class MarkedS3Path(S3Path):
    """A UPath on S3 whose mkdir leaves the folder marker the product uses (s3contents' .s3keep,
    as JupyterLab's "new folder" and the seeding Lambda write): S3 has no empty folders, and a
    folder the suite made must outlive its files, as on disk. With parents=True it marks the
    missing ancestors, up to the first marked one (the mount root is always marked)."""

    _protocol_dispatch = False  # stay this class (made with protocol="s3")

    def mkdir(self, mode=0o777, parents=False, exist_ok=False):
        if self.joinpath(".s3keep").exists():
            if not exist_ok:
                raise FileExistsError(str(self))
            return
        self.joinpath(".s3keep").touch()
        parent = self.parent
        while parents and parent != self and not parent.joinpath(".s3keep").exists():
            parent.joinpath(".s3keep").touch()
            parent = parent.parent


def s3_upath(url: str, endpoint_url: str) -> UPath:
    return MarkedS3Path(url, protocol="s3", client_kwargs={"endpoint_url": endpoint_url}, use_listings_cache=False)


@pytest.fixture(name="contents_dir")
def contents_dir(tier_config):
    """The suite's root as a path: the user's own mount's S3 prefix."""
    home = SuiteRootedTierContentsManager.home
    return s3_upath(f"s3://{tier_config['bucket']}/{tier_config['mounts'][home]}", tier_config["endpoint_url"])


def make_suite_manager(tier_config) -> SuiteRootedTierContentsManager:
    return SuiteRootedTierContentsManager(**tier_config)
