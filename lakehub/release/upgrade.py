"""`lakehub deploy --upgrade-products` and `--preview`: after main, the stacks teams launched.

Every tier and on-demand hub a team launched from the platform's Service Catalog products is a
provisioned product pinned to the provisioning artifact (`<version>-<digest>`, lakehub.stacks.catalog)
it was launched or last updated with. A new release of the platform adds a new artifact to each
product; the provisioned products keep running the old one until someone updates them. Here:

1. the platform's products: the `<Key>ProductId` outputs of the main stack's catalog stack;
2. the provisioned products of those products (SearchProvisionedProducts, this account);
3. each product's newest active artifact (ListProvisioningArtifacts: latest CreatedTime, not
   DEPRECATED);
4. each provisioned product on an older artifact: UpdateProvisionedProduct to the newest, its
   parameters kept (UsePreviousValue for every key both artifacts declare; a key new in the
   newer artifact takes its default), all started at once, then DescribeRecord until each ends
   (bounded by the timeout);
5. a report: which provisioned product ran which version before and after, one line per failure
   (a failed update does not stop the others; Service Catalog rolls the failed stack back).

`plan_upgrades()` does 1-3 and changes nothing (`--preview`).
moto models none of SearchProvisionedProducts, ListProvisioningArtifacts, UpdateProvisionedProduct,
DescribeRecord or DescribeProvisioningParameters (docs/AWS_NOTES.md): tests/test_deploy.py drives
this module with botocore's Stubber, answers shaped as the Service Catalog API reference gives them.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

CATALOG_STACK = "CatalogStack"  # lakehub.stacks.main: the nested catalog stack's logical ID
PRODUCT_ID_SUFFIX = "ProductId"  # lakehub.stacks.catalog: outputs <Key>ProductId
POLL_SECONDS = 5.0
DONE = {"SUCCEEDED"}
FAILED = {"FAILED", "IN_PROGRESS_IN_ERROR"}


@dataclass
class ProductUpgrade:
    """One provisioned product: what it ran, what it runs, what happened."""

    name: str
    provisioned_product_id: str
    product_id: str
    before: str  # artifact name (<version>-<digest>)
    after: str
    status: str  # current, upgraded, would upgrade, failed, skipped
    detail: str = ""
    record_id: str = ""
    artifact_id: str = ""  # the newest artifact's id (the target)

    def row(self) -> dict:
        out = asdict(self)
        out.pop("artifact_id")
        return out


def platform_product_ids(cfn, stack_name: str) -> dict[str, str]:
    """{output key prefix: product id} of the main stack's catalog stack ({} without one)."""
    try:
        resource = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId=CATALOG_STACK)["StackResourceDetail"]
    except ClientError as exc:
        if "does not exist" in str(exc) or exc.response.get("Error", {}).get("Code") == "ValidationError":
            return {}
        raise
    child = resource.get("PhysicalResourceId") or ""
    if not child:
        return {}
    outputs = cfn.describe_stacks(StackName=child)["Stacks"][0].get("Outputs") or []
    return {
        o["OutputKey"][: -len(PRODUCT_ID_SUFFIX)]: o["OutputValue"]
        for o in outputs
        if o["OutputKey"].endswith(PRODUCT_ID_SUFFIX) and o.get("OutputValue")
    }


def _provisioned(sc, product_ids: set[str]) -> list[dict]:
    found, token = [], None
    for _ in range(100):  # at most 100 pages of 100
        kwargs = {"AccessLevelFilter": {"Key": "Account", "Value": "self"}, "PageSize": 100}
        if token:
            kwargs["PageToken"] = token
        page = sc.search_provisioned_products(**kwargs)
        found += [p for p in page.get("ProvisionedProducts", []) if p.get("ProductId") in product_ids]
        token = page.get("NextPageToken")
        if not token:
            break
    return sorted(found, key=lambda p: (p.get("Name") or "", p.get("Id") or ""))


def _artifacts(sc, product_id: str) -> tuple[dict | None, dict[str, str]]:
    """(the newest active, not deprecated artifact, {artifact id: name}) of a product."""
    details = sc.list_provisioning_artifacts(ProductId=product_id).get("ProvisioningArtifactDetails", [])
    usable = [d for d in details if d.get("Active", True) and d.get("Guidance") != "DEPRECATED"]
    newest = max(usable, key=lambda d: d.get("CreatedTime") or 0, default=None)
    return newest, {d["Id"]: d.get("Name") or d["Id"] for d in details}


