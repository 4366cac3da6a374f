"""The function as shipped: unpack the built zip and run it, with the notebooks it carries."""

from __future__ import annotations

import json
import sys
import zipfile

from function_loader import load_function

from lakehub.release import packaging

FUNCTION = "lakehub-seed-notebooks"


def test_the_seed_zip_seeds_the_notebooks_it_carries(tmp_path, monkeypatch, client, make_event, invoke):
    monkeypatch.delenv("LAKEHUB_NOTEBOOKS_DIR", raising=False)
    zip_path = packaging.build_function("seed_notebooks", out_dir=tmp_path / "functions")
    code = tmp_path / "code"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(code)
        examples = sorted(n[len("notebooks/") :] for n in zf.namelist() if n.startswith("notebooks/"))
    for mod in [m for m in sys.modules if m == "crhelper" or m.startswith("crhelper.")]:
        monkeypatch.delitem(sys.modules, mod)
    module = load_function("seed_notebooks", monkeypatch, code=code)  # crhelper and lakehub_cr from the zip, as in Lambda
    assert str(code) in sys.modules["crhelper"].__file__
    assert str(code) in sys.modules["lakehub_cr"].__file__

    s3 = client("s3")
    s3.create_bucket(Bucket="packaged-notebooks")
    props = {
        "NotebookBucket": "packaged-notebooks",
        "Tiers": [{"Name": "pii", "NotebookPrefix": "tiers/pii", "DataBucket": "lake-data", "DataPrefixes": ["pii/"]}],
        "ExamplesVersion": "zip",
    }
    answer = invoke(module, make_event("Create", "Custom::SeedNotebooks", props, function=FUNCTION), function=FUNCTION)

    assert answer["Status"] == "SUCCESS", answer
    assert answer["Data"]["SeededKeys"] == len(module._markers([(e, b"") for e in examples])) + len(examples)
    for rel in examples:
        body = s3.get_object(Bucket="packaged-notebooks", Key=f"tiers/pii/shared/examples/{rel}")["Body"].read().decode()
        assert "{{DATA_BUCKET}}" not in body and "{{DATA_PREFIX}}" not in body, rel
        if rel.endswith(".ipynb"):
            json.loads(body)  # placeholders filled in without breaking the notebook


def test_the_secret_arn_zip_looks_up_the_full_arn(tmp_path, monkeypatch, client, make_event, invoke):
    zip_path = packaging.build_function("secret_arn", out_dir=tmp_path / "functions")
    code = tmp_path / "code"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(code)
        assert {"index.py", "lakehub_cr/__init__.py", "crhelper/__init__.py"} <= set(zf.namelist())
    for mod in [m for m in sys.modules if m == "crhelper" or m.startswith("crhelper.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setenv("LAKEHUB_PLATFORM_NAME", "lakehub")
    module = load_function("secret_arn", monkeypatch, code=code)
    assert str(code) in sys.modules["crhelper"].__file__

    arn = client("secretsmanager").create_secret(Name="lakehub/pii/ldap_bind_password", SecretString="bind-password-for-tests")[
        "ARN"
    ]
    event = make_event(
        "Create", "Custom::SecretArn", {"SecretName": "lakehub/pii/ldap_bind_password"}, function="lakehub-secret-arn"
    )
    answer = invoke(module, event, function="lakehub-secret-arn")
    assert answer["Status"] == "SUCCESS", answer
    assert answer["Data"]["Arn"] == arn and arn.rsplit("-", 1)[1].isalnum() and len(arn.rsplit("-", 1)[1]) == 6
