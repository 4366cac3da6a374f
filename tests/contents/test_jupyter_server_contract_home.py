"""jupyter_server's own contents contract (its sdist's tests/services/contents/test_manager.py,
test_checkpoints.py, test_largefilemanager.py and test_api.py, run as written) against the
product's contents manager: HomeContentsManager, rooted in a local folder as the user's home is,
with its shared/ folder and the central copy on the emulator's S3. Every save, delete, rename and
copy the suite makes also goes through the central copy (a failure there fails the test).

Not applicable, one reason each (the rest run unchanged): the suite's checkpoint tests expect
FileCheckpoints' one checkpoint that a save leaves alone, and deletable; here a file's
checkpoints are the S3 versions of its central copy (every save is a version, none is ever
deleted: tests/contents/test_home_contents.py covers them). And the API's test_delete_dirs empties
the root, which holds the undeletable virtual shared/ folder."""

from __future__ import annotations

import contract_support as cs
import pytest
from lakehub_hub.contents import HomeContentsManager
from traitlets.config import Config

manager_suite = cs.load_suite_module("test_manager")
checkpoint_suite = cs.load_suite_module("test_checkpoints")
largefile_suite = cs.load_suite_module("test_largefilemanager")
api_suite = cs.load_suite_module("test_api")


def _upstream_helpers() -> dict:
    """test_manager's own _make_dir/_make_big_dir (local folders), as written: the S3 run of the
    same suite (test_jupyter_server_contract_manager.py) replaces them in the shared module."""
    import ast

    path = cs.SUITE / "services" / "contents" / "test_manager.py"
    nodes = [
        n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef) and n.name in ("_make_dir", "_make_big_dir")
    ]
    namespace = dict(vars(manager_suite))
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    return {name: namespace[name] for name in ("_make_dir", "_make_big_dir")}


UPSTREAM_HELPERS = _upstream_helpers()


@pytest.fixture(autouse=True)
def _local_folder_helpers(monkeypatch):
    for name, func in UPSTREAM_HELPERS.items():
        monkeypatch.setattr(manager_suite, name, func)


VERSIONS = "checkpoints are the central copy's S3 versions: a save adds one, and none is deleted"
NOT_APPLICABLE = {
    "test_checkpoint_subdir": "FileCheckpoints' local .ipynb_checkpoints folder; " + VERSIONS,
    "test_checkpoints_follow_file": VERSIONS,
    "test_nb_checkpoints": VERSIONS,
    "test_file_checkpoints": VERSIONS,
    "test_checkpoints_separate_root": VERSIONS + " (no separate checkpoint root)",
    "test_checkpoints": VERSIONS,
    "test_delete_dirs": "deletes every entry of the root, the virtual shared/ too (the tier's folder: not deletable)",
}


def _s3(home_config) -> dict:
    return {k: v for k, v in home_config.items() if k != "root_dir"}


@pytest.fixture(params=[True, False], ids=["atomic", "direct"])
def jp_contents_manager(request, tmp_path, home_config):
    return HomeContentsManager(root_dir=str(tmp_path), use_atomic_writing=request.param, **_s3(home_config))


@pytest.fixture
def jp_file_contents_manager_class(home_config):
    def make(**kwargs):
        return HomeContentsManager(**_s3(home_config), **kwargs)

    return make


@pytest.fixture
def file_manager_with_notary(tmp_path, home_config):
    from nbformat.sign import NotebookNotary

    (tmp_path / "notary").mkdir()
    (tmp_path / "root").mkdir()
    cm = HomeContentsManager(root_dir=str(tmp_path / "root"), **_s3(home_config))
    cm.notary = NotebookNotary(data_dir=str(tmp_path / "notary"))
    return cm


@pytest.fixture
def jp_large_contents_manager(tmp_path, home_config):
    return HomeContentsManager(root_dir=str(tmp_path), **_s3(home_config))


@pytest.fixture
def contents_manager(contents, home_config):  # test_checkpoints' manager, over the suite's `contents`
    return HomeContentsManager(root_dir=str(contents["contents_dir"]), **_s3(home_config))


@pytest.fixture
def jp_argv():
    return []  # the API suite's own jp_argv selects FileContentsManager on the command line


@pytest.fixture
def jp_server_config(home_config):
    return Config(
        {
            "ServerApp": {"contents_manager_class": HomeContentsManager, "jpserver_extensions": {}},
            "HomeContentsManager": _s3(home_config),
        }
    )  # root_dir: the server's (the home)


globals().update(cs.suite_conftest_fixtures())
_check_created = api_suite._check_created
suppress_deprecation_warnings = api_suite.suppress_deprecation_warnings


@pytest.fixture
def contents_dir(tmp_path, jp_serverapp):  # the sdist conftest's, as written
    return tmp_path / jp_serverapp.root_dir


for _suite, _tag in (
    (manager_suite, "manager"),
    (checkpoint_suite, "checkpoints"),
    (largefile_suite, "largefile"),
    (api_suite, "api"),
):
    globals().update(cs.suite_tests(_suite, NOT_APPLICABLE, _tag))
