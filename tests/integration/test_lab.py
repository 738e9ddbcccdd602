"""The lab itself: a real two-DC federation, replication across the DCs, a clean shutdown."""

from __future__ import annotations

import subprocess
import sys

from federation.lab.lab import lab_processes
from tests.integration.labkit import LabHandle, eventually


def test_rows_written_on_dc1_appear_on_every_dc2_member(clean_two_dc: LabHandle) -> None:
    lab = clean_two_dc
    primary = lab.leader_of(lab.dc("dc1"))
    lab.sql(primary, "CREATE TABLE IF NOT EXISTS lab_rows (id int PRIMARY KEY, note text)")
    lab.sql(primary, "INSERT INTO lab_rows SELECT g, 'row ' || g FROM generate_series(1, 1000) g "
                     "ON CONFLICT DO NOTHING")
    for member in lab.dc("dc2").members:
        eventually(f"1000 rows on {member.name}",
                   lambda m=member: lab.sql_one(m, "SELECT count(*) FROM lab_rows") == 1000, timeout=20)
        assert lab.sql_one(member, "SELECT pg_is_in_recovery()") is True


def test_standby_dc_streams_through_its_permanent_slot(clean_two_dc: LabHandle) -> None:
    lab = clean_two_dc
    primary = lab.leader_of(lab.dc("dc1"))
    slot = lab.dc("dc2").slot_name
    active = eventually(f"slot {slot} active on {primary.name}", lambda: lab.sql_one(
        primary, "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)), timeout=20)
    assert active is True
    standby_leader = lab.leader_of(lab.dc("dc2"))
    assert lab.member_role(standby_leader) == "standby_leader"
    assert lab.sql_one(standby_leader, "SELECT status FROM pg_stat_wal_receiver") == "streaming"


def test_data_checksums_are_on(clean_two_dc: LabHandle) -> None:
    for _dc, member in clean_two_dc.topo.members():
        assert clean_two_dc.sql_one(member, "SHOW data_checksums") == "on"


def test_dsn_reaches_the_primary(clean_two_dc: LabHandle) -> None:
    dsn = subprocess.run([sys.executable, "-m", "federation", "lab", "dsn", "-t", str(clean_two_dc.path)],
                         check=True, capture_output=True, text=True).stdout.strip()
    import psycopg

    password = clean_two_dc.topo.credentials.superuser.password.resolve()
    assert password not in dsn and "passfile=" in dsn, "the password stays in the lab's pgpass file"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)


def test_lab_up_again_is_quick_and_changes_nothing(clean_two_dc: LabHandle) -> None:
    before = lab_processes(clean_two_dc.topo)
    done = subprocess.run([sys.executable, "-m", "federation", "lab", "up", "-t", str(clean_two_dc.path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert lab_processes(clean_two_dc.topo) == before
