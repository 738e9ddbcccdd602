"""The demotion token from pg_control, against a real PostgreSQL 15: where fedctl computes a cleanly shut
down primary's WAL to end is where the server, started again as a standby, reports having replayed to.

A scratch cluster (verify-restore's, backup.scratch; no lab) is shut down with its last WAL record, the shutdown
checkpoint, placed inside a page, across a page header and across a segment's first page header (WAL
messages of a computed size move the insert point there first)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from backup.scratch import ScratchCluster
from federation.control_data import read_control_data
from federation.lab.layout import PG_BIN_DIR
from federation.lsn import format_lsn, parse_lsn
from federation.os_user import OsUser, chown_tree

pytestmark = pytest.mark.timeout(120)
PAGE = 8192
SEGMENT = 16 * 1024 * 1024


class Scratch:
    """verify-restore's scratch cluster (backup.scratch), made by initdb instead of a restore."""

    def __init__(self, cluster: ScratchCluster) -> None:
        self.cluster, self.data = cluster, cluster.data

    def sql(self, query: str) -> str:
        with self.cluster.connect() as conn:
            row = conn.execute(query).fetchone()
        assert row is not None
        return str(row[0])

    def start(self, standby: bool = False) -> None:
        signal = self.data / "standby.signal"
        if standby:
            signal.touch()
            chown_tree(signal, self.cluster.user)
        else:
            signal.unlink(missing_ok=True)
        self.cluster.start({})
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sql("SELECT 1")
                return
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, f"the scratch server did not start:\n{self.cluster.log_tail()}"
                time.sleep(0.05)

    def stop(self) -> None:
        """A fast shutdown, waited for: the server writes its shutdown checkpoint."""
        self.cluster.stop()
        assert not self.cluster.process.running()

    def insert_point(self) -> int:
        return parse_lsn(self.sql("SELECT pg_current_wal_insert_lsn()"))

    def move_insert_point_to(self, bytes_before: int, boundary: int) -> int:
        """Write WAL messages until the insert point lies `bytes_before` a multiple of `boundary`."""
        for _ in range(12):
            distance = (boundary - self.insert_point() % boundary - bytes_before) % boundary
            if distance == 0:
                return self.insert_point()
            # A message's record: 24 header + 5 data header + 24 message header + 2 prefix; a long one loses
            # 24 bytes a page to headers. Aim short, then close in.
            size = distance - distance // PAGE * 24 - 3000 if distance > 2 * PAGE else distance - 55
            size = size if size > 0 else distance + PAGE - 55
            self.sql(f"SELECT pg_logical_emit_message(false, 'p', repeat('x', {size}))")
        raise AssertionError(f"could not place the insert point {bytes_before} bytes before a {boundary} boundary")


@pytest.fixture(scope="module")
def scratch() -> Iterator[Scratch]:
    user = OsUser.named("postgres") if os.geteuid() == 0 else OsUser.current()
    base = Path(tempfile.mkdtemp(prefix="fedctl-controldata-"))
    base.chmod(0o755)
    cluster = ScratchCluster.create(base, "controldata", user, "postgres", PG_BIN_DIR)
    try:
        done = cluster.run_tool([str(PG_BIN_DIR / "initdb"), "-D", str(cluster.data), "-A", "trust", "-U",
                                 "postgres"], timeout=60)
        assert done.returncode == 0, done.stderr
        cluster.write_overrides()
        yield Scratch(cluster)
    finally:
        cluster.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(("bytes_before", "boundary"), [
    (400, PAGE),  # the record fits in its page
    (64, PAGE),  # it crosses into the next page, past a short header
    (48, SEGMENT),  # it crosses into the next segment, past a long header
])
def test_the_computed_wal_end_is_where_the_server_replays_its_shutdown_checkpoint_to(
        scratch: Scratch, bytes_before: int, boundary: int) -> None:
    scratch.start()
    if scratch.sql("SELECT pg_is_in_recovery()") == "t":
        scratch.sql("SELECT pg_promote()")
    running = read_control_data(str(scratch.data), str(PG_BIN_DIR))
    assert running.state == "in production" and running.wal_end() is None, "a running primary's WAL has no end"
    placed = scratch.move_insert_point_to(bytes_before, boundary)
    scratch.stop()
    data = read_control_data(str(scratch.data), str(PG_BIN_DIR))
    assert data.state == "shut down" and data.checkpoint == placed, (data, format_lsn(placed))
    end = data.wal_end()
    assert end is not None
    crosses = placed // PAGE != (end - 1) // PAGE
    assert crosses == (bytes_before < 114), f"the checkpoint at {format_lsn(placed)} ends at {format_lsn(end)}"
    scratch.start(standby=True)
    try:
        replayed = parse_lsn(scratch.sql("SELECT pg_last_wal_replay_lsn()"))
        assert format_lsn(end) == format_lsn(replayed)
        again = read_control_data(str(scratch.data), str(PG_BIN_DIR))
        assert again.state == "in archive recovery" and again.wal_end() is None, "running again: no token"
    finally:
        scratch.stop()


def test_the_agent_answers_the_token_of_its_member_from_the_data_dir_patroni_runs(scratch: Scratch) -> None:
    from agent.control_report import control_answer
    from agent.settings import agent_settings
    from federation.topology import load_topology

    patroni_yml = scratch.cluster.root / "patroni.yml"
    patroni_yml.write_text(f"postgresql:\n  data_dir: {scratch.data}\n  bin_dir: {PG_BIN_DIR}\n")
    topo = load_topology(Path(__file__).parent / "topologies" / "two-dc.yaml")
    settings = agent_settings(topo, "dc1", "n1", patroni_config=str(patroni_yml))
    scratch.start()
    try:
        assert control_answer(settings)["wal_end"] is None, "running: no token"
    finally:
        scratch.stop()
    answer = control_answer(settings)
    data = read_control_data(str(scratch.data), str(PG_BIN_DIR))
    assert answer == {"dc": "dc1", "member": "n1", "state": "shut down", "checkpoint": format_lsn(data.checkpoint),
                      "timeline": data.timeline, "system_identifier": data.system_identifier,
                      "wal_end": format_lsn(data.wal_end() or 0)}
