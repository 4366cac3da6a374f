"""jupyter_server's own contents-manager contract (its sdist's tests/services/contents/
test_manager.py and test_checkpoints.py, run as written) against the project's manager:
TierContentsManager rooted in the user's own mount, on the emulator's S3 (contract_support.py
says how, and what the one path mapping is)."""

from __future__ import annotations

import math

import boto3
import contract_support as cs
import pytest
from nbformat.sign import NotebookNotary

manager_suite = cs.load_suite_module("test_manager")
checkpoint_suite = cs.load_suite_module("test_checkpoints")

# Collected but not applicable to an S3 contents manager: skipped, one reason each.
NOT_APPLICABLE = {
    "test_root_dir": "FileContentsManager's root_dir (a local folder); our root is S3 mounts",
    "test_missing_root_dir": "FileContentsManager refuses a missing local root_dir; no local root here",
    "test_invalid_root_dir": "FileContentsManager refuses a file as root_dir; no local root here",
    "test_get_os_path": "FileContentsManager's API path -> local os path mapping",
    "test_get_os_path_posix": "FileContentsManager's API path -> local os path mapping",
    "test_checkpoint_subdir": "FileCheckpoints' local checkpoint folder under root_dir",
    "test_bad_symlink": "symlinks: S3 has none",
    "test_recursive_symlink": "symlinks: S3 has none",
    "test_good_symlink": "symlinks: S3 has none",
    "test_403": "chmod on a local file (and upstream skips it as root)",
    "test_regression_is_hidden": "its last step asserts the manager calls filemanager/jupyter_core "
    "is_hidden (os-level checks FileContentsManager makes); S3 names are hidden by their dot",
    "test_created_timestamp": "backdates the local file's mtime with os.utime; S3 sets LastModified itself",
    "test_created_uses_birthtime_on_macos": "local st_birthtime (and upstream runs it on macOS only)",
    "test_created_uses_ctime_on_windows": "local st_ctime (and upstream runs it on Windows only)",
    "test_created_timestamp_fallback_to_epoch": "patches os.lstat of the local file",
    "test_base_model_invalid_timestamp_fallback": "patches os.lstat of the local file",
}
# Collected, run and passing, but they call only FileContentsManager's module-level helper
# `_get_created_timestamp` with mocks, never the manager under test: counted apart in the report.
PASS_WITHOUT_OUR_MANAGER = [
    "test_get_created_timestamp_uses_birthtime",
    "test_get_created_timestamp_fallback_no_birthtime",
    "test_get_created_timestamp_accepts_zero_birthtime",
    "test_get_created_timestamp_fallback_negative_birthtime",
    "test_get_created_timestamp_fallback_infinite_birthtime",
    "test_get_created_timestamp_fallback_nan_birthtime",
    "test_get_created_timestamp_fallback_none_birthtime",
    "test_get_created_timestamp_fallback_string_birthtime",
]


# --- S3 equivalents of test_manager's file-system helpers --------------------------------------
def _s3_dir(cm, api_path):
    mgr = cm._managers[cm.home]
    return mgr, boto3.client("s3", region_name="us-east-1", endpoint_url=mgr.endpoint_url)


def _make_dir(cm, api_path):
    """os.makedirs: a folder marker (.s3keep, as s3contents makes) at every level."""
    mgr, s3 = _s3_dir(cm, api_path)
    parts = api_path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        s3.put_object(Bucket=mgr.bucket, Key=mgr._key("/".join(parts[:i]) + "/.s3keep"), Body=b"")


def _make_big_dir(contents_manager, api_path):
    """A folder over max_copy_folder_size_mb (upstream: many small local files; here 1 MiB objects)."""
    cm = contents_manager
    _make_dir(cm, api_path)
    mgr, s3 = _s3_dir(cm, api_path)
    for i in range(math.ceil(cm._managers[cm.home].max_copy_folder_size_mb * 1.4)):
        s3.put_object(Bucket=mgr.bucket, Key=mgr._key(f"{api_path}/subfolder-{i}/testfile.txt"), Body=b"x" * 2**20)


manager_suite._make_dir = _make_dir
manager_suite._make_big_dir = _make_big_dir


# --- the suite's manager fixtures, overridden ---------------------------------------------------
@pytest.fixture
def jp_contents_manager(tier_config):
    return cs.make_suite_manager(tier_config)


@pytest.fixture
def jp_file_contents_manager_class(tier_config):
    def make(root_dir):  # root_dir: only test_escape_root's scratch files beside it use it
        return cs.make_suite_manager({**tier_config, "root_dir": root_dir})

    return make


@pytest.fixture
def file_manager_with_notary(tier_config, tmp_path):
    notary_dir = tmp_path / "notary"
    notary_dir.mkdir()
    cm = cs.make_suite_manager(tier_config)
    cm.notary = NotebookNotary(data_dir=str(notary_dir))
    return cm


@pytest.fixture
def contents_manager(tier_config, contents):  # test_checkpoints' manager, over the suite's `contents`
    return cs.make_suite_manager(tier_config)


globals().update(cs.suite_conftest_fixtures())
contents_dir = cs.contents_dir


globals().update(cs.suite_tests(manager_suite, NOT_APPLICABLE))
globals().update(cs.suite_tests(checkpoint_suite, NOT_APPLICABLE))
