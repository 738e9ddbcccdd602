"""The agent's GET /gate and fedctl_agent_gate_installed, read by fedctl's client (federation.agent_gates) from a
real agent API, and what `fedctl status` makes of the answers."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agent.api import ApiServer, serve
from agent.daemon import Agent
from agent.settings import agent_settings
from federation.agent_gates import AgentGate, read_gate, read_gates
from federation.cli.status import format_status
from federation.gate_install import GateCheck, GateState
from federation.observe import assemble
from federation.topology import Topology, parse_topology
from tests.unit.test_observe import NOW, SECRET, healthy_reads, make_topology

HOST = "127.0.31.249"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def one_member_topology(agent_port: int) -> Topology:
    """dc2's n3 with its Patroni API 100 below `agent_port`, where fedctl then looks for its agent."""
    member = {"name": "n3", "host": HOST, "api": f"{HOST}:{agent_port - 100}"}
    return parse_topology({
        "federation": "unit", "pgbackrest": {"repo_path": "/tmp/repo"},
        "credentials": {k: {"username": k, "password": SECRET} for k in ("superuser", "replication", "rewind")},
        "datacenters": [
            {"name": "dc1", "role": "primary", "dcs": {"etcd3": {"hosts": ["127.0.31.1:2379"]}},
             "members": [{"name": "n1", "host": "127.0.31.11", "api": "127.0.31.11:8008"}]},
            {"name": "dc2", "role": "standby", "upstream": "dc1", "dcs": {"etcd3": {"hosts": ["127.0.31.2:2379"]}},
             "members": [member]}]})


def write_patroni_yml(path: Path, pre_promote: str | None) -> None:
    postgresql: dict[str, Any] = {"listen": f"{HOST}:5432"}
    if pre_promote is not None:
        postgresql["pre_promote"] = pre_promote
    path.write_text(yaml.safe_dump({"scope": "dc2", "name": "n3", "postgresql": postgresql}))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Topology, Agent, Path]]:
    port = free_port()
    topo = one_member_topology(port)
    config = tmp_path / "patroni.yml"
    write_patroni_yml(config, "fedctl gate pre-promote -t /etc/fedctl/topology.yaml --dc dc2")
    agent = Agent(agent_settings(topo, "dc2", "n3", f"{HOST}:{port}", patroni_config=str(config)))
    server: ApiServer = serve(agent, HOST, port)
    try:
        yield topo, agent, config
    finally:
        server.shutdown()
        server.server_close()


def gate_metric(agent: Agent) -> float:
    families = {f.name: f for f in text_string_to_metric_families(agent.metrics.text().decode())}
    return float(families["fedctl_agent_gate_installed"].samples[0].value)


def test_an_installed_gate_is_read_through_the_agent_api(served: tuple[Topology, Agent, Path]) -> None:
    topo, agent, _config = served
    dc = topo.dc("dc2")
    read = read_gate(dc, dc.member("n3"))
    assert read.running and read.installed and read.check.state is GateState.INSTALLED
    assert read.check.config_path is not None and read.check.config_path.endswith("patroni.yml")
    assert gate_metric(agent) == 1


