"""`fedctl events` on the real two-DC lab: after a switchover-dc (and a drifted standby_cluster the agent puts
back) it shows the operation and the agents' lease and re-point events, one each, in time order."""

from __future__ import annotations

import json
from typing import Any

from federation import patroni_api
from tests.integration.labkit import LabHandle, eventually, fedctl


def _events(lab: LabHandle) -> list[dict[str, Any]]:
    done = fedctl(lab, "events", "--since", "5m", "--format", "json", timeout=30)
    assert done.returncode == 0, f"an agent did not answer:\n{done.stderr}"
    return json.loads(done.stdout)


def _first(events: list[dict[str, Any]], kind: str, dc: str) -> dict[str, Any] | None:
    return next((e for e in events if e["kind"] == kind and e["dc"] == dc), None)


def test_events_show_a_switchover_and_the_agents_changes_in_time_order(fresh_two_dc: LabHandle) -> None:
    lab = fresh_two_dc
    # --wait-streaming: returns once dc1 streams from dc2 (else dc1's leader may still be restarting).
    switched = fedctl(lab, "switchover-dc", "dc2", "--yes", "--wait-streaming", "--format", "json")
    assert switched.returncode == 0, switched.stderr + switched.stdout
    assert "source_streaming" not in json.loads(switched.stdout)
    # dc1 is now a standby of dc2: point it at one member only, and its agent re-points it at dc2.
    leader = lab.leader_of(lab.dc("dc1"))
    said = patroni_api.patroni_state(leader)
    assert said is not None and said.get("replication_state") == "streaming", said
    patroni_api.patch_config(leader, {"standby_cluster": {"host": lab.dc("dc2").members[0].host}})

    def complete() -> list[dict[str, Any]] | None:
        events = _events(lab)
        wanted = [_first(events, "operation", "dc2"), _first(events, "lease_taken", "dc2"),
                  _first(events, "repoint", "dc1")]
        # dc1's lease ends either way: released when its agent saw the new record first, lost when the
        # switchover's revocation reached its renewal first.
        ended = _first(events, "lease_released", "dc1") or _first(events, "lease_lost", "dc1")
        return events if all(wanted) and ended else None

    events = eventually("fedctl events shows the switchover, the lease changes and the re-point", complete,
                        timeout=30, interval=1.0)
    times = [e["time"] for e in events]
    assert times == sorted(times), "fedctl events is not in time order"
    operation = _first(events, "operation", "dc2")
    assert operation is not None and operation["operation"] == "switchover-dc" and operation["source"] == "dc1"
    repoint = _first(events, "repoint", "dc1")
    assert repoint is not None and repoint["to"] == "dc2"
    taken = [e for e in events if e["kind"] == "lease_taken" and e["dc"] == "dc2"]
    assert len(taken) == 1, f"dc2 took the primary-DC lease more than once: {taken}"
    for e in events:
        assert {"time", "dc", "member", "kind", "sentence"} <= set(e), e
