"""Load a custom-resource function's index.py afresh, as Lambda would: from its folder under
lambdas/ (with the shared lakehub_cr/ beside it, as packing puts it in every zip), or from an
unpacked zip. Module-level clients bind to the environment of the moment. Used by tests/lambdas
and the catalog rehearsal."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path

LAMBDAS = Path(__file__).resolve().parents[1] / "lambdas"
SHARED_MODULES = ("lakehub_cr",)


def load_function(name: str, monkeypatch, code: Path | None = None):
    """lambdas/<name>/index.py (or <code>/index.py, an unpacked zip whose own copies of the shared
    modules then win) as a fresh module; sys.path and sys.modules are restored by monkeypatch."""
    folder = code or LAMBDAS / name
    monkeypatch.syspath_prepend(str(code or LAMBDAS))
    for mod in [m for m in sys.modules if m.split(".")[0] in SHARED_MODULES]:
        monkeypatch.delitem(sys.modules, mod)
    module_name = f"lakehub_test_function_{name}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, folder / "index.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module
