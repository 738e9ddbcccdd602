"""`fedctl status` on a real two-DC lab: dc1 the primary DC, dc2 a standby cluster, each with its own etcd.

Each scenario restores what it broke, so the scenarios share one lab (its own addresses, 127.0.41-42.x).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.lab import dcs_servers
from federation.lab.lab import start_member
from federation.patroni_api import get_patroni, patch_config
from federation.state import current_state
from tests.integration.labkit import LabHandle, bug_lines, eventually, metrics_of, start_lab, stop_lab

pytestmark = pytest.mark.integration


# Every scenario on etcd in both DCs and on a mixed lab whose dc2 runs on ZooKeeper.
@pytest.fixture(scope="module", params=["status-two-dc", "status-mixed"])
def lab(request: pytest.FixtureRequest) -> Iterator[LabHandle]:
    handle = start_lab(request.param)
    root = handle.lab.layout.root
    try:
        yield handle
        bugs = bug_lines(handle)
    finally:
        stop_lab(handle)
        leftovers = _kill_leftovers(str(root))
    assert not bugs, "Patroni reported a BUG:\n" + "\n".join(bugs)
    assert not leftovers, f"lab_down left these processes of {root} running (killed now): {leftovers}"


def _kill_leftovers(root: str) -> list[str]:
    """SIGKILL, by PID, every process whose command line names this lab's own directory."""
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if root + "/" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
            killed.append(f"{proc.name}: {cmdline[:100]}")
    return killed


def run_status(lab: LabHandle, *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "federation", "status", "-t", str(lab.path), *args],
                          capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, elapsed


def status_json(lab: LabHandle) -> tuple[int, dict[str, Any]]:
    code, out, _ = run_status(lab, "--format", "json")
    return code, json.loads(out)


def healthy(lab: LabHandle) -> dict[str, Any] | None:
    code, data = status_json(lab)
    return data if code == 0 and data["healthy"] else None


def test_a_healthy_federation(lab: LabHandle) -> None:
    data = eventually("status exits 0 and reports healthy", lambda: healthy(lab), timeout=60)
    assert data["federation"] == lab.topo.federation and data["primary_dc"] == "dc1" and data["problems"] == []
    dc1, dc2 = data["datacenters"]
    assert (dc1["role"], dc1["upstream"], dc1["reachable"]) == ("primary", None, True)
    assert (dc2["role"], dc2["upstream"], dc2["reachable"]) == ("standby", "dc1", True)
    assert dc2["lag_bytes"] is not None and dc2["lag_seconds"] is not None
    roles = {m["name"]: m["role"] for dc in (dc1, dc2) for m in dc["members"]}
    assert roles[dc1["leader"]] == "leader" and roles[dc2["leader"]] == "standby_leader"
    assert sorted(roles.values()) == ["leader", "replica", "replica", "standby_leader"]
    for dc in (dc1, dc2):
        assert dc["timeline"] >= 1
        for member in dc["members"]:
            assert member["reachable"] and member["source"] == "api" and member["state"] in ("running", "streaming")
            assert member["lsn"].count("/") == 1 and isinstance(member["lsn_int"], int)
            assert member["lag_bytes"] is not None and member["timeline"] == dc["timeline"]
    assert dc2["standby_cluster"] is not None


def test_table_output_names_the_epoch_the_store_and_every_member(lab: LabHandle) -> None:
    """The table's content; its speed is bench/bench_status.py's to measure (a timed test only measures the
    machine's load)."""
    eventually("healthy", lambda: healthy(lab), timeout=60)
    code, out, elapsed = run_status(lab)
    assert code == 0, out
    lines = out.splitlines()
    # `fedctl store init` at lab up wrote the first record (epoch 0), so the title names its epoch.
    epoch = current_state(lab.topo)[0].epoch
    assert lines[0] == f"Federation {lab.topo.federation}: primary DC dc1 (epoch {epoch}, healthy)"
    assert any(line.startswith("Federation store: 3 of 3 members answer") for line in lines)
    assert sum(line.startswith("| dc") for line in lines) == 4
    assert any(line.startswith("dc2 (standby of dc1): ") for line in lines)
    print(f"fedctl status wall time: {elapsed:.3f} s")


