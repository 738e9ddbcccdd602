"""switchover-dc's pure parts: the new upstreams (the declared cascade re-rooted at the target) and the
streaming-only section the source is demoted with."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.decide import owned_drift
from federation.cascade import reroot
from federation.operations.switchover import _streaming_only
from federation.patroni_dynamic import ARCHIVE_GET, role_patch, standby_cluster_section
from federation.state import initial_state
from federation.topology import load_topology

TOPOLOGIES = Path(__file__).parents[1] / "integration" / "topologies"


def test_the_target_becomes_the_root_and_every_declared_link_stays() -> None:
    topo = load_topology(TOPOLOGIES / "three-dc.yaml")
    assert reroot(topo, "dc2") == {"dc1": "dc2", "dc2": None, "dc3": "dc2"}
    assert reroot(topo, "dc3") == {"dc1": "dc2", "dc2": "dc3", "dc3": None}
    assert reroot(topo, "dc1") == initial_state(topo).upstreams


def test_the_source_is_demoted_without_restore_command_and_the_re_point_puts_it_back() -> None:
    topo = load_topology(TOPOLOGIES / "two-dc.yaml")
    dc1, dc2 = topo.dc("dc1"), topo.dc("dc2")
    full = standby_cluster_section(dc1, dc2)
    demoted = _streaming_only(full)
    assert demoted is not None and "restore_command" not in demoted
    assert {k: v for k, v in full.items() if k != "restore_command"} == demoted
    assert full["restore_command"] == ARCHIVE_GET
    ups: dict[str, str | None] = {"dc1": "dc2", "dc2": None}
    wanted = role_patch(topo, dc1, ups, {"standby_cluster": demoted})
    assert owned_drift(wanted, {"standby_cluster": demoted}) == [f"standby_cluster.restore_command is None, "
                                                                 f"want {ARCHIVE_GET!r}"]
    assert _streaming_only(None) is None


def test_a_role_patch_without_an_answer_is_sent_once_more_with_a_longer_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from federation import patroni_api
    from federation.operations.common import PATCH_TIMEOUTS, apply_role

    topo = load_topology(TOPOLOGIES / "two-dc.yaml")
    dc2 = topo.dc("dc2")
    ups: dict[str, str | None] = {"dc1": "dc2", "dc2": None}
    sent: list[float] = []
    answers = {"after": 1}

    def patch(member: object, body: dict[str, object], *, timeout: float) -> dict[str, object]:
        sent.append(timeout)
        if len(sent) <= answers["after"]:
            raise patroni_api.PatroniUnreachable("Patroni REST API of n3 is unreachable: no complete answer within 2 s")
        return dict(body)

    monkeypatch.setattr(patroni_api, "get_config", lambda member: {})
    monkeypatch.setattr(patroni_api, "patch_config", patch)
    assert apply_role(topo, dc2, dc2.members[0], ups) != {}
    assert sent == list(PATCH_TIMEOUTS)
    sent.clear()
    answers["after"] = len(PATCH_TIMEOUTS)
    with pytest.raises(patroni_api.PatroniUnreachable):
        apply_role(topo, dc2, dc2.members[0], ups)
    assert sent == list(PATCH_TIMEOUTS), "a member that never answers is reported after the last try"