def plan_upgrades(cfn, sc, stack_name: str) -> list[ProductUpgrade]:
    """The platform's provisioned products and the newest artifact of each; changes nothing."""
    products = platform_product_ids(cfn, stack_name)
    if not products:
        return []
    plan: list[ProductUpgrade] = []
    newest: dict[str, dict | None] = {}
    names: dict[str, dict[str, str]] = {}
    for pp in _provisioned(sc, set(products.values())):
        pid = pp["ProductId"]
        if pid not in newest:
            newest[pid], names[pid] = _artifacts(sc, pid)
        target = newest[pid]
        current = pp.get("ProvisioningArtifactId") or ""
        before = names[pid].get(current, current)
        row = ProductUpgrade(pp.get("Name") or pp["Id"], pp["Id"], pid, before, before, "current")
        if target is None:
            row.status, row.detail = "skipped", "the product has no active artifact"
        elif pp.get("Status") not in ("AVAILABLE", "TAINTED"):
            row.status, row.detail = "skipped", f"it is {pp.get('Status')}: update it once it is AVAILABLE"
        elif target["Id"] != current:
            row.after, row.status, row.artifact_id = target.get("Name") or target["Id"], "would upgrade", target["Id"]
        plan.append(row)
    return plan


def _kept_parameters(sc, product_id: str, old: str, new: str) -> list[dict]:
    """UsePreviousValue for every parameter both artifacts declare."""

    def keys(artifact: str) -> set[str]:
        answer = sc.describe_provisioning_parameters(ProductId=product_id, ProvisioningArtifactId=artifact)
        return {p["ParameterKey"] for p in answer.get("ProvisioningArtifactParameters", [])}

    return [{"Key": k, "UsePreviousValue": True} for k in sorted(keys(old) & keys(new))]


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def upgrade_products(
    cfn,
    sc,
    stack_name: str,
    timeout: float = 3600.0,
    progress: Callable[[str], None] | None = None,
    sleep=time.sleep,
    clock=time.monotonic,
) -> list[ProductUpgrade]:
    """Update every provisioned product of the platform to its product's newest artifact."""
    say = progress or (lambda _line: None)
    plan = plan_upgrades(cfn, sc, stack_name)
    pending: list[ProductUpgrade] = []
    by_id = {}
    for row in plan:
        if row.status != "would upgrade":
            continue
        try:
            pp = sc.describe_provisioned_product(Id=row.provisioned_product_id)["ProvisionedProductDetail"]
            current = pp.get("ProvisioningArtifactId") or ""
            params = _kept_parameters(sc, row.product_id, current, row.artifact_id)
            record = sc.update_provisioned_product(
                ProvisionedProductId=row.provisioned_product_id,
                ProductId=row.product_id,
                ProvisioningArtifactId=row.artifact_id,
                ProvisioningParameters=params,
                UpdateToken=str(uuid.uuid4()),
            )["RecordDetail"]
        except (ClientError, BotoCoreError, KeyError) as exc:
            row.status, row.after, row.detail = "failed", row.before, _one_line(exc)
            say(f"{row.name}: cannot start the update: {row.detail}")
            continue
        row.record_id, row.status = record["RecordId"], "updating"
        pending.append(row)
        by_id[row.record_id] = row
        say(f"{row.name}: updating {row.before} -> {row.after} (record {row.record_id})")
    deadline = clock() + timeout
    while pending:
        for row in list(pending):
            try:
                detail = sc.describe_record(Id=row.record_id)["RecordDetail"]
            except (ClientError, BotoCoreError) as exc:
                row.status, row.after, row.detail = "failed", row.before, _one_line(exc)
                pending.remove(row)
                continue
            status = detail.get("Status")
            if status in DONE:
                row.status = "upgraded"
                pending.remove(row)
                say(f"{row.name}: upgraded to {row.after}")
            elif status in FAILED:
                errors = detail.get("RecordErrors") or []
                row.status, row.after = "failed", row.before
                row.detail = (errors[0].get("Description") if errors else "") or f"record {row.record_id} {status}"
                row.detail = " ".join(row.detail.split())[:300]
                pending.remove(row)
                say(f"{row.name}: update failed: {row.detail}")
        if not pending:
            break
        if clock() > deadline:
            for row in pending:
                row.status, row.detail = (
                    "failed",
                    f"still updating after {timeout:.0f} s (record {row.record_id}); see the Service Catalog console",
                )
            break
        sleep(POLL_SECONDS)
    return plan
