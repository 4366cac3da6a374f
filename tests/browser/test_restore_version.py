"""A user restores a notebook version themselves (issue 18, "Must show"), in a real browser on the
local platform (per-user servers): they save a notebook twice with different content, open
File > Revert Notebook to Checkpoint (JupyterLab 4 lists the versions of the notebook bucket,
newest first, with their times), pick the older one, and the notebook shows the old content;
behind it, the S3 object's current body is the old content and the newer version still exists.

One platform for the module (per-user mode only: the shared mode's checkpoints are the same
HomeContentsManager, covered by tests/browser/test_notebooks_in_jupyterlab.py and tests/contents).
"""

from __future__ import annotations

import nbformat
import pytest
from playwright.sync_api import expect

from .lab import Lab

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.timeout(900),
    pytest.mark.parametrize("tier", ["per-user"], indirect=True),
]

NAME = "restore-me.ipynb"


def _source(body: bytes) -> str:
    return nbformat.reads(body.decode(), as_version=4).cells[0].source


def test_a_user_reverts_a_notebook_to_an_older_version_and_the_newer_one_is_kept(tier, chromium):
    username, password = tier.members[0]
    lab = Lab(chromium, tier.url, username, tier.artifacts)
    try:
        lab.sign_in(password)
        lab.new_notebook_from_launcher("")
        lab.type_and_run_cell('print("the first draft")', "the first draft")
        lab.save_with_name(NAME)
        lab.set_cell_and_save('print("the second draft")')
        path = f"users/{username}/{NAME}"
        saved = tier.versions(path)
        assert [_source(body) for _, body in saved[:2]] == ['print("the second draft")', 'print("the first draft")']

        lab.menu("File", "Revert Notebook to Checkpoint")
        dialog = lab.page.locator(".jp-Dialog")
        dialog.wait_for()
        options = dialog.locator("select option").all_inner_texts()
        lab.shot("checkpoint-picker")
        assert len(options) >= 2, options  # every saved version, not the one checkpoint of a file system
        dialog.locator("button.jp-mod-reject").first.click()
        dialog.wait_for(state="detached")

        lab.revert_to_checkpoint(1)  # newest first: [second, first, (the empty Untitled)]
        lab.wait_notebook_ready(NAME, has_content=True)
        cell = lab.current_panel().locator(".jp-Cell").first.locator(".cm-content")
        expect(cell).to_contain_text("the first draft", timeout=30_000)
        lab.shot("after-revert")
        assert "the second draft" not in cell.inner_text()

        after = tier.versions(path)
        assert _source(after[0][1]) == 'print("the first draft")'  # the current body: the old content
        assert {vid for vid, _ in saved} <= {vid for vid, _ in after}  # nothing lost
        assert any(_source(body) == 'print("the second draft")' for _, body in after)
    finally:
        tier.timings["restore_version"] = dict(lab.timings, username=lab.username)
        lab.close()
