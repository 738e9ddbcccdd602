# Two commands set everything up on a fresh Debian 12 machine: `make demo` and `make test`.
VENV        := .venv
SYSTEM_PY   := /usr/bin/python3
DEB_PACKAGES := postgresql-15 postgresql-contrib etcd-server etcd-client pgbackrest zookeeper haproxy \
                iproute2 nftables util-linux \
                pgbouncer python3-venv prometheus chromium
STAMP       := $(VENV)/.installed
FEDCTL      := $(VENV)/bin/fedctl
PYTEST_ARGS ?=

.PHONY: install debian-packages demo test lint unit integration bench lab-down clean

install: debian-packages $(STAMP)

debian-packages:
	@scripts/install-debian-packages.sh $(DEB_PACKAGES)

# The venv comes from Debian's python so the unprivileged lab user can run Patroni from it.
$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(SYSTEM_PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[lab,test]'
	@# Byte-compiled as a wheel install would be: an editable tree is otherwise compiled on every run
	@# where PYTHONDONTWRITEBYTECODE is set (~55 ms of each fedctl command).
	$(VENV)/bin/python -m compileall -q -j0 federation agent
	@touch $(STAMP)

demo: install
	$(FEDCTL) lab up
	$(FEDCTL) status

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

unit: install
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

integration: install
	$(VENV)/bin/pytest -v tests/integration $(PYTEST_ARGS)

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=12 tests $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/python -m bench

lab-down:
	@test -x $(FEDCTL) && $(FEDCTL) lab down || true

clean: lab-down
	rm -rf $(VENV) *.egg-info
