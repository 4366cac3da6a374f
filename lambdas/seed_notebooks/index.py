"""Custom::SeedNotebooks: lay out each tier's folders in the notebook bucket and copy the
example notebooks into them.

Properties
  NotebookBucket   the notebook bucket
  Tiers            [{"Name": "pii", "NotebookPrefix": "tiers/pii", "DataBucket": "...",
                     "DataPrefixes": ["pii/"]}, ...]
  ExamplesVersion  changes when the examples change (only there to trigger an Update)

For each tier it writes the folder markers `<NotebookPrefix>/shared/` and `<NotebookPrefix>/users/`
(plus s3contents' `.s3keep` in shared/, users/, shared/examples/ and its sub-folders: without it
JupyterLab does not list a folder) and copies every file under `notebooks/` (shipped in the function's zip; the folder
hub_images/notebooks) to `<NotebookPrefix>/shared/examples/<file>`, with `{{DATA_BUCKET}}`,
`{{DATA_PREFIX}}` (the tier's first data prefix), `{{DATA_PREFIXES}}` (comma separated) and
`{{TIER_NAME}}` filled in.

A user's work is never overwritten. Every example is written with the SHA-256 of what was written
in its metadata (`lakehub-seed-sha256`). An existing object is replaced only when its current
content still hashes to that value (nobody changed it since it was seeded) and the new example
differs; an object without the metadata, or whose content no longer matches it, is a user's and is
left alone. This does not depend on ETags (which are not MD5s under SSE-KMS).

Delete leaves everything in place (notebooks are users' data) and succeeds.
PhysicalResourceId: `seed-<bucket>-<hash of the tiers' notebook prefixes>`.
Data: SeededKeys (objects written by this request), SkippedKeys (objects kept as they were),
UserModifiedKeys (examples left alone because a user changed them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from botocore.exceptions import ClientError
from lakehub_cr import Failure, clients, error_code, new_helper, nothing_to_delete, properties, serve

logger = logging.getLogger(__name__)

helper = new_helper()

SEED_HASH_KEY = "lakehub-seed-sha256"
EXAMPLES_VERSION_KEY = "lakehub-examples-version"
FOLDERS = ("shared/", "users/")
DIR_KEEP_FILE = ".s3keep"  # s3contents' folder marker
EXAMPLES_FOLDER = "shared/examples/"
TEXT_SUFFIXES = {".ipynb", ".py", ".r", ".R", ".md", ".txt", ".json", ".csv", ".sql", ".yaml", ".yml"}
PLACEHOLDER = re.compile(r"\{\{(DATA_BUCKET|DATA_PREFIX|DATA_PREFIXES|TIER_NAME)\}\}")
# The function's ServiceToken is a platform export any tier stack may call: it trusts no property.
# A tier's folder is exactly tiers/<Name> (lakehub.stacks.names.NOTEBOOK_TIERS_ROOT; a test checks), and
# every value has the shape the templates allow (their AllowedPatterns).
TIERS_ROOT = "tiers"
TIER_NAME = re.compile(r"^[a-z][a-z0-9]{0,15}$")  # the tier template's TierName (lakehub.stacks.parameters)
BUCKET_NAME = re.compile(r"^[0-9a-z][0-9a-z.-]{1,61}[0-9a-z]$")
DATA_PREFIX = re.compile(r"^([0-9a-zA-Z!_.'()-]+/)+$")
# What a value put into an example may contain: examples place values inside code strings
# ('s3://{{DATA_BUCKET}}/{{DATA_PREFIX}}'), where a quote would end the string.
SAFE_VALUE = re.compile(r"^[0-9a-zA-Z!_.()/,-]*$")


def _notebooks_dir() -> Path:
    """The example notebooks: `notebooks/` beside this file in the zip; LAKEHUB_NOTEBOOKS_DIR
    overrides it (tests, the local runner); from a source checkout, hub_images/notebooks."""
    override = os.environ.get("LAKEHUB_NOTEBOOKS_DIR")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent
    packaged = here / "notebooks"
    if packaged.is_dir():
        return packaged
    return here.parents[1] / "hub_images" / "notebooks"


(s3,) = clients(helper, "s3")


def _tiers(props: dict) -> tuple[str, list[dict]]:
    bucket = props.get("NotebookBucket")
    if not isinstance(bucket, str) or not bucket.strip():
        raise Failure("Invalid property NotebookBucket: a bucket name is required")
    tiers = props.get("Tiers")
    if not isinstance(tiers, list) or not tiers:
        raise Failure("Invalid property Tiers: a non-empty list of tiers is required")
    result = []
    seen = set()
    for i, tier in enumerate(tiers):
        if not isinstance(tier, dict):
            raise Failure(f"Invalid property Tiers[{i}]: expected an object, got {type(tier).__name__}")
        name = tier.get("Name")
        prefix = tier.get("NotebookPrefix")
        data_bucket = tier.get("DataBucket")
        data_prefixes = tier.get("DataPrefixes")
        if not isinstance(name, str) or not name:
            raise Failure(f"Invalid property Tiers[{i}].Name: a tier name is required")
        if not TIER_NAME.match(name):
            raise Failure(f"Invalid property Tiers[{i}].Name {name!r}: 1-16 lower-case letters or digits, starting with a letter")
        if not isinstance(prefix, str) or not prefix.strip("/"):
            raise Failure(f"Invalid property Tiers[{i}].NotebookPrefix of tier {name}: a prefix is required")
        own = f"{TIERS_ROOT}/{name}"
        if prefix not in (own, own + "/"):
            raise Failure(
                f"Invalid property Tiers[{i}].NotebookPrefix {prefix!r} of tier {name}: it must be the tier's own folder {own}"
            )
        if not isinstance(data_bucket, str) or not data_bucket:
            raise Failure(f"Invalid property Tiers[{i}].DataBucket of tier {name}: a bucket name is required")
        if not BUCKET_NAME.match(data_bucket):
            raise Failure(f"Invalid property Tiers[{i}].DataBucket {data_bucket!r} of tier {name}: not an S3 bucket name")
        if isinstance(data_prefixes, str):  # a comma-separated string, as from a String parameter
            data_prefixes = [p.strip() for p in data_prefixes.split(",") if p.strip()]
        if not isinstance(data_prefixes, list) or not all(isinstance(p, str) for p in data_prefixes):
            raise Failure(f"Invalid property Tiers[{i}].DataPrefixes of tier {name}: a list of prefixes is required")
        bad = [p for p in data_prefixes if not DATA_PREFIX.match(p)]
        if bad:
            raise Failure(
                f"Invalid property Tiers[{i}].DataPrefixes of tier {name}: {bad[0]!r} is not a key prefix ending in '/'"
            )
        prefix = own + "/"
        if prefix in seen:
            raise Failure(f"Invalid property Tiers: NotebookPrefix {prefix} is used by two tiers")
        seen.add(prefix)
        result.append({"Name": name, "Prefix": prefix, "DataBucket": data_bucket, "DataPrefixes": data_prefixes})
    return bucket.strip(), result


def _examples() -> list[tuple[str, bytes]]:
    """(relative path, content) of every example file, sorted."""
    base = _notebooks_dir()
    if not base.is_dir():
        return []
    files = []
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base)
        if path.is_file() and "__pycache__" not in rel.parts and not any(p.startswith(".") for p in rel.parts):
            files.append((rel.as_posix(), path.read_bytes()))
    return files


def _values(tier: dict) -> dict[str, str]:
    return {
        "DATA_BUCKET": tier["DataBucket"],
        "DATA_PREFIX": tier["DataPrefixes"][0] if tier["DataPrefixes"] else "",
        "DATA_PREFIXES": ",".join(tier["DataPrefixes"]),
        "TIER_NAME": tier["Name"],
    }


def _check_values(tier: dict, examples: list[tuple[str, bytes]]) -> None:
    """Refuse, before anything is written, a value an example would receive that could end the
    code string it is put in (a quote: the data-prefix pattern allows ')."""
    used = set()
    for relpath, raw in examples:
        if Path(relpath).suffix in TEXT_SUFFIXES:
            used.update(PLACEHOLDER.findall(raw.decode("utf-8", errors="replace")))
    field = {"DATA_BUCKET": "DataBucket", "DATA_PREFIX": "DataPrefixes", "DATA_PREFIXES": "DataPrefixes", "TIER_NAME": "Name"}
    for key, value in sorted(_values(tier).items()):
        if key in used and not SAFE_VALUE.match(value):
            raise Failure(
                f"Invalid property {field[key]} of tier {tier['Name']}: {value!r} has a character the example notebooks "
                "cannot hold in a code string (quotes); rename the prefix or drop {{" + key + "}} from the examples"
            )


def _substitute(text: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def _fill_strings(node, values: dict[str, str]):
    """The notebook with placeholders filled in its string values only (never in keys)."""
    if isinstance(node, str):
        return _substitute(node, values)
    if isinstance(node, list):
        return [_fill_strings(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _fill_strings(item, values) for key, item in node.items()}
    return node


def _render(relpath: str, content: bytes, tier: dict) -> bytes:
    if Path(relpath).suffix not in TEXT_SUFFIXES:
        return content
    text = content.decode("utf-8")
    if not PLACEHOLDER.search(text):
        return content
    values = _values(tier)
    if relpath.endswith(".ipynb"):
        # Parsed and written back (nbformat's layout): a value can never change the JSON around it.
        notebook = _fill_strings(json.loads(text), values)
        return (json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    return _substitute(text, values).encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _get(bucket: str, key: str) -> tuple[bytes, dict] | None:
    """(content, metadata) of an object, or None when it does not exist."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return obj["Body"].read(), obj.get("Metadata", {})


def _content_type(key: str) -> str:
    if key.endswith("/"):
        return "application/x-directory"
    if key.endswith(".ipynb"):
        return "application/x-ipynb+json"
    return "text/plain; charset=utf-8" if Path(key).suffix in TEXT_SUFFIXES else "application/octet-stream"


def _put(bucket: str, key: str, body: bytes, version: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType=_content_type(key),
        Metadata={SEED_HASH_KEY: _sha256(body), EXAMPLES_VERSION_KEY: version},
    )


def _check_bucket(bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise Failure(f"Notebook bucket {bucket} does not exist") from exc
        if code in ("403", "AccessDenied"):
            raise Failure(f"Access denied to notebook bucket {bucket}: the function's role needs s3:ListBucket") from exc
        raise


def _markers(examples: list[tuple[str, bytes]]) -> list[str]:
    """Folder markers, relative to a tier's prefix: the `shared/` and `users/` keys (what the S3
    console shows as folders) and s3contents' `.s3keep` in every folder it should list (it shows
    a folder only when that file is in it)."""
    folders = {*FOLDERS, EXAMPLES_FOLDER}
    for relpath, _ in examples:
        parent = Path(relpath).parent
        while parent != Path("."):
            folders.add(f"{EXAMPLES_FOLDER}{parent.as_posix()}/")
            parent = parent.parent
    return sorted({*FOLDERS, *(folder + DIR_KEEP_FILE for folder in folders)})


def seed(event) -> str:
    """Write what is missing; returns the physical id. Never overwrites a user's change."""
    props = properties(event)
    bucket, tiers = _tiers(props)
    version = str(props.get("ExamplesVersion", ""))[:200]
    _check_bucket(bucket)
    examples = _examples()
    for tier in tiers:
        _check_values(tier, examples)
    written, skipped, user_modified = 0, 0, 0
    for tier in tiers:
        for marker in _markers(examples):
            key = tier["Prefix"] + marker
            if _get(bucket, key) is None:
                _put(bucket, key, b"", version)
                written += 1
            else:
                skipped += 1
        for relpath, raw in examples:
            key = tier["Prefix"] + EXAMPLES_FOLDER + relpath
            body = _render(relpath, raw, tier)
            current = _get(bucket, key)
            if current is None:
                _put(bucket, key, body, version)
                written += 1
                continue
            content, metadata = current
            if content == body:
                skipped += 1
            elif metadata.get(SEED_HASH_KEY) == _sha256(content):
                # Still exactly what we seeded: the example itself changed, update it.
                _put(bucket, key, body, version)
                written += 1
            else:
                logger.info("keeping %s: changed since it was seeded", key)
                user_modified += 1
    helper.Data.update(
        {
            "SeededKeys": written,
            "SkippedKeys": skipped,
            "UserModifiedKeys": user_modified,
            "NotebookBucket": bucket,
        }
    )
    logger.info("seeded s3://%s: %d written, %d kept, %d user-modified", bucket, written, skipped, user_modified)
    # Stable while the bucket and the tiers' prefixes stay the same; other stacks seeding other
    # tiers of the same bucket get other ids.
    prefixes = hashlib.sha256("\n".join(sorted(t["Prefix"] for t in tiers)).encode()).hexdigest()[:12]
    return f"seed-{bucket}-{prefixes}"


# Delete: notebooks are users' data; nothing to undo, so nothing can be "already gone".
handler = serve(helper, create=seed, update=seed, delete=nothing_to_delete("notebooks are users' data"))