def test_a_removed_gate_shows_as_missing_with_the_line_to_add(served: tuple[Topology, Agent, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    topo, agent, config = served
    assert gate_metric(agent) == 1
    monkeypatch.setattr("agent.gate_report.MAX_AGE", 0.0)  # no waiting out the one-second cache
    write_patroni_yml(config, None)
    dc = topo.dc("dc2")
    read = read_gate(dc, dc.member("n3"))
    assert read.running and not read.installed and read.check.state is GateState.MISSING
    line = yaml.safe_load(read.check.line or "")["pre_promote"]
    assert "gate pre-promote" in line and line.endswith("--dc dc2")
    assert gate_metric(agent) == 0


def test_without_a_config_path_the_agent_cannot_tell(tmp_path: Path) -> None:
    topo = one_member_topology(free_port())
    agent = Agent(agent_settings(topo, "dc2", "n3"))
    verdict = json.loads(json.dumps(agent.gate()))
    assert verdict["dc"] == "dc2" and verdict["member"] == "n3"
    assert verdict["gate"]["state"] == "unknown" and "--patroni-config" in verdict["gate"]["reason"]
    assert math.isnan(gate_metric(agent))


def test_an_agent_that_does_not_answer_is_missing_within_the_deadline() -> None:
    topo = one_member_topology(free_port())  # nobody listens there
    reads = read_gates(topo.members(), timeout=0.5)
    n3 = reads[("dc2", "n3")]
    assert not n3.running and n3.check.state is GateState.UNKNOWN and "does not answer" in n3.check.reason
    assert set(reads) == {("dc1", "n1"), ("dc2", "n3")}


def test_an_agent_of_another_member_is_not_believed(tmp_path: Path) -> None:
    port = free_port()
    topo = one_member_topology(port)
    config = tmp_path / "patroni.yml"
    write_patroni_yml(config, "fedctl gate pre-promote -t t.yaml --dc dc1")
    # An agent of dc1's n1 listening where n3's agent should be.
    agent = Agent(agent_settings(topo, "dc1", "n1", f"{HOST}:{port}", patroni_config=str(config)))
    server = serve(agent, HOST, port)
    try:
        dc = topo.dc("dc2")
        read = read_gate(dc, dc.member("n3"))
    finally:
        server.shutdown()
        server.server_close()
    assert read.running and read.check.state is GateState.UNKNOWN and "dc1/n1" in read.check.reason


# ---- what status makes of the agents' answers ---------------------------------------------------------------

INSTALLED = GateCheck(GateState.INSTALLED, "postgresql.pre_promote in /p/patroni.yml runs the gate for dc2",
                      "/p/patroni.yml")
MISSING = GateCheck(GateState.MISSING, "/p/patroni.yml has no postgresql.pre_promote", "/p/patroni.yml",
                    line="pre_promote: /bin/fedctl gate pre-promote -t /etc/t.yaml --dc dc2")


def agents(**overrides: AgentGate) -> dict[str, dict[str, AgentGate]]:
    reads = {dc: {m: AgentGate(dc, m, f"http://{m}:8108", True, INSTALLED) for m in members}
             for dc, members in (("dc1", ("n1", "n2")), ("dc2", ("n3", "n4")))}
    for name, read in overrides.items():
        reads[read.dc][name] = read
    return reads


def test_status_is_healthy_when_every_member_has_its_gate_and_agent() -> None:
    dcs, api = healthy_reads()
    status = assemble(make_topology(), dcs, api, now=NOW, agent_reads=agents())
    assert status.healthy
    member = status.to_json_dict()["datacenters"][1]["members"][0]
    assert member["agent"] == "running" and member["gate"]["state"] == "installed"
    rows = [line for line in format_status(status, "table").splitlines() if line.startswith("| dc")]
    assert all(line.rstrip(" |").endswith("installed") for line in rows)


def test_a_missing_gate_and_a_missing_agent_are_problems_that_say_what_to_do() -> None:
    dcs, api = healthy_reads()
    n3 = AgentGate("dc2", "n3", "http://n3:8108", True, MISSING)
    n4 = AgentGate("dc2", "n4", "http://n4:8108", False, GateCheck(GateState.UNKNOWN, "does not answer"),
                   "connection refused")
    status = assemble(make_topology(), dcs, api, now=NOW, agent_reads=agents(n3=n3, n4=n4))
    assert not status.healthy
    problems = status.all_problems()
    gate_problem = next(p for p in problems if p.startswith("dc2: n3:"))
    assert "promotion gate missing" in gate_problem and str(MISSING.line) in gate_problem
    agent_problem = next(p for p in problems if p.startswith("dc2: n4:"))
    assert all(words in agent_problem for words in ("connection refused", "fedctl agent run", "--member n4"))
    table = format_status(status, "table")
    row = {line.split("|")[4].strip(): line.split("|")[-2].strip() for line in table.splitlines()
           if line.startswith("| dc")}
    assert row == {"n1": "installed", "n2": "installed", "n3": "missing", "n4": "no agent"}
    data = status.to_json_dict()["datacenters"][1]["members"]
    assert (data[0]["gate"]["state"], data[1]["agent"], data[1]["agent_error"]) == (
        "missing", "missing", "connection refused")


def test_an_unknown_gate_is_a_problem_with_its_reason() -> None:
    dcs, api = healthy_reads()
    unknown = GateCheck(GateState.UNKNOWN, "the agent was not given its Patroni configuration")
    status = assemble(make_topology(), dcs, api, now=NOW,
                      agent_reads=agents(n1=AgentGate("dc1", "n1", "http://n1:8108", True, unknown)))
    assert any("n1: cannot tell" in p and "not given" in p for p in status.all_problems())


def test_the_config_path_is_made_absolute_and_the_cli_takes_it(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    from click.testing import CliRunner

    from federation.cli import cli

    monkeypatch.chdir(tmp_path)
    settings = agent_settings(one_member_topology(free_port()), "dc2", "n3", patroni_config="patroni.yml")
    assert settings.patroni_config == str(tmp_path / "patroni.yml")
    assert "--patroni-config" in CliRunner().invoke(cli, ["agent", "run", "--help"]).output