def test_cross_dc_lag_grows_while_the_standby_dc_does_not_replay(lab: LabHandle) -> None:
    data = eventually("healthy", lambda: healthy(lab), timeout=60)
    dc1, dc2 = lab.dc("dc1"), lab.dc("dc2")
    writer = dc1.member(data["datacenters"][0]["leader"])
    standby_leader = dc2.member(data["datacenters"][1]["leader"])
    lab.sql(writer, "CREATE TABLE IF NOT EXISTS status_lag (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
    lab.sql(writer, "INSERT INTO status_lag DEFAULT VALUES")
    eventually("dc2 caught up", lambda: status_json(lab)[1]["datacenters"][1]["lag_bytes"] == 0, timeout=30)
    # Patroni resumes paused replay on PostgreSQL 14+ at its next loop unless the cluster is in maintenance.
    patch_config(standby_leader, {"pause": True})
    eventually("dc2 in maintenance mode", lambda: get_patroni(standby_leader).get("pause") is True, timeout=10)
    lab.sql(standby_leader, "SELECT pg_wal_replay_pause()")
    try:
        paused_at = time.monotonic()
        lab.sql(writer, "INSERT INTO status_lag SELECT FROM generate_series(1, 1000)")

        seen: list[tuple[int, dict[str, Any]]] = []

        def lagging() -> dict[str, Any] | None:
            code, data = status_json(lab)
            seen.append((code, data))
            dc = data["datacenters"][1]
            return dc if code == 0 and dc["lag_bytes"] and dc["lag_seconds"] is not None else None

        try:
            dc = eventually("dc2 shows lag in bytes and seconds", lagging, timeout=30)
        except AssertionError:
            raise AssertionError(f"last status: {json.dumps(seen[-1][1])}, exit code {seen[-1][0]}") from None
        assert dc["lag_bytes"] > 8192
        # Seconds since the last transaction dc2 replayed: the first insert, before the pause.
        assert dc["lag_seconds"] >= 0.0
        assert dc["lag_seconds"] <= time.monotonic() - paused_at + 60
    finally:
        lab.sql(standby_leader, "SELECT pg_wal_replay_resume()")
        patch_config(standby_leader, {"pause": False})
    eventually("dc2 caught up again", lambda: status_json(lab)[1]["datacenters"][1]["lag_bytes"] == 0, timeout=30)


def test_a_stopped_member_is_shown_unreachable_and_status_exits_1(lab: LabHandle) -> None:
    eventually("healthy", lambda: healthy(lab), timeout=60)
    dc1 = lab.dc("dc1")
    replica = next(m for m in dc1.members if lab.member_role(m) == "replica")
    lab.lab.layout.member(dc1, replica).patroni.stop(timeout=60)
    try:
        code, out, elapsed = run_status(lab)
        assert code == 1
        row = next(line for line in out.splitlines() if f"| {replica.name} " in line)
        assert "unreachable" in row
        assert f"dc1: {replica.name}: REST API unreachable" in out
        code, data = status_json(lab)
        member = next(m for m in data["datacenters"][0]["members"] if m["name"] == replica.name)
        assert code == 1 and member["reachable"] is False and data["healthy"] is False
        assert elapsed < 5.0
    finally:
        start_member(lab.lab, dc1, replica)
    eventually("healthy again after the member restarts", lambda: healthy(lab), timeout=90)


def test_a_dead_dcs_is_reported_quickly_and_members_still_shown(lab: LabHandle) -> None:
    eventually("healthy", lambda: healthy(lab), timeout=60)
    dc2 = lab.dc("dc2")
    for host, proc, _dir in dcs_servers.server_processes(lab.lab.layout, dc2):
        if not proc.running():
            pytest.fail(f"the lab cannot see its {dc2.dcs.kind} at {host} (pid file {proc.pidfile}, marker "
                        f"{proc.marker!r} not in its command line), so it cannot kill it")
        proc.kill()
    try:
        code, out, elapsed = run_status(lab, "--format", "json")
        data = json.loads(out)
        dc = data["datacenters"][1]
        assert code == 1 and not dc["reachable"]
        kind = "etcd" if dc2.dcs.kind == "etcd3" else "ZooKeeper"
        assert dc["error"].startswith(f"{kind} at {dc2.dcs.hosts[0]} (dc2) is unreachable: connection refused")
        assert {m["name"] for m in dc["members"]} == {"n3", "n4"}
        assert all(m["reachable"] for m in dc["members"]), "Patroni's REST API still answers without its DCS"
        assert data["datacenters"][0]["reachable"] and data["primary_dc"] == "dc1"
        assert elapsed < 3.0, f"status took {elapsed:.2f} s with a dead DCS"
    finally:
        dcs_servers.start_dcs(lab.lab.layout, dc2, lab.lab.user)
        eventually("dc2's DCS answers again", lambda: dcs_servers.dcs_healthy(dc2), timeout=30)
    eventually("healthy again after the DCS restarts", lambda: healthy(lab), timeout=90)


def gate_states(data: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    """member -> (agent, gate state) from `fedctl status --format json`."""
    return {m["name"]: (m["agent"], (m["gate"] or {}).get("state")) for dc in data["datacenters"]
            for m in dc["members"]}


def test_every_member_of_the_lab_has_its_agent_and_the_promotion_gate(lab: LabHandle) -> None:
    data = eventually("healthy", lambda: healthy(lab), timeout=60)
    assert gate_states(data) == {m.name: ("running", "installed") for _dc, m in lab.topo.members()}
    code, out, _ = run_status(lab)
    rows = [line for line in out.splitlines() if line.startswith("| dc")]
    assert code == 0 and len(rows) == 4 and all(line.rstrip(" |").endswith("installed") for line in rows), out
    for _dc, member in lab.topo.members():
        assert metrics_of(member)["fedctl_agent_gate_installed"] == 1


def test_a_member_without_the_gate_line_is_a_problem_and_blocks_a_switchover(lab: LabHandle) -> None:
    """The gate line is taken out of one dc2 member's patroni.yml (Patroni itself is not reloaded, so it keeps
    its gate meanwhile), and put back."""
    import yaml

    eventually("healthy", lambda: healthy(lab), timeout=60)
    dc2 = lab.dc("dc2")
    member = dc2.members[-1]
    config = lab.lab.layout.member(dc2, member).patroni_config
    original = config.read_text()
    without = yaml.safe_load(original)
    del without["postgresql"]["pre_promote"]
    epoch = current_state(lab.topo)[0].epoch
    config.write_text(yaml.safe_dump(without, sort_keys=False))  # in place: owner and mode stay
    try:
        def missing() -> dict[str, Any] | None:
            code, data = status_json(lab)
            return data if code == 1 and gate_states(data)[member.name] == ("running", "missing") else None

        data = eventually(f"status shows {member.name}'s gate missing", missing, timeout=15)
        problem = next(p for p in data["datacenters"][1]["problems"] if p.startswith(f"{member.name}:"))
        assert "pre_promote" in problem and "gate pre-promote" in problem and "--dc dc2" in problem
        assert metrics_of(member)["fedctl_agent_gate_installed"] == 0

        for extra in (["--dry-run"], []):
            done = subprocess.run([sys.executable, "-m", "federation", "switchover-dc", "dc2", "-t", str(lab.path),
                                   "--yes", *extra], capture_output=True, text=True, timeout=60)
            assert done.returncode == 1, done.stdout + done.stderr
            assert "cannot be shown to run the promotion gate" in done.stderr and member.name in done.stderr
            assert "Traceback" not in done.stderr
        state = current_state(lab.topo)[0]
        assert (state.epoch, state.primary_dc, state.operation) == (epoch, "dc1", None), "nothing was changed"
    finally:
        config.write_text(original)
    eventually("healthy again with the gate line back", lambda: healthy(lab), timeout=30)
