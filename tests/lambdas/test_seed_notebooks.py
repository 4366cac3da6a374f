"""Custom::SeedNotebooks driven with CloudFormation events against the emulator."""

from __future__ import annotations

import hashlib
import json

import pytest

FUNCTION = "lakehub-seed-notebooks"
TYPE = "Custom::SeedNotebooks"
BUCKET = "lakehub-notebooks-test"
# Per tier: shared/, users/, and s3contents' .s3keep in shared/, users/, shared/examples/ and
# shared/examples/r/ (the examples below have one sub-folder).
MARKERS = 6

PY_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {},
            "source": [
                "import pandas as pd\n",
                "df = pd.read_csv('s3://{{DATA_BUCKET}}/{{DATA_PREFIX}}sample.csv')\n",
            ],
            "outputs": [],
            "execution_count": None,
        }
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}
R_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {},
            "source": ["library(dplyr)\n", "path <- 's3://{{DATA_BUCKET}}/{{DATA_PREFIX}}'  # tier {{TIER_NAME}}\n"],
            "outputs": [],
            "execution_count": None,
        }
    ],
    "metadata": {"kernelspec": {"name": "ir", "display_name": "R", "language": "R"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def tiers():
    return [
        {"Name": "pii", "NotebookPrefix": "tiers/pii", "DataBucket": "lake-data", "DataPrefixes": ["pii/"]},
        {"Name": "nonpii", "NotebookPrefix": "tiers/nonpii", "DataBucket": "lake-data", "DataPrefixes": ["nonpii/", "public/"]},
    ]


@pytest.fixture
def examples(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    (folder / "r").mkdir(parents=True)
    (folder / "pandas-example.ipynb").write_text(json.dumps(PY_NOTEBOOK, indent=1))
    (folder / "r" / "dplyr-example.ipynb").write_text(json.dumps(R_NOTEBOOK, indent=1))
    monkeypatch.setenv("LAKEHUB_NOTEBOOKS_DIR", str(folder))
    return folder


@pytest.fixture
def s3(client):
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return s3


@pytest.fixture
def seed(load_handler, make_event, invoke, examples, s3):
    module = load_handler("seed_notebooks")

    def run(request_type, props=None, **kwargs):
        props = props if props is not None else {"NotebookBucket": BUCKET, "Tiers": tiers(), "ExamplesVersion": "v1"}
        event = make_event(request_type, TYPE, props, function=FUNCTION, **kwargs)
        return invoke(module, event, function=FUNCTION)

    run.module = module
    return run


def physical_id(tier_list=None, bucket=BUCKET) -> str:
    prefixes = sorted(t["NotebookPrefix"].strip("/") + "/" for t in (tier_list or tiers()))
    return f"seed-{bucket}-" + hashlib.sha256("\n".join(prefixes).encode()).hexdigest()[:12]


def versions(s3) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in s3.list_object_versions(Bucket=BUCKET).get("Versions", []):
        out.setdefault(v["Key"], []).append(v["VersionId"])
    return out


def read(s3, key) -> str:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def test_create_lays_out_each_tier_and_fills_in_its_data_location(seed, s3):
    answer = seed("Create")
    assert answer["Status"] == "SUCCESS", answer
    assert answer["PhysicalResourceId"] == physical_id()
    assert answer["Data"]["SeededKeys"] == 2 * (MARKERS + 2)
    keys = set(versions(s3))
    for tier in ("pii", "nonpii"):
        assert f"tiers/{tier}/shared/" in keys
        assert f"tiers/{tier}/users/" in keys
    pii = read(s3, "tiers/pii/shared/examples/pandas-example.ipynb")
    assert "s3://lake-data/pii/sample.csv" in pii and "{{" not in pii
    json.loads(pii)  # still a notebook
    nonpii_r = read(s3, "tiers/nonpii/shared/examples/r/dplyr-example.ipynb")
    assert "s3://lake-data/nonpii/" in nonpii_r and "tier nonpii" in nonpii_r
    assert "pii/" not in nonpii_r.replace("nonpii/", "")


def test_create_twice_changes_nothing(seed, s3):
    assert seed("Create")["Status"] == "SUCCESS"
    before = versions(s3)
    again = seed("Create")
    assert again["Status"] == "SUCCESS"
    assert again["Data"]["SeededKeys"] == 0
    assert again["PhysicalResourceId"] == physical_id()
    assert versions(s3) == before  # not one new object version


def test_update_with_same_properties_changes_nothing(seed, s3):
    props = {"NotebookBucket": BUCKET, "Tiers": tiers(), "ExamplesVersion": "v1"}
    seed("Create", props)
    before = versions(s3)
    answer = seed("Update", props, old_properties=props, physical_id=physical_id())
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == physical_id()
    assert answer["Data"]["SeededKeys"] == 0
    assert versions(s3) == before


def test_update_keeps_a_notebook_a_user_edited_and_refreshes_the_others(seed, s3, examples):
    old = {"NotebookBucket": BUCKET, "Tiers": tiers(), "ExamplesVersion": "v1"}
    seed("Create", old)
    edited_key = "tiers/pii/shared/examples/pandas-example.ipynb"
    s3.put_object(Bucket=BUCKET, Key=edited_key, Body=b'{"cells": [], "note": "my analysis"}')
    s3.delete_object(Bucket=BUCKET, Key="tiers/nonpii/shared/examples/r/dplyr-example.ipynb")
    # A new release of the examples.
    changed = dict(PY_NOTEBOOK, metadata={**PY_NOTEBOOK["metadata"], "lakehub": "v2"})
    (examples / "pandas-example.ipynb").write_text(json.dumps(changed, indent=1))
    new = dict(old, ExamplesVersion="v2")

    answer = seed("Update", new, old_properties=old, physical_id=physical_id())

    assert answer["Status"] == "SUCCESS", answer
    assert answer["Data"]["UserModifiedKeys"] == 1
    assert "my analysis" in read(s3, edited_key)  # the user's work survives
    assert '"lakehub": "v2"' in read(s3, "tiers/nonpii/shared/examples/pandas-example.ipynb")  # untouched copy refreshed
    assert "s3://lake-data/nonpii/" in read(s3, "tiers/nonpii/shared/examples/r/dplyr-example.ipynb")  # re-added
    # Refreshed pandas in nonpii + re-added R in nonpii + refreshed... pandas in pii is the user's.
    assert answer["Data"]["SeededKeys"] == 2


def test_update_adds_a_new_tier(seed, s3):
    old = {"NotebookBucket": BUCKET, "Tiers": tiers()[:1], "ExamplesVersion": "v1"}
    seed("Create", old)
    new = dict(old, Tiers=tiers())
    answer = seed("Update", new, old_properties=old, physical_id=physical_id())
    assert answer["Status"] == "SUCCESS"
    assert answer["Data"]["SeededKeys"] == MARKERS + 2
    assert "tiers/nonpii/users/" in versions(s3)
    # Another set of tiers is another resource (the old one's Delete leaves everything).
    assert answer["PhysicalResourceId"] == physical_id(tiers()) != physical_id(tiers()[:1])


@pytest.mark.parametrize(
    "props, cause",
    [
        ({"Tiers": tiers()}, "NotebookBucket"),
        ({"NotebookBucket": BUCKET}, "Tiers"),
        ({"NotebookBucket": BUCKET, "Tiers": "pii"}, "Tiers"),
        ({"NotebookBucket": BUCKET, "Tiers": [{"Name": "pii"}]}, "Tiers[0].NotebookPrefix"),
        ({"NotebookBucket": BUCKET, "Tiers": [dict(tiers()[0], DataBucket="")]}, "Tiers[0].DataBucket"),
        ({"NotebookBucket": BUCKET, "Tiers": [dict(tiers()[0], DataPrefixes=[1])]}, "DataPrefixes"),
        ({"NotebookBucket": BUCKET, "Tiers": [tiers()[0], tiers()[0]]}, "used by two tiers"),
    ],
)
def test_missing_or_invalid_properties_fail_create_with_the_cause(seed, failed, props, cause):
    failed(seed("Create", props), "Invalid property", cause)


def test_a_tier_name_is_what_the_tier_template_allows(seed, failed):
    """One letter is a tier name (lakehub.settings and the tier template's TierName accept it);
    a hyphen is not."""
    one = {"Name": "a", "NotebookPrefix": "tiers/a", "DataBucket": "lake-data", "DataPrefixes": ["a/"]}
    answer = seed("Create", {"NotebookBucket": BUCKET, "Tiers": [one]})
    assert answer["Status"] == "SUCCESS", answer
    hyphen = dict(one, Name="p-ii", NotebookPrefix="tiers/p-ii")
    failed(seed("Create", {"NotebookBucket": BUCKET, "Tiers": [hyphen]}), "Invalid property", "Tiers[0].Name")


def test_create_fails_when_the_bucket_does_not_exist(seed, failed):
    answer = seed("Create", {"NotebookBucket": "no-such-bucket-here", "Tiers": tiers()})
    failed(answer, "no-such-bucket-here", "does not exist")


def test_update_fails_with_the_cause_when_the_bucket_is_gone(seed, failed):
    props = {"NotebookBucket": "gone-bucket-xyz", "Tiers": tiers()}
    answer = seed("Update", props, old_properties=props, physical_id="seed-gone-bucket-xyz")
    failed(answer, "gone-bucket-xyz", "does not exist")
    assert answer["PhysicalResourceId"] == "seed-gone-bucket-xyz"  # CloudFormation keeps the old one


def test_delete_leaves_the_notebooks_and_succeeds(seed, s3):
    seed("Create")
    before = versions(s3)
    answer = seed("Delete", physical_id=physical_id())
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == physical_id()
    assert versions(s3) == before


def test_delete_succeeds_when_the_bucket_is_already_gone(seed):
    props = {"NotebookBucket": "bucket-that-was-deleted", "Tiers": tiers()}
    answer = seed("Delete", props, physical_id="seed-bucket-that-was-deleted")
    assert answer["Status"] == "SUCCESS"


def test_delete_after_a_failed_create_succeeds(seed):
    failed_create = seed("Create", {"NotebookBucket": BUCKET})
    assert failed_create["Status"] == "FAILED"
    generated = failed_create["PhysicalResourceId"]  # crhelper made one up
    assert generated.startswith("lakehub-test_TestResource_")
    answer = seed("Delete", {"NotebookBucket": BUCKET}, physical_id=generated)
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == generated


def test_seeds_only_folders_when_there_are_no_examples(seed, s3, examples, tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHUB_NOTEBOOKS_DIR", str(tmp_path / "empty"))
    answer = seed("Create")
    assert answer["Status"] == "SUCCESS"
    # shared/, users/ and .s3keep in shared/, users/, shared/examples/, for two tiers
    assert answer["Data"]["SeededKeys"] == 2 * 5


@pytest.mark.filterwarnings("ignore:Passing unrecognized arguments:DeprecationWarning")  # s3contents' own
def test_jupyterlab_lists_the_seeded_folders_and_examples(seed, s3, emulator):
    s3contents = pytest.importorskip("s3contents")
    assert seed("Create")["Status"] == "SUCCESS"

    def listing(prefix, path=""):
        manager = s3contents.S3ContentsManager(
            bucket=BUCKET, prefix=prefix, endpoint_url=emulator, access_key_id="x", secret_access_key="y"
        )
        return sorted((m["name"], m["type"]) for m in manager.get(path, content=True)["content"])

    assert listing("tiers/pii/shared") == [("examples", "directory")]
    assert listing("tiers/pii/shared", "examples") == [("pandas-example.ipynb", "notebook"), ("r", "directory")]
    assert listing("tiers/pii/shared", "examples/r") == [("dplyr-example.ipynb", "notebook")]


def test_data_prefixes_may_come_as_a_comma_separated_string(seed, s3):
    tier = dict(tiers()[1], DataPrefixes="nonpii/, public/")
    answer = seed("Create", {"NotebookBucket": BUCKET, "Tiers": [tier]})
    assert answer["Status"] == "SUCCESS"
    assert "s3://lake-data/nonpii/sample.csv" in read(s3, "tiers/nonpii/shared/examples/pandas-example.ipynb")


# Issue 14 (low): the function is a ServiceToken any tier stack may call; it must not write outside
# the tier's own folder, nor let a value break out of the notebook JSON or a code string.
@pytest.mark.parametrize(
    "prefix",
    ["tiers/pii/users/alice", "tiers/nonpii", "tiers/../tiers/pii/users/alice", "other/pii", "tiers//pii", "/tiers/pii/"],
)
def test_a_notebook_prefix_other_than_the_tiers_own_folder_is_refused_and_nothing_is_written(seed, failed, s3, prefix):
    answer = seed("Create", {"NotebookBucket": BUCKET, "Tiers": [dict(tiers()[0], NotebookPrefix=prefix)]})
    failed(answer, "Invalid property", "NotebookPrefix", "tiers/pii")
    assert versions(s3) == {}


@pytest.mark.parametrize(
    "field, value",
    [
        ("DataPrefixes", ["pii/'); import os; os.system('id'); ('"]),
        ("DataPrefixes", ['pii/", "x": "']),
        ("DataPrefixes", ["pii\\/"]),
        # The templates' prefix pattern allows a quote: enough to leave the example's code string.
        ("DataPrefixes", ["pii'or(exec(bytes.fromhex('7072696e74283129').decode()))or'/"]),
        ("DataBucket", "lake-data'\n"),
        ("Name", 'pii"'),
    ],
)
def test_a_value_that_could_escape_the_notebook_or_its_code_is_refused_and_nothing_is_written(seed, failed, s3, field, value):
    tier = dict(tiers()[0], **{field: value})
    answer = seed("Create", {"NotebookBucket": BUCKET, "Tiers": [tier]})
    failed(answer, "Invalid property", field)
    assert versions(s3) == {}


def test_rendered_notebooks_substitute_inside_json_strings_only(seed, s3, examples):
    """A placeholder outside a string (in a key or a number position) is left alone: values are
    put only into the notebook's strings, JSON-escaped, so the result is always a notebook."""
    nb = dict(PY_NOTEBOOK, metadata={**PY_NOTEBOOK["metadata"], "{{TIER_NAME}}": "key"})
    (examples / "pandas-example.ipynb").write_text(json.dumps(nb, indent=1))
    assert seed("Create")["Status"] == "SUCCESS"
    out = json.loads(read(s3, "tiers/pii/shared/examples/pandas-example.ipynb"))
    assert "{{TIER_NAME}}" in out["metadata"]  # keys are not rewritten
    assert out["cells"][0]["source"][1] == "df = pd.read_csv('s3://lake-data/pii/sample.csv')\n"


def test_the_functions_tier_folder_is_the_platforms(seed):
    from lakehub.stacks import names

    assert seed.module.TIERS_ROOT == names.NOTEBOOK_TIERS_ROOT
