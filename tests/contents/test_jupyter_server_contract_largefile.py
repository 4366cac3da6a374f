"""jupyter_server's own chunked-save contract (its sdist's tests/services/contents/
test_largefilemanager.py, run as written) against the project's manager on the emulator's S3."""

from __future__ import annotations

import contract_support as cs
import pytest

largefile_suite = cs.load_suite_module("test_largefilemanager")

NOT_APPLICABLE = {
    "test_save_in_subdirectory": "makes its folder on the local disk (tmp_path), not through the manager",
}


@pytest.fixture
def jp_large_contents_manager(tier_config):
    return cs.make_suite_manager(tier_config)


globals().update(cs.suite_tests(largefile_suite, NOT_APPLICABLE))
