"""`fedctl adopt` on clusters fedctl did not set up: the unmanaged lab starts dc1 and dc2 as a DBA has them
(dc2 a standby cluster of dc1's first member, through the slot dr_standby the DBA named; dc2's members on
ports 5432 and 5433, so that dc1 follows dc2's leader while dc2 is primary; no gate, no agents, no federation
record). Adopt must refuse a contradicting topology, change nothing on a dry run,
bring the federation under fedctl while a writer commits (no commit lost, no restart, dc2 streaming again
within a reload), change nothing a second time, and leave a federation that switches over and back and
survives a promote-dc drill once the gates and agents are in place."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation import patroni_api
from federation.lab.health import member_state
from federation.lab.lab import install_gate, lab_kill, start_agents
from federation.store import FederationStore
from federation.topology import Datacenter
from tests.integration.conftest import RUNNING, finish
from tests.integration.labkit import LabHandle, Writer, eventually, fedctl, start_lab, wait_for_no_lease

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def unmanaged_lab() -> Iterator[LabHandle]:
    handle = start_lab("unmanaged")
    RUNNING[("unmanaged_lab", None)] = handle
    yield handle
    bugs = finish("unmanaged_lab", None, handle)
    assert not bugs, "Patroni reported a BUG:\n" + "\n".join(bugs)


def _configs(lab: LabHandle) -> dict[str, dict[str, Any]]:
    """Each DC's dynamic configuration, read from its leader (every DC must answer)."""
    return {dc.name: patroni_api.get_config(lab.leader_of(dc)) for dc in lab.topo.datacenters}


def _record(lab: LabHandle) -> Any:
    store = lab.topo.federation_store
    assert store is not None
    return FederationStore(store, lab.topo.federation).read_record()


def _started_at(lab: LabHandle) -> dict[str, str]:
    return {m.name: str(lab.sql_one(m, "SELECT pg_postmaster_start_time()")) for _, m in lab.topo.members()}


