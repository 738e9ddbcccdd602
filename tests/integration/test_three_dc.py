"""The three-DC chain (dc3 cascades from dc2, dc2 from dc1): switchover to the middle, DR to the far end."""

from __future__ import annotations

import json

from federation.lab.lab import lab_kill
from federation.state import current_state
from tests.integration.labkit import LabHandle, Writer, eventually, fedctl, wait_for_no_lease


def test_switchover_to_the_middle_dc_then_promote_the_far_dc(three_dc_lab: LabHandle) -> None:
    lab = three_dc_lab
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
    assert st.primary_dc == "dc3" and st.epoch == 2
