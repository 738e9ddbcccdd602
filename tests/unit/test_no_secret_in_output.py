"""No command prints a secret: every password of the topology is a recognisable marker, and the output of
each command (stdout and stderr, success or failure) is searched for it. Each command must have run far
enough to say something, so an empty output cannot pass for a clean one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from federation.cli import cli

MARKERS = {"superuser": "SUPERUSER-SECRET-7f3a", "replication": "REPLICATION-SECRET-9c1e",
           "rewind": "REWIND-SECRET-2b8d", "patroni_api": "PATRONI-API-SECRET-5e0f",
           "zookeeper": "ZOOKEEPER-SECRET-3d6a"}
TOPOLOGIES = Path(__file__).resolve().parents[1] / "integration" / "topologies"
# Each base moved to addresses where nothing answers: every command meets unreachable peers, the path where
# messages carry the most. The mixed one has a ZooKeeper DC, so fedctl's ZooKeeper identity is in play.
BASES = {"two-dc": {"127.0.11.": "127.0.45.", "127.0.12.": "127.0.46.", "127.0.61.": "127.0.47."},
         "mixed": {"127.0.16.": "127.0.48.", "127.0.17.": "127.0.49.", "127.0.62.": "127.0.50."}}


@pytest.fixture(scope="module", params=sorted(BASES))
def topology(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = yaml.safe_load((TOPOLOGIES / f"{request.param}.yaml").read_text())
    for role in ("superuser", "replication", "rewind"):
        data["credentials"][role]["password"] = {"value": MARKERS[role]}
    data["patroni_api"]["authentication"]["password"] = {"value": MARKERS["patroni_api"]}
    if "zookeeper_auth" in data:
        data["zookeeper_auth"]["password"] = {"value": MARKERS["zookeeper"]}
    text = yaml.safe_dump(data)
    for old, new in BASES[request.param].items():
        text = text.replace(old, new)
    path = tmp_path_factory.mktemp("secrets") / "topology.yaml"
    path.write_text(text)
    return path


COMMANDS = [
    ["validate"], ["status", "--timeout", "0.5"], ["status", "--format", "json", "--timeout", "0.5"],
    ["status", "--format", "yaml", "--timeout", "0.5"], ["history"], ["jobs"], ["operation", "show"],
    ["entrypoint", "haproxy"], ["entrypoint", "libpq"], ["gate", "render", "--dc", "dc2"],
    ["gate", "pre-promote", "--dc", "dc2"], ["switchover-dc", "dc2", "--dry-run"],
    ["promote-dc", "dc2", "--dry-run"], ["rejoin-dc", "dc1", "--dry-run"], ["backups"],
    ["backup", "dc1", "--dry-run"], ["check-archive"], ["backup-config"], ["store", "status"],
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a))
def test_no_command_prints_a_secret(topology: Path, argv: list[str]) -> None:
    option = [str(topology)] if argv == ["validate"] else ["-t", str(topology)]
    result = CliRunner().invoke(cli, [*argv, *option])
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert output.strip(), f"{argv} said nothing (exit {result.exit_code}): it must have run to be checked"
    assert "Traceback" not in output, output
    for role, marker in MARKERS.items():
        assert marker not in output, f"`fedctl {' '.join(argv)}` printed the {role} password"