def _ok(done: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{what} failed:\n{done.stderr}{done.stdout}"
    return done


class StreamWatch:
    """Polls dc2's standby leader every 0.1 s and keeps the longest stretch it was not streaming."""

    def __init__(self, dc: Datacenter) -> None:
        self.dc, self.polls, self.streaming_polls, self.longest = dc, 0, 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StreamWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        since: float | None = None
        while not self._stop.is_set():
            states = [member_state(m, timeout=0.5) or {} for m in self.dc.members]
            streaming = any(s.get("role") == "standby_leader" and s.get("replication_state") == "streaming"
                            for s in states)
            self.polls += 1
            now = time.monotonic()
            if streaming:
                since = None
                self.streaming_polls += 1
            else:
                since = since if since is not None else now
                self.longest = max(self.longest, now - since)
            time.sleep(0.1)


def test_adopt_refuses_a_contradicting_topology_and_a_dry_run_changes_nothing(
        unmanaged_lab: LabHandle, tmp_path: Path) -> None:
    lab = unmanaged_lab
    before = _configs(lab)
    assert _record(lab) is None, "the unmanaged lab must start without a federation record"

    swapped = yaml.safe_load(lab.path.read_text())
    dc1, dc2 = swapped["datacenters"]
    dc1.update(role="standby", upstream="dc2")
    dc2.update(role="primary")
    dc2.pop("upstream")
    wrong = tmp_path / "swapped.yaml"
    wrong.write_text(yaml.safe_dump(swapped))
    refused = subprocess.run([*_cli(), "adopt", "-t", str(wrong), "--yes"], capture_output=True, text=True,
                             timeout=120, stdin=subprocess.DEVNULL)
    assert refused.returncode != 0
    assert "the topology says dc2 is the primary DC, but dc2 is a standby cluster" in refused.stderr, refused.stderr
    assert "the topology says dc1 follows dc2, but dc1 is not a standby cluster" in refused.stderr, refused.stderr
    assert "nothing was changed" in refused.stderr

    assert set(_gates(lab).values()) == {("missing", "unknown")}, "the unmanaged lab runs no agent"
    dry = _ok(fedctl(lab, "adopt", "--dry-run"), "adopt --dry-run")
    assert "dc2: standby_cluster: host '127.0.71.11' -> '127.0.71.11,127.0.71.12'" in dry.stdout, dry.stdout
    assert "write the first federation record" in dry.stdout
    assert "pre_promote: fedctl gate pre-promote" in dry.stdout
    assert _configs(lab) == before and _record(lab) is None, "a refusal or a dry run changed something"


def test_adopt_brings_the_clusters_under_fedctl_online_and_a_second_run_changes_nothing(
        unmanaged_lab: LabHandle) -> None:
    lab = unmanaged_lab
    dc1, dc2 = lab.dc("dc1"), lab.dc("dc2")
    started = _started_at(lab)
    writer = Writer(lab, "adopt_rows").start()
    try:
        eventually("the writer commits", lambda: len(writer.acked) > 30, timeout=20)
        with StreamWatch(dc2) as watch:
            began = time.monotonic()
            adopted = _ok(fedctl(lab, "adopt", "--yes"), "adopt")
            took = time.monotonic() - began
            eventually("dc2 streams after adopt", lambda: watch.longest == 0 or _streaming(dc2), timeout=30)
            time.sleep(1)
        count = len(writer.acked)
        eventually("the writer commits after adopt", lambda: len(writer.acked) > count + 30, timeout=20)
    finally:
        writer.stop()
    print(adopted.stdout)
    assert "Adopted" in adopted.stdout
    record = _record(lab)
    assert record is not None, "adopt wrote no federation record"
    config = _configs(lab)
    section = config["dc2"]["standby_cluster"]
    assert section["host"] == "127.0.71.11,127.0.71.12" and section["primary_slot_name"] == "dr_standby"
    assert section["create_replica_methods"] == ["pgbackrest", "basebackup"]
    assert "dr_standby" in config["dc1"]["slots"]
    assert watch.polls >= 10 and watch.streaming_polls > 0, \
        f"the stream watch polled {watch.polls} times and saw dc2 streaming {watch.streaming_polls} times"
    print(f"adopt took {took:.2f} s; dc2 did not stream for at most {watch.longest:.2f} s ({watch.polls} polls)")
    assert watch.longest < 10.0, f"dc2 stopped streaming for {watch.longest:.1f} s: more than a reload"
    assert _started_at(lab) == started, "adopt restarted a member"
    assert writer.errors == 0, f"the writer saw {writer.errors} errors during adopt"
    for member in dc2.members:
        eventually(f"{member.name} has every row", lambda m=member: writer.missing_on(lab, m) == [], timeout=30)
    assert writer.missing_on(lab, lab.leader_of(dc1)) == []

    again = _ok(fedctl(lab, "adopt", "--yes"), "a second adopt")
    assert "Nothing to change" in again.stdout, again.stdout
    assert _configs(lab) == config and _record(lab) == record, "a second adopt changed something"


def test_an_adopted_federation_switches_over_and_back_then_survives_a_promotion(unmanaged_lab: LabHandle) -> None:
    lab = unmanaged_lab
    if _record(lab) is None:
        _ok(fedctl(lab, "adopt", "--yes"), "adopt")
    start_agents(lab.topo)
    store = lab.topo.federation_store
    assert store is not None
    eventually("dc1's agent takes the primary-DC lease",
               lambda: FederationStore(store, lab.topo.federation).read_lease().holder == "dc1", timeout=60)
    everyone = {m.name for _, m in lab.topo.members()}
    eventually("status shows every member's gate missing", lambda: _gates(lab) == {
        name: ("running", "missing") for name in everyone}, timeout=30)
    refused = fedctl(lab, "switchover-dc", "dc2", "--yes")
    assert refused.returncode == 1 and "pre_promote" in refused.stderr, refused.stderr + refused.stdout
    assert _record(lab) is not None and _primary(lab) == "dc1", "a refused switchover changed the record"

    for dc, member in lab.topo.members():
        install_gate(lab.topo, dc, member)
    eventually("status shows every member's gate installed", lambda: _gates(lab) == {
        name: ("running", "installed") for name in everyone}, timeout=30)

    writer = Writer(lab, "adopted_rows").start()
    try:
        eventually("the writer commits", lambda: len(writer.acked) > 30, timeout=20)
        _ok(fedctl(lab, "switchover-dc", "dc2", "--yes"), "switchover-dc dc2")
        count = len(writer.acked)
        eventually("the writer commits on dc2", lambda: len(writer.acked) > count + 30, timeout=30)
        dc2_leader = lab.leader_of(lab.dc("dc2"))
        assert lab.sql_one(dc2_leader, "SELECT pg_is_in_recovery()") is False
        # dc2's members use two ports: dc1 follows dc2's leader itself, not a multi-host list.
        followed = patroni_api.get_config(lab.leader_of(lab.dc("dc1")))["standby_cluster"]
        followed_from_dc2 = (followed["host"], str(followed["port"])) == (dc2_leader.host, str(dc2_leader.port))
        _ok(fedctl(lab, "switchover-dc", "dc1", "--yes"), "switchover-dc dc1")
        count = len(writer.acked)
        eventually("the writer commits on dc1 again", lambda: len(writer.acked) > count + 30, timeout=30)
    finally:
        writer.stop()
    primary = lab.leader_of(lab.dc("dc1"))
    assert writer.missing_on(lab, primary) == []
    section = patroni_api.get_config(lab.leader_of(lab.dc("dc2")))["standby_cluster"]
    assert section["primary_slot_name"] == "dr_standby", "the DBA's slot name did not survive the round trip"
    assert followed_from_dc2, "while dc2 was primary, dc1 did not follow dc2's leader at its own host:port"

    lab_kill(lab.topo, "dc1")
    wait_for_no_lease(lab)
    _ok(fedctl(lab, "promote-dc", "dc2", "--yes"), "promote-dc dc2")
    new_primary = lab.leader_of(lab.dc("dc2"))
    assert lab.sql_one(new_primary, "SELECT pg_is_in_recovery()") is False
    lab.sql(new_primary, "INSERT INTO adopted_rows (id) VALUES (-1) RETURNING id")
    lab.dirty = True  # type: ignore[attr-defined]


def _gates(lab: LabHandle) -> dict[str, tuple[str | None, str | None]]:
    """member -> (agent, gate state) as `fedctl status --format json` reports them."""
    done = fedctl(lab, "status", "--format", "json", timeout=60)
    data = json.loads(done.stdout)
    return {m["name"]: (m["agent"], (m["gate"] or {}).get("state")) for dc in data["datacenters"]
            for m in dc["members"]}


def _primary(lab: LabHandle) -> str:
    record = _record(lab)
    assert record is not None
    return str(json.loads(record.value)["primary_dc"])


def _streaming(dc: Datacenter) -> bool:
    return any((member_state(m) or {}).get("replication_state") == "streaming" for m in dc.members)


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "federation"]
