"""The read-write backend `fedctl entrypoint haproxy` renders, run by a real HAProxy against stand-in agents.

What a switchover needs from it: the old primary is out of the backend before the new one is in. Patroni
reports a demoting primary's role as "primary" until its postmaster has exited, so its agent answers 404
(draining) while PostgreSQL stops, 503 once Patroni says it is demoted. These tests drive the codes by hand
and watch HAProxy's own view (`show stat`); the agents' verdicts: tests/unit/test_entrypoints.py; the whole
switchover under clients: tests/integration/test_entrypoints.py. No lab: HAProxy and Python HTTP servers on
addresses of their own (127.0.77.x).
"""

from __future__ import annotations

import http.server
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from federation.entrypoints import render_haproxy
from federation.lab.haproxy import STAT_STATUS, stat_rows
from federation.topology import Topology, parse_topology

pytestmark = pytest.mark.timeout(60)
TOPOLOGY = Path(__file__).parent / "topologies" / "entry-two-dc.yaml"
CHECK_FAILURES = 21  # the chkfail column of `show stat`


@dataclass
class Agents:
    """One stand-in agent per member: GET /primary answers the code set for it."""

    codes: dict[str, int]
    servers: list[http.server.ThreadingHTTPServer] = field(default_factory=list)


def _topology() -> Topology:
    data = yaml.safe_load(TOPOLOGY.read_text())
    data.pop("agent_api")  # plain checks: the stand-ins serve http
    data.pop("patroni_api")
    for d, dc in enumerate(data["datacenters"], start=1):
        for i, member in enumerate(dc["members"], start=1):
            member["host"] = f"127.0.77.{10 * d + i}"
            member["api"] = f"127.0.77.{10 * d + i}:8008"
    return parse_topology(data, str(TOPOLOGY))


def _serve(agents: Agents, name: str, host: str, port: int) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(agents.codes[name])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    agents.servers.append(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def _rows(sock_path: Path) -> dict[str, list[str]]:
    return stat_rows(sock_path, "fed_primary")


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[tuple[Agents, Path]]:
    topo = _topology()
    agents = Agents({f"{dc.name}_{m.name}": 503 for dc, m in topo.members()})
    agents.codes["dc1_n1"] = 200
    for dc, member in topo.members():
        _serve(agents, f"{dc.name}_{member.name}", member.host, member.api.port + 100)
    sock_path = tmp_path / "stats.sock"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy(topo, read_write_bind="127.0.77.1:7000", read_only_bind="127.0.77.1:7001",
                                  stats_socket=str(sock_path)))
    proc = subprocess.Popen(["haproxy", "-W", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: sock_path.exists() and _up(sock_path) == {"dc1_n1"}, "dc1_n1 UP alone", proc)
        yield agents, sock_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for server in agents.servers:
            server.shutdown()
            server.server_close()


def _wait_for(cond: Callable[[], bool], what: str, proc: subprocess.Popen[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"haproxy exited: {proc.stderr.read() if proc.stderr else ''}"
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"HAProxy never showed {what} within {timeout} s")


def _up(sock_path: Path) -> set[str]:
    """The servers HAProxy sends new connections to: UP, or UP and going down after a failed check."""
    return {name for name, row in _rows(sock_path).items() if row[STAT_STATUS].startswith("UP")}


def _watch(sock_path: Path, server: str, until: str, timeout: float = 5) -> list[str]:
    """`server`'s distinct statuses, every 10 ms, until one starts with `until`."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _rows(sock_path)[server][STAT_STATUS]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status.startswith(until):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"{server} never reached {until} within {timeout} s: {seen}")


def test_a_draining_primary_is_out_at_its_next_check_without_a_failed_one(haproxy: tuple[Agents, Path]) -> None:
    agents, sock_path = haproxy
    failures = int(_rows(sock_path)["dc1_n1"][CHECK_FAILURES])
    agents.codes["dc1_n1"] = 404
    seen = _watch(sock_path, "dc1_n1", "NOLB")
    assert seen[0].startswith("UP") and seen[-1].startswith("NOLB") and len(seen) == 2, seen
    assert int(_rows(sock_path)["dc1_n1"][CHECK_FAILURES]) == failures, "the drain took a failed check"
    assert _up(sock_path) == set()  # no server takes new connections: nobody writes to a stopping primary
    agents.codes["dc1_n1"] = 503  # Patroni: demoted
    assert _watch(sock_path, "dc1_n1", "DOWN")[-1].startswith("DOWN")


def test_a_drained_primary_that_turns_demoted_never_takes_connections_again(haproxy: tuple[Agents, Path]) -> None:
    agents, sock_path = haproxy
    agents.codes["dc1_n1"] = 404  # its PostgreSQL stops
    _watch(sock_path, "dc1_n1", "NOLB")
    agents.codes["dc1_n1"] = 503  # Patroni: demoted
    agents.codes["dc2_n3"] = 200  # promoted
    samples: list[set[str]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not samples or samples[-1] != {"dc2_n3"}):
        samples.append(_up(sock_path))
        time.sleep(0.01)
    assert samples and samples[-1] == {"dc2_n3"}, samples
    assert all(up <= {"dc2_n3"} for up in samples), samples  # dc1_n1 went from NOLB to DOWN, never UP
    assert _rows(sock_path)["dc1_n1"][STAT_STATUS].startswith(("DOWN", "NOLB"))
