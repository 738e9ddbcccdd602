"""`fedctl status` stays cheap to start: the command group imports only the module of the command it runs, and
status on an etcd-only topology never loads ZooKeeper's client, PostgreSQL's driver, the lab or the operations.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from federation.cli.app import COMMAND_MODULES, cli, register_all_commands

# Imported by no path of `fedctl status` on an etcd-only topology (each costs start-up time; psycopg ~0.1 s).
NEVER_IMPORTED = ("kazoo", "psycopg", "requests", "etcd3gw", "apscheduler", "prometheus_client", "asyncio",
                  "federation.lab", "federation.operations", "federation.backup", "backup", "federation.cli.adopt",
                  "federation.cli.lab", "federation.cli.operations", "federation.cli.backup")

# fedctl status in a fresh interpreter, every DCS and member refusing connections at once (127.0.0.1, port 9),
# then the modules it loaded.
RUN_STATUS = """
import json, sys
sys.argv = ["fedctl", "status", "-t", sys.argv[1], "--format", "json", "--timeout", "0.5"]
from federation.cli import main
try:
    main()
except SystemExit:
    pass
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""

ETCD_ONLY = """\
federation: imports
credentials:
  superuser: {username: postgres, password: {file: /nonexistent/secret}}
  replication: {username: replicator, password: {file: /nonexistent/secret}}
  rewind: {username: rewinder, password: {file: /nonexistent/secret}}
pgbackrest: {stanza: fed, repo_path: /nonexistent/repo}
federation_store:
  etcd3:
    hosts:
      - {address: "127.0.0.1:9", site: dc1}
      - {address: "127.0.0.1:9", site: dc2}
      - {address: "127.0.0.1:9", site: witness}
datacenters:
  - name: dc1
    role: primary
    dcs: {etcd3: {hosts: ["127.0.0.1:9"]}, namespace: /fed/}
    members:
      - {name: n1, host: 127.0.0.1, port: 5432, api: "127.0.0.1:9"}
  - name: dc2
    role: standby
    upstream: dc1
    dcs: {etcd3: {hosts: ["127.0.0.1:9"]}, namespace: /fed/}
    members:
      - {name: n2, host: 127.0.0.1, port: 5433, api: "127.0.0.1:9"}
"""


def _loaded_by(argv: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", RUN_STATUS, *argv], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    marker = done.stdout.rfind("\nMODULES ")
    assert marker >= 0, done.stdout + done.stderr
    return list(json.loads(done.stdout[marker + len("\nMODULES "):]))


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NEVER_IMPORTED))


def test_status_on_an_etcd_topology_imports_only_what_it_reads_with(tmp_path: Path) -> None:
    topology = tmp_path / "etcd-only.yaml"
    topology.write_text(ETCD_ONLY)
    modules = _loaded_by([str(topology)])
    assert "federation.observe" in modules, "status did run"
    assert _heavy(modules) == []


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_each_command_lives_where_the_lazy_group_looks_for_it(name: str) -> None:
    register_all_commands()
    command = cli.commands[name]
    assert command.callback is not None
    assert command.callback.__module__ == f"federation.cli.{COMMAND_MODULES[name]}"


def test_every_registered_command_is_known_to_the_lazy_group() -> None:
    register_all_commands()
    assert sorted(cli.commands) == sorted(COMMAND_MODULES)
