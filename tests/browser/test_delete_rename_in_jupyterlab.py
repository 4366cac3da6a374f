"""Issue 16: a delete and a rename made in JupyterLab's file browser happen in S3. In the home, a
notebook deleted from the file browser is gone from the listing and from the central copies in
the notebook bucket (users/<user>/: a delete marker, its versions kept), and one renamed there
leaves one file at the new name and none at the old; in shared/, a renamed notebook leaves one
object. Before issue 16's review a rename could report success and leave the old name in S3."""

from __future__ import annotations

import pytest

from .lab import Lab

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(900)]

DELETED, OLD, NEW, SHARED_NEW = "scratch.ipynb", "draft.ipynb", "final.ipynb", "final-shared.ipynb"


@pytest.fixture(scope="module")
def alice(tier, chromium):
    username, password = tier.members[0]
    lab = Lab(chromium, tier.url, username, tier.artifacts / "delete-rename")
    lab.sign_in(password)
    yield lab
    lab.close()


def test_a_notebook_deleted_and_another_renamed_in_the_file_browser_leave_one_file_in_the_bucket(tier, alice):
    mine = f"users/{alice.username}"
    for name in (DELETED, OLD):
        alice.new_notebook_from_launcher("")
        alice.save_with_name(name)
    alice.close_all_tabs()
    assert {DELETED, OLD} <= tier.notebook_keys(mine)
    alice.delete("", DELETED)
    alice.rename_in_browser("", OLD, NEW)
    alice.page.reload()
    alice.page.locator(".jp-DirListing-content").wait_for()
    alice.go_to_folder("")
    names = alice.listing_names()
    assert NEW in names and OLD not in names and DELETED not in names, names
    keys = tier.notebook_keys(mine)
    assert NEW in keys and OLD not in keys and DELETED not in keys, keys


def test_a_notebook_renamed_in_shared_leaves_one_object_there(tier, alice):
    alice.copy_into("", NEW, "shared")
    alice.rename_in_browser("shared", NEW, SHARED_NEW)
    keys = tier.notebook_keys("shared")
    assert SHARED_NEW in keys and NEW not in keys, keys
    assert NEW in tier.notebook_keys(f"users/{alice.username}")  # the home's own copy is untouched
