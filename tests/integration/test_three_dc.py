"""The three-DC chain (dc3 cascades from dc2, dc2 from dc1): switchovers through every DC and back keep the
declared links; switchover to the middle, DR to the far end; rejoining the lost DCs one at a time brings the
declared shape back."""

from __future__ import annotations

import json

from federation import patroni_api
from federation.cascade import reroot
from federation.lab.lab import lab_kill, lab_start
from federation.progress import Progress
from federation.state import current_state
from tests.integration.labkit import LabHandle, Writer, eventually, fedctl, wait_for_no_lease


def running_upstreams(lab: LabHandle, dcs: tuple[str, ...] = ("dc1", "dc2", "dc3")) -> dict[str, str | None]:
    """Which DC each DC's leader streams from by its running Patroni config (standby_cluster host)."""
    owner = {m.host: dc.name for dc, m in lab.topo.members()}
    found: dict[str, str | None] = {}
    for name in dcs:
        section = patroni_api.get_config(lab.leader_of(lab.dc(name))).get("standby_cluster")
        found[name] = owner.get(str(section["host"]).split(",")[0]) if section else None
    return found


def assert_shape(lab: LabHandle, want: dict[str, str | None], live: tuple[str, ...] = ("dc1", "dc2", "dc3")) -> None:
    st, _ = current_state(lab.topo)
    assert st.upstreams == want, f"record: {st.upstreams}, want {want}"
    eventually(f"the running Patroni configs of {', '.join(live)} match {want}",
               lambda: running_upstreams(lab, live) == {dc: want[dc] for dc in live}, timeout=30)


def test_switchovers_through_every_dc_keep_the_declared_links(three_dc_lab: LabHandle) -> None:
    lab = three_dc_lab
    declared = {"dc1": None, "dc2": "dc1", "dc3": "dc2"}
    assert_shape(lab, declared)
    writer = Writer(lab, table="shape_rows").start()
    eventually("the writer commits", lambda: len(writer.acked) > 30, timeout=20)
    for target in ("dc2", "dc3", "dc1"):
        done = fedctl(lab, "switchover-dc", target, "--yes", "--format", "json")
        assert done.returncode == 0, done.stderr + done.stdout
        report = json.loads(done.stdout)
        assert report["upstreams_after"] == reroot(lab.topo, target) and report["temporary_links"] == []
        count = len(writer.acked)
        eventually(f"the writer commits on {target}", lambda c=count: len(writer.acked) > c + 30, timeout=20)
        assert_shape(lab, reroot(lab.topo, target))
        assert writer.missing_on(lab, lab.leader_of(lab.dc(target))) == [], f"an acknowledged commit lost ({target})"
    writer.stop()
    assert_shape(lab, declared)
    for member in (m for _dc, m in lab.topo.members()):
        eventually(f"{member.name} has every acknowledged row",
                   lambda m=member: writer.missing_on(lab, m) == [], timeout=30)


