"""The per-DC agent on its own real two-DC lab (127.0.31.x / 127.0.32.x, federation test-agent).

Scenarios, in order (the last one changes roles for good): one active agent per DC serving the API;
LSN samples of dc1 appear in dc2's DCS and advance; a drifted standby_cluster is put back; a
switchover inside dc1 is followed by dc2 with no lost row and the slot kept; killing (SIGKILL) or
stopping (SIGTERM) the active agent hands the lease over; a DC replaced by promote-dc and started
again with its old configuration is fenced by its agent and ends as a standby of the new primary.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent.settings import lease_key
from federation import patroni_api
from federation.dcs import connect
from federation.dcs.lease import holder_of
from federation.follow_mode import FollowMode, follow_mode
from federation.lab import dcs_servers
from federation.lab.agents import agent_process, start_agents
from federation.lab.lab import lab_kill, lab_start
from federation.operations.promote import promote_dc
from federation.progress import Progress
from federation.samples import newest_sample
from federation.state import current_state
from federation.topology import Datacenter, Member
from tests.integration.labkit import (
    LabHandle,
    Writer,
    agent_get,
    bug_lines,
    eventually,
    metrics_of,
    start_lab,
    stop_lab,
    wait_for_no_lease,
)

pytestmark = pytest.mark.integration

LEASE_TTL = 5


# The same scenarios on etcd in both DCs, on a mixed lab whose dc2 runs on ZooKeeper, and on a lab whose
# members of one DC use different PostgreSQL ports (a standby DC follows its upstream's leader host:port).
@pytest.fixture(scope="module", params=["agent-two-dc", "agent-mixed", "agent-ports"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    handle = start_lab(request.param)  # lab up starts the agents
    yield handle
    bugs = bug_lines(handle)
    kept = tmp_path_factory.mktemp("agent-lab-logs")
    for log in handle.lab.layout.root.glob("dc*/**/*.log"):
        shutil.copyfile(log, kept / "_".join(log.relative_to(handle.lab.layout.root).parts))
    print(f"agent lab logs kept in {kept}")
    stop_lab(handle)
    assert not bugs, "Patroni reported a BUG:\n" + "\n".join(bugs)


def lease_holder(lab: LabHandle, dc: Datacenter) -> str | None:
    with connect(dc) as dcs:
        found = dcs.get(lease_key(lab.topo, dc))
    return holder_of(found.value) if found else None


def active_member(lab: LabHandle, dc: Datacenter) -> Member:
    holder = eventually(f"an agent of {dc.name} holds the lease", lambda: lease_holder(lab, dc), timeout=30)
    return dc.member(holder.split("/", 1)[1])


def test_one_agent_per_dc_is_active_and_every_agent_serves_the_api(lab: LabHandle) -> None:
    for dc in lab.topo.datacenters:
        active = active_member(lab, dc)
        eventually(f"{active.name}'s agent says it is active",
                   lambda a=active: metrics_of(a)["fedctl_agent_active"] == 1, timeout=15)
        for member in dc.members:
            # A standby agent reports its DCS down until its first DCS answer (a ZooKeeper session takes
            # a moment on a loaded machine), so wait for 200 rather than take the first answer.
            eventually(f"{member.name}'s agent to answer /health with 200",
                       lambda m=member: agent_get(m, "/health")[0] == 200, timeout=20)
            code, body = agent_get(member, "/health")
            assert code == 200, body
            values = metrics_of(member)
            assert values["fedctl_agent_active"] == (1 if member == active else 0)
            assert values["fedctl_agent_own_dcs_up"] == 1
            assert values["fedctl_agent_loop_errors_total{phase=observe}"] == 0
        status = json.loads(agent_get(active, "/status")[1])
        assert status["datacenters"][0]["name"] == dc.name
        assert status["agent"]["active"] is True and status["agent"]["lease_holder"] == f"{dc.name}/{active.name}"
        print(f"{dc.name}: active agent {active.name}; last sentence: {status['agent']['last_sentence']}")
    dc2_active = active_member(lab, lab.dc("dc2"))
    # An agent that has just won the lease fills these gauges at the end of its first active cycle.
    values = eventually("dc2's active agent reports its role, lag and upstream",
                        lambda: (v := metrics_of(dc2_active)).get("fedctl_dc_role{role=standby}") == 1
                        and v.get("fedctl_upstream_dc_reachable") == 1 and v, timeout=10)
    assert values["fedctl_cross_dc_lag_bytes"] >= 0


def test_samples_of_dc1_appear_in_dc2s_dcs_and_advance(lab: LabHandle) -> None:
    first = eventually("a sample of dc1 in dc2", lambda: newest_sample(lab.topo, "dc1"), timeout=15)
    assert first.sampled_by.startswith("dc2/")
    leader = lab.leader_of(lab.dc("dc1"))
    lab.sql(leader, "CREATE TABLE IF NOT EXISTS agent_probe (id serial PRIMARY KEY, pad text)")
    lab.sql(leader, "INSERT INTO agent_probe (pad) SELECT repeat('x', 200) FROM generate_series(1, 2000)")
    written = lab.sql_one(leader, "SELECT pg_current_wal_lsn()::text")
    started = time.monotonic()
    later = eventually("the sample to advance past the new rows",
                       lambda: (s := newest_sample(lab.topo, "dc1")) and s.lsn > first.lsn and s, timeout=15)
    print(f"sample advanced {later.lsn - first.lsn} bytes ({first.time} -> {later.time}) within "
          f"{time.monotonic() - started:.2f} s; dc1 wrote up to {written}")
    assert later.taken_at > first.taken_at
    age = metrics_of(active_member(lab, lab.dc("dc2")))["fedctl_upstream_lsn_sample_age_seconds"]
    assert 0 <= age < 5


def test_a_drifted_standby_cluster_is_put_back(lab: LabHandle) -> None:
    dc2 = lab.dc("dc2")
    leader = lab.leader_of(dc2)
    wanted = patroni_api.get_config(leader)["standby_cluster"]["host"]
    elsewhere = next(m.host for m in lab.dc("dc1").members if m.host != wanted)
    patroni_api.patch_config(leader, {"standby_cluster": {"host": elsewhere}})
    changed = time.monotonic()
    eventually("the agent to put standby_cluster.host back",
               lambda: patroni_api.get_config(leader)["standby_cluster"]["host"] == wanted, timeout=15, interval=0.1)
    took = time.monotonic() - changed
    dc1_leader = lab.leader_of(lab.dc("dc1"))
    eventually("dc2 to stream from dc1's leader again", lambda: _sender_host(lab, leader) == dc1_leader.host,
               timeout=20, interval=0.1)
    back = time.monotonic() - changed
    print(f"drifted standby_cluster.host repaired in {took:.2f} s; streaming from {dc1_leader.name} after {back:.2f} s")
    assert took < 6
    eventually("the re-point is counted",
               lambda: metrics_of(active_member(lab, dc2))["fedctl_agent_actions_total{action=repoint}"] >= 1)


def _switchover(leader: Member, candidate: Member) -> None:
    """Patroni's own intra-DC switchover, as patronictl would ask for it (https, restapi credentials)."""
    from federation.patroni_api import post_action

    answer = post_action(leader, "/switchover", {"leader": leader.name, "candidate": candidate.name}, timeout=30)
    assert "switched over" in answer.lower() or "success" in answer.lower(), answer


