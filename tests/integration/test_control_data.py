"""The demotion token from pg_control, against a real PostgreSQL 15: where fedctl computes a cleanly shut
down primary's WAL to end is where the server, started again as a standby, reports having replayed to.

A scratch cluster (no lab: a Unix socket only) is shut down with its last WAL record, the shutdown
checkpoint, placed inside a page, across a page header and across a segment's first page header (WAL
messages of a computed size move the insert point there first)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.control_data import read_control_data
from federation.lab.layout import PG_BIN_DIR
from federation.lsn import format_lsn, parse_lsn
from federation.os_user import OsUser, as_user, chown_tree, user_env

pytestmark = pytest.mark.timeout(120)
PAGE = 8192
SEGMENT = 16 * 1024 * 1024
PORT = "25431"


class Scratch:
    def __init__(self, root: Path, user: OsUser) -> None:
        self.root, self.user, self.data = root, user, root / "data"

    def run(self, *argv: str) -> str:
        done = subprocess.run(as_user(self.user, argv), capture_output=True, text=True, env=user_env(self.user),
                              cwd=self.root, timeout=60, check=False)
        assert done.returncode == 0, f"{argv[0]} failed: {done.stderr}"
        return done.stdout.strip()

    def sql(self, query: str) -> str:
        return self.run(str(PG_BIN_DIR / "psql"), "-h", str(self.root), "-p", PORT, "-XAtc", query, "postgres")

    def start(self, standby: bool = False) -> None:
        signal = self.data / "standby.signal"
        if standby:
            signal.touch()
            chown_tree(signal, self.user)
        else:
            signal.unlink(missing_ok=True)
        self.run(str(PG_BIN_DIR / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "log"), "-o",
                 f"-p {PORT} -k {self.root} -c listen_addresses='' -c wal_level=replica", "start")

    def stop(self) -> None:
        self.run(str(PG_BIN_DIR / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

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
    root = Path(tempfile.mkdtemp(prefix="fedctl-controldata-"))
    chown_tree(root, user)
    cluster = Scratch(root, user)
    try:
        cluster.run(str(PG_BIN_DIR / "initdb"), "-D", str(cluster.data), "-A", "trust", "-U", "postgres")
        yield cluster
    finally:
        subprocess.run(as_user(user, [str(PG_BIN_DIR / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate",
                                      "stop"]), capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


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

    patroni_yml = scratch.root / "patroni.yml"
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
