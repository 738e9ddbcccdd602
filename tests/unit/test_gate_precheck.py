"""switchover-dc and promote-dc refuse, changing nothing, while a member of the target DC cannot be shown to run
the promotion gate; --force goes ahead and says what it risks; --dry-run reports it."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from federation.agent_gates import AgentGate
from federation.cli import cli
from federation.errors import OperationRefused
from federation.gate_install import GateCheck, GateState
from federation.operations.lease_fence import LeaseFence
from federation.operations.promote import promote_dc
from federation.operations.switchover import switchover_dc
from federation.progress import Progress
from federation.topology import Topology, load_topology
from tests.unit.fake_federation import FakeFederation
from tests.unit.test_operation_plans import disaster
from tests.unit.test_promote_lease import Clock

TOPOLOGIES = Path(__file__).parents[1] / "integration" / "topologies"
LINE = "pre_promote: /opt/fedctl/bin/fedctl gate pre-promote -t /etc/fedctl/topology.yaml --dc dc2"


@pytest.fixture
def topo() -> Topology:
    return load_topology(TOPOLOGIES / "two-dc.yaml")


def no_gate(fed: FakeFederation, member: str) -> None:
    fed.gates[member] = AgentGate("dc2", member, f"http://{member}:8108", True, GateCheck(
        GateState.MISSING, "/etc/patroni/patroni.yml has no postgresql.pre_promote", "/etc/patroni/patroni.yml",
        line=LINE))


def no_agent(fed: FakeFederation, member: str) -> None:
    fed.gates[member] = AgentGate("dc2", member, f"http://{member}:8108", False, GateCheck(
        GateState.UNKNOWN, f"its fedctl agent does not answer at http://{member}:8108: Connection refused"),
        "Connection refused")


def target_members(topo: Topology) -> list[str]:
    return [m.name for m in topo.dc("dc2").members]


def state_of(fed: FakeFederation) -> Any:
    return copy.deepcopy((fed.record, fed.roles(), {n: d.config for n, d in fed.dcs.items()}, fed.commits))


def switchover(fed: FakeFederation, out: io.StringIO | None = None, **options: Any) -> Any:
    return switchover_dc(fed.topo, "dc2", Progress(out=out or io.StringIO()), world=fed, record=fed, **options)


def promotion(fed: FakeFederation, out: io.StringIO | None = None, force: bool = False, **options: Any) -> Any:
    clock = Clock()
    lease = LeaseFence(fed, "dc1", ttl=10, force=force, bound=5.0, clock=clock, wall=clock.wall, sleep=clock.sleep)
    return promote_dc(fed.topo, "dc2", Progress(out=out or io.StringIO(), clock=clock), force=force, lease=lease,
                      world=fed, record=fed, **options)


@pytest.mark.parametrize("operation", [switchover, lambda fed, **kw: promotion(disaster(fed), **kw)],
                         ids=["switchover-dc", "promote-dc"])
def test_a_target_member_without_the_gate_refuses_and_changes_nothing(
        topo: Topology, operation: Callable[..., Any]) -> None:
    fed = FakeFederation(topo)
    ungated = target_members(topo)[-1]
    no_gate(fed, ungated)
    before = state_of(fed)
    with pytest.raises(OperationRefused) as refused:
        operation(fed)
    text = str(refused.value)
    assert f"dc2 cannot be shown to run the promotion gate on {ungated}" in text and "split brain" in text
    assert "has no postgresql.pre_promote" in text and LINE in text and "patronictl reload" in text
    assert "nothing was changed" in text and "--force" in text
    if operation is switchover:
        assert state_of(fed) == before
    else:
        assert fed.record == before[0] and fed.commits == 0


def test_a_target_member_whose_agent_does_not_answer_refuses_and_says_how_to_start_it(topo: Topology) -> None:
    fed = FakeFederation(topo)
    member = target_members(topo)[0]
    no_agent(fed, member)
    with pytest.raises(OperationRefused) as refused:
        switchover(fed)
    assert "does not answer" in refused.value.message
    assert f"fedctl agent run -t TOPOLOGY --dc dc2 --member {member} --patroni-config" in str(refused.value.hint)


def test_the_source_dc_is_not_what_is_checked(topo: Topology) -> None:
    fed = FakeFederation(topo)
    fed.gates["n1"] = AgentGate("dc1", "n1", "http://n1:8108", False, GateCheck(GateState.UNKNOWN, "no answer"))
    assert switchover(fed).outcome == "succeeded"


def test_force_goes_ahead_and_warns_naming_the_members_and_the_risk(topo: Topology) -> None:
    fed = FakeFederation(topo)
    ungated = target_members(topo)[-1]
    no_gate(fed, ungated)
    out = io.StringIO()
    report = switchover(fed, out, force=True)
    assert report.outcome == "succeeded" and fed.record.primary_dc == "dc2"
    warning = next(line for line in out.getvalue().splitlines() if line.startswith("warning:"))
    assert ungated in warning and "split brain" in warning and "--force" in warning
    assert report.facts["promotion_gate"]["forced"] is True
    assert report.facts["promotion_gate"]["members"][ungated]["gate"] == "missing"


def test_force_promote_dc_warns_too(topo: Topology) -> None:
    fed = disaster(FakeFederation(topo))
    no_agent(fed, target_members(topo)[0])
    out = io.StringIO()
    report = promotion(fed, out, force=True)
    assert report.outcome == "succeeded"
    assert "warning:" in out.getvalue() and "split brain" in out.getvalue()


@pytest.mark.parametrize("operation", [switchover, lambda fed, **kw: promotion(disaster(fed), **kw)],
                         ids=["switchover-dc", "promote-dc"])
def test_a_dry_run_refuses_as_the_run_would_and_with_force_reports_the_risk(
        topo: Topology, operation: Callable[..., Any]) -> None:
    fed = FakeFederation(topo)
    ungated = target_members(topo)[-1]
    no_gate(fed, ungated)
    with pytest.raises(OperationRefused, match="cannot be shown to run the promotion gate"):
        operation(fed, dry_run=True)
    report = operation(fed, dry_run=True, force=True)
    assert report.outcome == "planned" and fed.commits == 0
    assert "--force" in report.plan[0] and ungated in report.plan[0] and "split brain" in report.plan[0]


def test_the_agents_are_asked_once_per_run(topo: Topology) -> None:
    fed = FakeFederation(topo)
    switchover(fed)
    assert fed.gate_asks == 1


def test_a_resumed_switchover_is_not_stopped_half_way(topo: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    from federation.failpoints import ENV, FailpointPanic

    fed = FakeFederation(topo)
    monkeypatch.setenv(ENV, "switchover/after-demote=panic")
    with pytest.raises(FailpointPanic):
        switchover(fed)
    monkeypatch.delenv(ENV)
    no_gate(fed, target_members(topo)[-1])  # the source is demoted: refusing now would leave no writer
    assert switchover(fed).outcome == "succeeded"


def test_the_cli_passes_force_and_a_refusal_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    import federation.operations.switchover as module

    seen: dict[str, Any] = {}

    def refusing(topo: Topology, target: str, progress: Progress, **options: Any) -> Any:
        seen.update(options)
        raise OperationRefused("dc2 cannot be shown to run the promotion gate on n4", hint="add the line")

    monkeypatch.setattr(module, "switchover_dc", refusing)
    topology = str(TOPOLOGIES / "two-dc.yaml")
    result = CliRunner().invoke(cli, ["switchover-dc", "dc2", "-t", topology, "--yes", "--format", "json"])
    assert result.exit_code == 1 and seen["force"] is False
    assert "promotion gate" in json.loads(result.output.split("Error:")[0])["error"]
    result = CliRunner().invoke(cli, ["switchover-dc", "dc2", "-t", topology, "--yes", "--force"])
    assert seen["force"] is True
    help_text = CliRunner().invoke(cli, ["switchover-dc", "--help"]).output
    assert "--force" in help_text and "split brain" in help_text