def _sender_host(lab: LabHandle, member: Member) -> str | None:
    return lab.sql_one(member, "SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming'")


def test_a_switchover_inside_dc1_is_followed_by_dc2(lab: LabHandle) -> None:
    dc1, dc2 = lab.dc("dc1"), lab.dc("dc2")
    old = lab.leader_of(dc1)
    new = next(m for m in dc1.members if m != old)
    standby_leader = lab.leader_of(dc2)
    eventually(f"dc2 streams from {old.name}", lambda: _sender_host(lab, standby_leader) == old.host, timeout=20)
    writer = Writer(lab, table="agent_rows").start()
    try:
        eventually("the writer commits", lambda: len(writer.acked) > 20, timeout=20)
        started = time.monotonic()
        _switchover(old, new)
        eventually(f"{new.name} accepts writes", lambda: lab.sql_one(new, "SELECT NOT pg_is_in_recovery()"),
                   timeout=30, interval=0.05)
        writable = time.monotonic() - started
        eventually(f"dc2 streams from {new.name}", lambda: _sender_host(lab, standby_leader) == new.host,
                   timeout=30, interval=0.05)
        followed = time.monotonic() - started
        eventually("the writer commits on the new leader",
                   lambda: any(t > started + writable for _, t in writer.acked), timeout=20)
    finally:
        writer.stop()
    last = writer.acked[-1][0]
    eventually("dc2 has the last acknowledged row",
               lambda: lab.sql_one(standby_leader, "SELECT count(*) FROM agent_rows WHERE id = %s", (last,)) == 1)
    missing = writer.missing_on(lab, standby_leader)
    print(f"switchover in dc1: {new.name} writable after {writable:.2f} s, dc2 streaming from it after "
          f"{followed:.2f} s; {len(writer.acked)} commits, missing on dc2: {len(missing)}")
    assert not missing
    assert followed < writable + 10
    assert lab.sql_one(new, "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (dc2.slot_name,)) is True
    config = patroni_api.get_config(standby_leader)["standby_cluster"]
    assert config["primary_slot_name"] == dc2.slot_name
    if follow_mode(dc1, current_state(lab.topo)[0].upstreams) is FollowMode.EVERY_MEMBER:
        assert config["host"] == ",".join(m.host for m in dc1.members)
    else:
        assert (config["host"], int(config["port"])) == (new.host, new.port), "re-pointed at the new leader"


def _handover(lab: LabHandle, dc: Datacenter, how: str) -> float:
    before = active_member(lab, dc)
    proc = agent_process(lab.lab.layout, dc, before)
    stopped = time.monotonic()
    proc.kill() if how == "kill" else proc.stop(timeout=15)
    after = eventually("another agent to hold the lease",
                       lambda: (h := lease_holder(lab, dc)) and h != f"{dc.name}/{before.name}" and h,
                       timeout=LEASE_TTL + 10, interval=0.1)
    took = time.monotonic() - stopped
    successor = dc.member(after.split("/", 1)[1])
    eventually(f"{successor.name}'s agent reports itself active",
               lambda: metrics_of(successor)["fedctl_agent_active"] == 1, timeout=10)
    print(f"{how} of {dc.name}'s active agent {before.name}: {successor.name} holds the lease {took:.2f} s later")
    start_agents(lab.lab, dc)
    eventually(f"{before.name}'s agent to serve again", lambda: agent_get(before, "/health")[0] == 200, timeout=20)
    return took


def test_killing_the_active_agent_hands_over_within_the_lease_time(lab: LabHandle) -> None:
    assert _handover(lab, lab.dc("dc2"), "kill") <= LEASE_TTL + 2


def test_sigterm_releases_the_lease_at_once(lab: LabHandle) -> None:
    assert _handover(lab, lab.dc("dc1"), "stop") < LEASE_TTL


def test_an_unreachable_own_dcs_changes_nothing_and_health_says_so(lab: LabHandle) -> None:
    dc2 = lab.dc("dc2")
    for member in dc2.members:  # an agent restarted by an earlier scenario may still be starting its API
        eventually(f"{member.name}'s agent answers", lambda m=member: agent_get(m, "/health")[0] == 200, timeout=20)
    before = {m.name: metrics_of(m) for m in dc2.members}
    config = patroni_api.get_config(lab.leader_of(dc2))
    for _host, proc, _dir in dcs_servers.server_processes(lab.lab.layout, dc2):
        proc.kill()
    killed = time.monotonic()
    for member in dc2.members:
        eventually(f"{member.name}'s agent to report its DCS down",
                   lambda m=member: agent_get(m, "/health")[0] == 503 and metrics_of(m)["fedctl_agent_active"] == 0,
                   timeout=LEASE_TTL + 5, interval=0.2)
    unhealthy = time.monotonic() - killed
    reason = json.loads(agent_get(dc2.members[0], "/health")[1])["reason"]
    assert reason.startswith("own DCS does not answer")
    lab_start(lab.topo, "dc2", Progress(quiet=True))  # etcd again; Patroni and agents still run
    restarted = time.monotonic()
    active = active_member(lab, dc2)
    eventually("the agent to be active and healthy again",
               lambda: agent_get(active, "/health")[0] == 200 and metrics_of(active)["fedctl_agent_active"] == 1,
               timeout=20)
    print(f"dc2's etcd killed: agents unhealthy and passive after {unhealthy:.2f} s (reason: {reason}); active "
          f"again {time.monotonic() - restarted:.2f} s after etcd restarted")
    for member in dc2.members:
        after = metrics_of(member)
        for action in ("repoint", "fence"):
            key = f"fedctl_agent_actions_total{{action={action}}}"
            assert after[key] == before[member.name][key], f"{member.name} acted while its DCS was down"
    # Right after its etcd is back, Patroni may take a few seconds to answer GET /config (it reads the DCS).
    after_config = eventually("dc2's leader to answer GET /config",
                              lambda: patroni_api.get_config(lab.leader_of(dc2)), timeout=20)
    assert after_config["standby_cluster"] == config["standby_cluster"]
    dc1_leader = lab.leader_of(lab.dc("dc1"))
    eventually("dc2 streams from dc1's leader", lambda: _sender_host(lab, lab.leader_of(dc2)) == dc1_leader.host,
               timeout=30)


class WriteProbe:
    """Polls every member of a DC every 0.1 s and remembers when any of them accepted writes."""

    def __init__(self, lab: LabHandle, dc: Datacenter) -> None:
        self.lab, self.dc = lab, dc
        self.writable_at: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> WriteProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for member in self.dc.members:
                try:
                    if self.lab.sql_one(member, "SELECT NOT pg_is_in_recovery()") is True:
                        self.writable_at.append((member.name, time.monotonic()))
                except Exception:  # down or starting: not accepting writes
                    pass
            self._stop.wait(0.1)

    def window(self) -> float:
        times = [t for _, t in self.writable_at]
        return max(times) - min(times) + 0.1 if times else 0.0


def _streaming_from(lab: LabHandle, dc: Datacenter, upstream: Datacenter) -> bool:
    leader = lab.leader_of(dc)
    if _sender_host(lab, leader) not in {m.host for m in upstream.members}:
        return False
    return all(lab.sql_one(m, "SELECT status FROM pg_stat_wal_receiver") == "streaming" for m in dc.members)


def test_a_replaced_dc_started_with_its_old_config_is_fenced_by_its_agent(lab: LabHandle) -> None:
    dc1, dc2 = lab.dc("dc1"), lab.dc("dc2")
    writer = Writer(lab, table="fence_rows").start()
    eventually("the writer commits", lambda: len(writer.acked) > 20, timeout=20)
    lab_kill(lab.topo, "dc1")  # its agents die with it
    assert not any(agent_process(lab.lab.layout, dc1, m).running() for m in dc1.members)
    dc2_agent = active_member(lab, dc2)
    sentence = eventually("dc2's agent to report dc1 unreachable, keeping its upstream", lambda: (
        s := json.loads(agent_get(dc2_agent, "/status")[1])["agent"]["last_sentence"]) and "does not answer" in s
        and s, timeout=10)
    assert metrics_of(dc2_agent)["fedctl_upstream_dc_reachable"] == 0
    print(f"dc1 down, dc2's agent: {sentence}")
    wait_for_no_lease(lab)
    report = promote_dc(lab.topo, "dc2", Progress(quiet=True))
    assert report.outcome == "succeeded"
    assert report.facts["data_loss_estimate_bytes"] is not None, "no LSN sample of dc1 was available"
    eventually("the writer commits on dc2", lambda: writer.acked[-1][1] > time.monotonic() - 1, timeout=20)
    writer.stop()
    print(f"promote-dc: loss estimate {report.facts['data_loss_estimate_bytes']} bytes, sample age "
          f"{report.facts['sample_age_seconds']} s")

    probe = WriteProbe(lab, dc1).start()
    started = time.monotonic()
    try:
        lab_start(lab.topo, "dc1", Progress(quiet=True))  # with its old configuration, and its agents
        eventually("dc1 streams from dc2", lambda: _streaming_from(lab, dc1, dc2), timeout=120, interval=0.5)
        rejoined = time.monotonic() - started
    finally:
        probe.stop()
    window = probe.window()
    print(f"dc1 back as a standby of dc2 {rejoined:.2f} s after its start; it accepted writes for {window:.2f} s "
          f"({len(probe.writable_at)} probes saw a primary)")
    assert window <= 10
    def rejoin_entries() -> list[Any]:
        st, _ = current_state(lab.topo)
        assert st.primary_dc == "dc2"
        return [h for h in st.history if h.operation == "rejoin-dc" and h.target == "dc1"]

    entry = eventually("the agent's rejoin-dc in the federation history", rejoin_entries, timeout=20)[-1]
    print(f"rejoin-dc by the agent: {entry.seconds} s, fork {entry.details['fork']}, diverged WAL "
          f"{ {name: d['bytes'] for name, d in entry.details['diverged_wal'].items()} }")
    active = active_member(lab, dc1)
    eventually("the fence is counted", lambda: metrics_of(active)["fedctl_fencing_events_total"] >= 1, timeout=10)
    epoch = current_state(lab.topo)[0].epoch
    eventually("dc1's own record copy to reach the new epoch", lambda: _own_epoch(lab, dc1) == epoch, timeout=15)
    writer_rows = lab.sql_one(lab.leader_of(dc2), "SELECT count(*) FROM fence_rows")
    eventually("dc1 has every row of dc2",
               lambda: lab.sql_one(lab.leader_of(dc1), "SELECT count(*) FROM fence_rows") >= writer_rows)


def _own_epoch(lab: LabHandle, dc: Datacenter) -> Any:
    from federation.state import read_copy

    copy = read_copy(lab.topo, dc)
    return copy.state.epoch if copy.state else None
