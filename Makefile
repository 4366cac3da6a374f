# lakehub: set-up and common commands. `make local` runs the main job, `make test` every test.
# Everything is installed from the package registries (PyPI, npm, Debian) on a fresh machine.

SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TASKCAT_VENV := .venv-taskcat
CHECKOV_VENV := .venv-checkov
STAMP := build/.stamps
DEBIAN_PACKAGES := slapd ldap-utils chromium git build-essential gfortran r-base-dev libcurl4-openssl-dev libssl-dev libxml2-dev r-base-core r-cran-irkernel r-cran-dplyr r-cran-ggplot2 r-cran-jsonlite r-cran-httr r-cran-reticulate \
	podman runc debootstrap debian-archive-keyring
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$(PATH)

.PHONY: setup python-packages node-packages system-packages scanners contract-suite templates check-templates lint test test-fast local local-down image bench taskcat clean

setup: python-packages node-packages system-packages scanners

$(STAMP):
	mkdir -p $(STAMP)

# Every dependency is installed into the venv with the base interpreter's packages hidden
# (include-system-site-packages = false): pip would otherwise take whatever version the base
# interpreter happens to hold (moto, boto3, ...) as "already satisfied". Only afterwards does the
# venv see the base's packages (behind its own): without that, Python turns the user site off in
# a venv and pip refuses `pip install --user`, and the local platform's users' servers (this
# venv's Python) keep users' packages in their homes as the image does.
python-packages: $(STAMP)/python
$(STAMP)/python: pyproject.toml | $(STAMP)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	sed -i 's/^include-system-site-packages = true$$/include-system-site-packages = false/' $(VENV)/pyvenv.cfg
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,hub,dev]'
	sed -i 's/^include-system-site-packages = false$$/include-system-site-packages = true/' $(VENV)/pyvenv.cfg
	touch $@

node-packages: $(STAMP)/node
$(STAMP)/node: package.json | $(STAMP)
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages: OpenLDAP (loopback identity provider for tests and local mode), R, git and a
# C/C++/Fortran toolchain with R's headers (users build packages with C code, as in the image), and
# chromium (the browser that tests/browser drives through Playwright; Playwright's own browser
# download cannot reach its host from here). podman + runc run the hub image's containers (crun, the
# other runtime podman accepts, fails on this machine's cgroup layout); debootstrap and Debian's
# archive keyring build the Debian base of the local stand-in images (lakehub/local/images.py).
# Rootful podman needs no more: fuse-overlayfs, slirp4netns and uidmap (podman's recommends) serve
# rootless podman only; the kernel's overlay and podman's own network plugins are used as root.
system-packages: $(STAMP)/debian
$(STAMP)/debian: Makefile | $(STAMP)
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	touch $@

# taskcat and checkov pin packages that break moto: each gets its own virtual environment.
scanners: $(STAMP)/scanners
$(STAMP)/scanners: | $(STAMP)
	test -x $(TASKCAT_VENV)/bin/python || $(PY) -m venv $(TASKCAT_VENV)
	$(TASKCAT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TASKCAT_VENV)/bin/python -m pip install --quiet 'taskcat==0.9.58'
	test -x $(CHECKOV_VENV)/bin/python || $(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==3.3.30'
	touch $@

templates: python-packages
	$(BIN)/python build_templates.py

check-templates: python-packages
	$(BIN)/python build_templates.py --check

# jupyter_server's own contents-manager contract tests (tests/contents runs them against the
# project's manager): the tests/ folder of the sdist of the installed jupyter_server, fetched once
# per checkout, again when the Python packages change.
JS_TESTS := build/jupyter_server-tests
contract-suite: $(STAMP)/jupyter-server-tests
$(STAMP)/jupyter-server-tests: $(STAMP)/python | $(STAMP)
	set -e; v=$$($(BIN)/python -c 'import jupyter_server; print(jupyter_server.__version__)'); \
	tmp=$$(mktemp -d build/sdist.XXXXXX); \
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: --dest $$tmp "jupyter_server==$$v"; \
	tar -xzf $$tmp/jupyter_server-$$v.tar.gz -C $$tmp jupyter_server-$$v/tests; \
	rm -rf $(JS_TESTS); mv $$tmp/jupyter_server-$$v/tests $(JS_TESTS); echo $$v > $(JS_TESTS)/VERSION; rm -rf $$tmp
	touch $@

# ruff (pyproject.toml [tool.ruff]): lint and format, over the whole tree; `make test` runs it first.
lint: python-packages
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --check --no-cache .

test: setup contract-suite lint
	$(BIN)/python -m pytest

# The fast tests: no hub, browser or container, no server the suite starts (tests/conftest.py marks
# the emulator's users e2e), no whole-set scanner, no PyPI (markers in pyproject.toml).
# About 3 minutes on this machine size (2 cores); `make test` runs everything.
FAST_MARKERS := not e2e and not browser and not container and not scanner and not slow and not network
test-fast: python-packages contract-suite
	$(BIN)/python -m pytest -q -m "$(FAST_MARKERS)"

local: setup
	$(BIN)/lakehub local up

local-down: python-packages
	$(BIN)/lakehub local down

# The hub image from hub_images/Dockerfile, built locally with podman on Debian stand-ins for its
# base images (no container registry is reachable here); cached in podman's storage by content.
image: setup
	$(BIN)/lakehub local image

# Regional tests in real AWS accounts (needs credentials): publish into a staging folder, run taskcat.
taskcat: python-packages scanners
	$(BIN)/lakehub publish --stage-dir build/taskcat
	cp .taskcat.yml build/taskcat/
	$(TASKCAT_VENV)/bin/taskcat test run --project-root build/taskcat

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf build node_modules $(VENV) $(TASKCAT_VENV) $(CHECKOV_VENV)
