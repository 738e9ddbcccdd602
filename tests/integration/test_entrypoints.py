"""Scenario: an application connected only through HAProxy keeps writing through `switchover-dc dc2`.

Runs on its own lab (entry-two-dc: 127.0.51.x / 127.0.52.x). The lab starts HAProxy but not the
agents yet, so the test starts them (their GET /primary is HAProxy's read-write check).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.entrypoints import default_binds
from federation.lab.agents import start_agents, stop_agents
from federation.lab.haproxy import stats_socket
from tests.integration.labkit import LabHandle, Writer, bug_lines, eventually, fedctl, start_lab, stop_lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def entry_lab() -> Iterator[LabHandle]:
    handle = start_lab("entry-two-dc")
    try:
        for dc in handle.topo.datacenters:
            start_agents(handle.lab, dc)
        yield handle
    finally:
        for dc in handle.topo.datacenters:
            stop_agents(handle.lab, dc)
        bugs = bug_lines(handle)
        stop_lab(handle)
    assert not bugs, "Patroni reported a BUG:\n" + "\n".join(bugs)


def up_servers(sock_path: Path, backend: str = "fed_primary") -> set[str]:
    """The servers HAProxy currently sends `backend`'s connections to (its health check passes)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(sock_path))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    up = set()
    for line in data.decode().splitlines()[1:]:
        fields = line.split(",")
        if (len(fields) > 17 and fields[0] == backend and fields[1] not in ("BACKEND", "FRONTEND")
                and fields[17].startswith("UP")):
            up.add(fields[1])
    return up


class UpSampler:
    """Samples the read-write backend's UP servers every 50 ms, in the background."""

    def __init__(self, sock_path: Path) -> None:
        self.sock_path = sock_path
        self.samples: list[set[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.samples.append(up_servers(self.sock_path))
            except OSError:
                pass

    def __enter__(self) -> UpSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_a_client_through_haproxy_keeps_writing_through_a_dc_switchover(entry_lab: LabHandle) -> None:
    lab = entry_lab
    sock_path = stats_socket(lab.lab.layout)
    dc1_leader, dc2_leader = lab.leader_of(lab.dc("dc1")), lab.leader_of(lab.dc("dc2"))
    eventually("HAProxy sends writes only to dc1's leader",
               lambda: up_servers(sock_path) == {f"dc1_{dc1_leader.name}"}, timeout=60)

    status = json.loads(fedctl(lab, "status", "--format", "json").stdout)
    binds = default_binds(lab.topo)
    assert status["entrypoints"] == {"read_write": binds.read_write, "read_only": binds.read_only}

    writer = Writer(lab, table="entry_rows")
    host, port = binds.read_write.rsplit(":", 1)
    writer.dsn = (f"host={host} port={port} user=postgres password={lab.password()} dbname=postgres "
                  "connect_timeout=1")
    with UpSampler(sock_path) as sampler:
        writer.start()
        eventually("the writer commits through HAProxy", lambda: len(writer.acked) >= 20)
        started = time.monotonic()
        done = fedctl(lab, "switchover-dc", "dc2", "--yes")
        switch_seconds = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        before = len(writer.acked)
        eventually("the writer commits again after the switchover", lambda: len(writer.acked) >= before + 20,
                   timeout=60)
        writer.stop()
        eventually("HAProxy sends writes only to dc2's leader",
                   lambda: up_servers(sock_path) == {f"dc2_{dc2_leader.name}"}, timeout=30)

    outage = writer.longest_gap()
    print(f"\nentrypoint: {len(writer.acked)} commits acknowledged, {writer.errors} failed attempts; "
          f"switchover-dc took {switch_seconds:.2f} s; client-visible write outage through HAProxy {outage:.2f} s")
    assert writer.acked[-1][1] > started + switch_seconds  # it wrote after the switchover, through HAProxy
    assert writer.missing_on(lab, dc2_leader) == []

    # The check passed on one member at a time, only on each DC's leader while it was the primary DC's,
    # and never went back to dc1 once dc2 had taken over.
    assert sampler.samples and all(len(up) <= 1 for up in sampler.samples)
    seen = [next(iter(up)) for up in sampler.samples if up]
    assert set(seen) <= {f"dc1_{dc1_leader.name}", f"dc2_{dc2_leader.name}"}
    first_dc2 = seen.index(f"dc2_{dc2_leader.name}")
    assert all(name.startswith("dc2_") for name in seen[first_dc2:])
    for dc, member in lab.topo.members():
        if dc.name == "dc1":  # now the standby DC: its agents must refuse the read-write check
            code = _agent_primary_code(member.host, member.api.port + 100)
            assert code == 503, f"/primary on standby-DC member {member.name} answered {code}"


def _agent_primary_code(host: str, port: int) -> int:
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{host}:{port}/primary", timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
