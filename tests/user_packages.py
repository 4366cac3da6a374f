"""A user's own packages with C code, installed from a user's server and checked after the server is
stopped and started again (issue 15: `pip install --user` -> ~/.local, R's install.packages ->
~/R/library, both in the home). Used by tests/hub (shared mode) and tests/local (per-user mode).

The packages are made in the test, with no network: a Python package with a C extension, built by
`pip install --user --no-index --no-build-isolation` with the server's compiler and setuptools, and
an R package with src/*.c, built by install.packages(repos = NULL, type = "source").
"""

from __future__ import annotations

import json

PY_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
    return PyLong_FromLong(a + b);
}
static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "a + b, in C"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "NAME", NULL, -1, methods};
PyMODINIT_FUNC PyInit_NAME(void) { return PyModule_Create(&module); }
"""

R_C = r"""
#include <R.h>
#include <Rinternals.h>
SEXP tiny_add(SEXP a, SEXP b) { return ScalarReal(asReal(a) + asReal(b)); }
"""


def python_install(name: str) -> str:
    """Python kernel code: make the package in a temporary folder and `pip install --user` it;
    prints one JSON line {returncode, output, userbase, home}."""
    setup = f"from setuptools import setup, Extension\nsetup(name={name!r}, version='0.1', ext_modules=[Extension({name!r}, [{name + '.c'!r}])])\n"
    return f"""
import json, os, pathlib, subprocess, sys, tempfile
src = pathlib.Path(tempfile.mkdtemp()) / {name!r}
src.mkdir()
(src / "setup.py").write_text({setup!r})
(src / {name + ".c"!r}).write_text({PY_C.replace("NAME", name)!r})
r = subprocess.run([sys.executable, "-m", "pip", "install", "--user", "--no-index", "--no-build-isolation",
                    "--disable-pip-version-check", str(src)], capture_output=True, text=True, timeout=300)
print(json.dumps({{"returncode": r.returncode, "output": (r.stdout + r.stderr)[-3000:],
                  "userbase": os.environ.get("PYTHONUSERBASE"), "home": os.environ.get("HOME")}}))
"""


def python_check(name: str) -> str:
    """Python kernel code: import the package; prints {sum, file, home}."""
    return f"""
import json, os, {name}
print(json.dumps({{"sum": {name}.add(2, 3), "file": {name}.__file__, "home": os.environ.get("HOME")}}))
"""


def r_sources(name: str) -> str:
    """Python kernel code that writes the R package's sources; prints the folder."""
    description = (
        f"Package: {name}\nVersion: 0.1\nTitle: Tiny\nDescription: A tiny package with C code.\n"
        "License: MIT\nAuthor: t\nMaintainer: t <t@example.com>\n"
    )
    files = {
        "DESCRIPTION": description,
        "NAMESPACE": f"useDynLib({name})\nexport(tiny_add)\n",
        "R/add.R": f'tiny_add <- function(a, b) .Call("tiny_add", a, b, PACKAGE = "{name}")\n',
        "src/add.c": R_C,
    }
    return f"""
import json, pathlib, tempfile
root = pathlib.Path(tempfile.mkdtemp()) / {name!r}
for rel, text in json.loads({json.dumps(files)!r}).items():
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)
print(root)
"""


def r_install(folder: str) -> str:
    """R kernel code: install.packages from the folder (compiles src/add.c); prints the library."""
    return f'install.packages("{folder}", repos = NULL, type = "source", quiet = TRUE)\ncat("LIB", .libPaths()[1], "\\n")'


def r_check(name: str) -> str:
    return f'library({name}); cat("SUM", tiny_add(2, 3), "AT", find.package("{name}"), "\\n")'


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def install_both(server, name: str) -> dict:
    """Install the Python and the R package from a running server; what each reported."""
    py = last_json(server.run("python3", python_install(name), timeout=300))
    assert py["returncode"] == 0, py["output"]
    folder = server.run("python3", r_sources(name)).strip().splitlines()[-1]
    r_out = server.run("ir", r_install(folder), timeout=300)
    lib = r_out.split("LIB", 1)[1].split()[0] if "LIB" in r_out else r_out
    return {"python": py, "r_library": lib}


def check_both(server, name: str) -> dict:
    """After a restart: both packages load from the home; (python's report, R's output)."""
    py = last_json(server.run("python3", python_check(name)))
    r_out = server.run("ir", r_check(name), timeout=120)
    return {"python": py, "r": r_out}


def assert_in_home(installed: dict, checked: dict, name: str) -> None:
    home = checked["python"]["home"].rstrip("/")
    assert installed["python"]["userbase"] == f"{home}/.local", installed
    assert installed["r_library"] == f"{home}/R/library", installed
    assert checked["python"]["sum"] == 5 and checked["python"]["file"].startswith(f"{home}/.local/"), checked
    assert "SUM 5" in checked["r"] and f"AT {home}/R/library/{name}" in checked["r"], checked