def test_switchover_to_the_middle_dc_then_promote_the_far_dc(three_dc_lab: LabHandle) -> None:
    lab = three_dc_lab
    epoch = current_state(lab.topo)[0].epoch
    writer = Writer(lab).start()
    eventually("the writer commits", lambda: len(writer.acked) > 30, timeout=20)
    done = fedctl(lab, "switchover-dc", "dc2", "--yes", "--format", "json")
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert report["switch_point"] == report["demotion_token"]["lsn"]
    count = len(writer.acked)
    eventually("the writer commits on dc2", lambda: len(writer.acked) > count + 30, timeout=20)
    writer.stop()
    st, _ = current_state(lab.topo)
    assert st.primary_dc == "dc2" and st.upstreams == {"dc1": "dc2", "dc2": None, "dc3": "dc2"}
    dc2_leader = lab.leader_of(lab.dc("dc2"))
    assert writer.missing_on(lab, dc2_leader) == []
    for dc in ("dc1", "dc3"):
        for member in lab.dc(dc).members:
            eventually(f"{member.name} streams with every row",
                       lambda m=member: lab.sql_one(m, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
                       and writer.missing_on(lab, m) == [], timeout=30)

    lab_kill(lab.topo, "dc1")
    lab_kill(lab.topo, "dc2")
    wait_for_no_lease(lab)
    promoted = fedctl(lab, "promote-dc", "dc3", "--yes", "--format", "json")
    assert promoted.returncode == 0, promoted.stderr + promoted.stdout
    dc3_leader = lab.leader_of(lab.dc("dc3"))
    assert lab.sql_one(dc3_leader, "SELECT pg_is_in_recovery()") is False
    lab.sql(dc3_leader, "INSERT INTO writer_rows (id) VALUES (-3)")
    other = next(m for m in lab.dc("dc3").members if m != dc3_leader)
    eventually("dc3's replica follows its promoted leader",
               lambda: lab.sql_one(other, "SELECT count(*) FROM writer_rows WHERE id = -3") == 1, timeout=30)
    st, _ = current_state(lab.topo)
    assert st.primary_dc == "dc3" and st.epoch == epoch + 2


def test_the_far_end_promoted_then_the_lost_dcs_rejoin_one_at_a_time(three_dc_lab: LabHandle) -> None:
    """After the test above dc3 is primary and dc1, dc2 are stopped; run alone, this gets there itself."""
    lab = three_dc_lab
    st, _ = current_state(lab.topo)
    if st.primary_dc != "dc3":
        lab_kill(lab.topo, "dc1")
        lab_kill(lab.topo, "dc2")
        wait_for_no_lease(lab)
        promoted = fedctl(lab, "promote-dc", "dc3", "--yes", "--format", "json")
        assert promoted.returncode == 0, promoted.stderr + promoted.stdout
    assert_shape(lab, {"dc1": "dc2", "dc2": "dc3", "dc3": None}, live=("dc3",))
    dc3_leader = lab.leader_of(lab.dc("dc3"))
    writer = Writer(lab, table="rejoin_rows").start()
    eventually("the writer commits on dc3", lambda: len(writer.acked) > 30, timeout=20)

    lab_start(lab.topo, "dc1", Progress(quiet=True))
    rejoined = fedctl(lab, "rejoin-dc", "dc1", "--yes", "--format", "json")
    assert rejoined.returncode == 0, rejoined.stderr + rejoined.stdout
    report = json.loads(rejoined.stdout)
    assert report["temporary_links"] == [{"dc": "dc1", "upstream": "dc3"}], "dc2 is still gone"
    assert_shape(lab, {"dc1": "dc3", "dc2": "dc3", "dc3": None}, live=("dc1", "dc3"))
    status = fedctl(lab, "status", "--format", "json")
    assert "`fedctl rejoin-dc dc2` restores it" in status.stdout

    lab_start(lab.topo, "dc2", Progress(quiet=True))
    rejoined = fedctl(lab, "rejoin-dc", "dc2", "--yes", "--format", "json")
    assert rejoined.returncode == 0, rejoined.stderr + rejoined.stdout
    assert json.loads(rejoined.stdout)["temporary_links"] == []
    assert_shape(lab, reroot(lab.topo, "dc3"))
    count = len(writer.acked)
    eventually("the writer goes on committing on dc3", lambda: len(writer.acked) > count + 30, timeout=20)
    writer.stop()
    assert writer.missing_on(lab, dc3_leader) == []
    for name in ("dc1", "dc2"):
        for member in lab.dc(name).members:
            eventually(f"{member.name} streams with every acknowledged row",
                       lambda m=member: lab.sql_one(m, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
                       and writer.missing_on(lab, m) == [], timeout=60)
    status = fedctl(lab, "status", "--format", "json")
    assert "temporary link" not in status.stdout
    slots = patroni_api.get_config(lab.leader_of(lab.dc("dc3"))).get("slots") or {}
    assert "fed_dc1" not in slots, "dc1's slot left the primary DC once dc1 follows dc2 again"
