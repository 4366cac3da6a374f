"""A data scientist in a real browser (Playwright, Debian's chromium) on each server mode: signs in
to JupyterLab opened in their home (with the tier's shared/ folder), opens the example notebook from
shared/examples/ and runs it, creates a notebook from the launcher in the home, reads the tier's
data with pandas, saves (JupyterLab asks for a name; the central copy lands in the bucket under
users/<user>/), renames, copies it into shared/; a colleague of the same tier opens that copy and
sees the saved output; the owner deletes their own copy (gone from the file browser and the
bucket's listing); the R example runs. Then (issue 15) a file uploaded through the file browser is
read by a relative path in a kernel and a file the kernel writes shows up in the file browser, both
are still there after the server is stopped and started, and an earlier version of a notebook is
restored from JupyterLab's "Revert to checkpoint". REST calls alone missed that no notebook opened
in JupyterLab.

The tests of one mode run in order on one signed-in browser per person (module-scoped): a later
step needs what an earlier one made. Screenshots of each step: build/test-artifacts/browser/.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from .lab import Lab

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(900)]

TYPED_CELL = """import os, boto3, pandas as pd
bucket = os.environ["LAKEHUB_DATA_BUCKET"]
prefix = os.environ["LAKEHUB_DATA_PREFIXES"].split(",")[0]
listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
key = sorted(o["Key"] for o in listing if o["Key"].endswith(".csv"))[0]
endpoint = os.environ.get("AWS_ENDPOINT_URL_S3")
df = pd.read_csv(f"s3://{bucket}/{key}", storage_options={"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {})
print("rows in the tier's data:", len(df))"""
NAME, RENAMED = "analysis.ipynb", "quarterly-analysis.ipynb"


ROLES = ("member", "colleague")  # the two people of one tier, in the order they sign in


@pytest.fixture(scope="module")
def people(tier, chromium):
    labs = {}

    def person(index: int) -> Lab:
        if index not in labs:
            username, password = tier.members[index]
            labs[index] = Lab(chromium, tier.url, username, tier.artifacts)
            labs[index].sign_in(password)
        return labs[index]

    yield person
    for index, lab in labs.items():
        tier.timings[ROLES[index]] = dict(lab.timings, username=lab.username)
        lab.close()


def test_member_signs_in_and_lab_opens_in_their_home_without_a_news_prompt(tier, people):
    alice = people(0)
    assert re.search(r"/user/[^/]+/lab(/tree)?/?$", alice.page.url), alice.page.url
    alice.page.wait_for_timeout(1500)  # the news prompt, when on, shows shortly after start
    alice.no_news_prompt()
    alice.go_to_folder("")
    names = alice.listing_names()
    assert "shared" in names and alice.username not in names, names  # the home, not a users/ folder


def test_example_notebook_opens_from_the_file_browser_and_runs_without_errors(tier, people):
    alice = people(0)
    alice.open_from_browser("shared/examples", "python_data_lake.ipynb")
    alice.run_all("python_data_lake.ipynb")
    assert alice.error_outputs() == []
    assert "CSV files" in alice.outputs_text()


def test_new_notebook_from_the_launcher_reads_tier_data_saves_and_renames_to_one_file(tier, people):
    alice = people(0)
    alice.new_notebook_from_launcher("")
    output = alice.type_and_run_cell(TYPED_CELL, "rows in the tier's data:")
    assert output.strip().endswith(tier.expected_rows), output
    alice.save_with_name(NAME)
    assert tier.notebook_keys(f"users/{alice.username}") >= {NAME}
    alice.rename_current(RENAMED)
    alice.go_to_folder("")
    alice.wait_for_item(RENAMED)
    names = alice.listing_names()
    assert RENAMED in names and NAME not in names and not [n for n in names if n.startswith("Untitled")], names
    keys = tier.notebook_keys(f"users/{alice.username}")
    assert RENAMED in keys and NAME not in keys and not [k for k in keys if k.startswith("Untitled")], keys


def test_copy_in_shared_is_opened_by_a_colleague_with_the_saved_output(tier, people):
    alice = people(0)
    alice.copy_into("", RENAMED, "shared")
    assert RENAMED in tier.notebook_keys("shared")
    assert RENAMED in tier.notebook_keys(f"users/{alice.username}")  # a copy: the original stays

    bob = people(1)
    bob.open_from_browser("shared", RENAMED)
    text = bob.outputs_text()
    assert f"rows in the tier's data: {tier.expected_rows}" in text, text
    assert bob.error_outputs() == []


def test_deleting_from_the_file_browser_removes_the_notebook(tier, people):
    alice = people(0)
    alice.delete("", RENAMED)
    alice.page.reload()
    alice.page.locator(".jp-DirListing-content").wait_for()
    alice.go_to_folder("")
    assert RENAMED not in alice.listing_names()
    assert RENAMED not in tier.notebook_keys(f"users/{alice.username}")
    assert RENAMED in tier.notebook_keys("shared")  # the colleague's copy is another object


def test_r_example_runs_without_errors(tier, people):
    bob = people(1)
    bob.open_from_browser("shared/examples", "r_data_lake.ipynb")
    bob.run_all("r_data_lake.ipynb")
    assert bob.error_outputs() == [], bob.error_outputs()
    assert "rows:" in bob.outputs_text()
    assert bob.current_panel().locator(".jp-RenderedImage img").count() >= 1  # the ggplot chart


# --- the home (issue 15) -----------------------------------------------------------------------
UPLOADED, WRITTEN = "measurements.csv", "written-by-kernel.csv"
READ_AND_WRITE = """import os, pandas as pd
df = pd.read_csv("measurements.csv")
df.assign(double=df.value * 2).to_csv("written-by-kernel.csv", index=False)
print("persistent home:", bool(os.environ.get("LAKEHUB_HOME")))
print("rows read:", len(df))"""
AFTER_RESTART = """import pandas as pd
print("after restart:", len(pd.read_csv("measurements.csv")), int(pd.read_csv("written-by-kernel.csv").double.sum()))"""
PERSISTENT: dict[str, bool] = {}


def test_a_file_uploaded_next_to_a_notebook_is_read_by_relative_path_and_what_the_kernel_writes_shows_up(
    tier, people, tmp_path_factory
):
    alice = people(0)
    local = tmp_path_factory.mktemp("upload") / UPLOADED
    local.write_text("value\n1\n2\n3\n")
    alice.upload("", local)
    alice.new_notebook_from_launcher("")
    output = alice.type_and_run_cell(READ_AND_WRITE, "rows read:")
    assert "rows read: 3" in output, output
    PERSISTENT[tier.mode] = "persistent home: True" in output
    alice.save_with_name("files.ipynb")
    alice.go_to_folder("")
    alice.wait_for_item(WRITTEN)
    assert UPLOADED in tier.notebook_keys(f"users/{alice.username}")  # through Jupyter: a central copy


def test_uploaded_and_kernel_written_files_survive_a_server_stop_and_start(tier, people):
    """Shared mode: the home is the tier's folder the hub mounts. Per-user mode: the local agent
    gives each task its user's access-point folder as HOME/LAKEHUB_HOME (issue 15's homes)."""
    if tier.mode == "per-user":
        assert PERSISTENT.get(tier.mode), "the per-user task had no LAKEHUB_HOME (see the upload test's output)"
    alice = people(0)
    alice.close_all_tabs()
    alice.restart_server()
    alice.go_to_folder("")
    alice.wait_for_item(UPLOADED)
    alice.wait_for_item(WRITTEN)
    alice.new_notebook_from_launcher("")
    output = alice.type_and_run_cell(AFTER_RESTART, "after restart:")
    assert "after restart: 3 12" in output, output
    alice.close_all_tabs()


def test_an_earlier_version_is_restored_from_jupyterlabs_checkpoint_ui(tier, people):
    bob = people(1)
    bob.new_notebook_from_launcher("")
    bob.type_and_run_cell('print("version one")', "version one")
    bob.save_with_name("versions.ipynb")  # a save and a checkpoint: a version of the central copy
    bob.set_cell_and_save('print("version two")')
    first_cell = bob.current_panel().locator(".jp-Cell").first.locator(".cm-content")
    assert "version two" in first_cell.inner_text()
    # The picker lists the central copy's S3 versions newest first, by date only: which entry is
    # "version one" is read from the bucket (a save can be one version or, when JupyterLab's save
    # and its checkpoint request both write, two: a fixed index failed once in a quiet run).
    listed = tier.versions(f"users/{bob.username}/versions.ipynb")
    versions = [[c["source"] for c in json.loads(body)["cells"]] for _vid, body in listed]
    index = next((i for i, cells in enumerate(versions) if 'print("version one")' in cells[0]), None)
    assert index is not None and index > 0, versions
    bob.revert_to_checkpoint(index, expect_options=len(versions))
    # the notebook reloads after the restore's answer (a read right after it raced the reload and
    # saw "version two" while the bucket already held the restored version)
    first_cell = bob.current_panel().locator(".jp-Cell").first.locator(".cm-content")
    expect(first_cell).to_contain_text("version one", timeout=30_000)
    bob.wait_notebook_ready("versions.ipynb", has_content=True)
    text = first_cell.inner_text()
    bob.shot("after-revert")
    after = [
        [c["source"] for c in json.loads(body)["cells"]] for _vid, body in tier.versions(f"users/{bob.username}/versions.ipynb")
    ]
    assert "version one" in text and "version two" not in text, (text, index, after)
    assert 'print("version one")' in after[0][0], after  # the restore is itself the newest version
    assert "versions.ipynb" in tier.notebook_keys(f"users/{bob.username}")
