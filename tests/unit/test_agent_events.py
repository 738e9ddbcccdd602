"""The agent's events log (agent/events.py) and GET /events, read by fedctl's client from a real agent API."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent import events as events_module
from agent.api import ApiServer, serve
from agent.daemon import Agent
from agent.events import EventLog, rotated
from agent.settings import agent_settings, default_events_file
from federation.events_read import read_agent_events
from federation.topology import Topology
from tests.unit.test_agent_gate import HOST, free_port, one_member_topology

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Wall:
    def __init__(self) -> None:
        self.now = NOON

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=250)
        return self.now


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_event_is_one_json_line_with_time_dc_member_kind_sentence_and_details(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, dc="dc1", member="n1", wall=Wall())
    log.emit("fence", "fenced dc1: lease not renewed", reason="lease not renewed", epoch=4)
    log.emit("unfence", "unfenced dc1", reason="lease held again", time="not mine", dc="not mine")
    assert log.flush()
    first, second = lines(path)
    assert first == {"time": "2026-01-01T12:00:00.250+00:00", "dc": "dc1", "member": "n1", "kind": "fence",
                     "sentence": "fenced dc1: lease not renewed", "reason": "lease not renewed", "epoch": 4}
    assert second["time"] == "2026-01-01T12:00:00.500+00:00" and second["dc"] == "dc1"  # details never override
    assert len(path.read_text().splitlines()) == 2
    assert log.read() == [first, second]
    log.close()


def test_the_file_rotates_to_dot_1_and_reading_spans_both(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, dc="dc1", member="n1", max_bytes=1000, wall=Wall())
    for i in range(30):
        log.emit("job", f"job {i} ok", name=f"j{i}")
    assert log.flush()
    assert path.stat().st_size <= 1000 and rotated(path).stat().st_size <= 1000
    kept = [e["name"] for e in log.read()]
    # Between max_bytes and twice that are kept: the newest events, in order, none of them twice.
    assert kept == [f"j{i}" for i in range(30 - len(kept), 30)] and len(kept) > 6
    assert not (tmp_path / "events.jsonl.2").exists()
    assert [e["name"] for e in log.read(limit=3)] == ["j27", "j28", "j29"]
    log.close()


def test_read_since_is_inclusive_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, dc="dc1", member="n1", wall=Wall())
    for kind in ("agent_active", "lease_taken", "repoint"):
        log.emit(kind, kind)
    assert log.flush()
    with open(path, "a") as out:
        out.write('{"time": "2026-01-01T12:00:09')  # a write cut short by a crash
    since = datetime(2026, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert [e["kind"] for e in log.read(since)] == ["lease_taken", "repoint"]
    log.close()


def test_an_unwritable_file_is_counted_logged_once_and_never_raised(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    counted: list[int] = []
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the directory should be")
    log = EventLog(blocked / "events.jsonl", dc="dc1", member="n1", on_error=lambda: counted.append(1))
    with caplog.at_level(logging.WARNING, logger="agent.events"):
        for _ in range(3):
            log.emit("fence", "fenced dc1")  # returns at once, never raises
        assert log.flush()
    assert len(counted) == 3 and log.errors == 3
    assert len([r for r in caplog.records if r.name == "agent.events"]) == 1
    assert log.read() == []
    log.close()


def test_a_stalled_disk_never_blocks_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stall = threading.Event()
    monkeypatch.setattr(events_module, "QUEUE_LIMIT", 2)
    log = EventLog(tmp_path / "events.jsonl", dc="dc1", member="n1")
    real_append = log._append

    def stalled(event: dict[str, object]) -> None:
        stall.wait(10)
        real_append(event)

    log._append = stalled  # type: ignore[method-assign]
    for i in range(6):
        log.emit("job", f"job {i}")  # the writer holds one, the queue two: the rest are counted, not waited for
    assert log.errors >= 3
    stall.set()
    assert log.flush()
    log.close()


def test_without_a_file_events_are_kept_in_memory() -> None:
    log = EventLog(None, dc="dc1", member="n1", wall=Wall())
    log.emit("agent_active", "took the agent lease")
    assert [e["kind"] for e in log.read()] == ["agent_active"]
    assert log.flush() and log.errors == 0


def test_the_default_file_is_in_the_systemd_state_directory_or_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/fedctl:/var/lib/other")
    assert default_events_file() == "/var/lib/fedctl/events.jsonl"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.chdir(tmp_path)
    assert default_events_file() == os.path.join(str(tmp_path), "events.jsonl")


# ---- GET /events on a real agent API, read by fedctl's client --------------------------------------------------

@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Topology, Agent]]:
    port = free_port()
    topo = one_member_topology(port)
    agent = Agent(agent_settings(topo, "dc2", "n3", f"{HOST}:{port}", events_file=str(tmp_path / "events.jsonl")))
    server: ApiServer = serve(agent, HOST, port)
    try:
        yield topo, agent
    finally:
        server.shutdown()
        server.server_close()
        agent.events.close()


def test_get_events_serves_the_log_oldest_first_from_since(served: tuple[Topology, Agent]) -> None:
    topo, agent = served
    agent.events._wall = Wall()
    for kind in ("agent_active", "lease_taken", "repoint"):
        agent.events.emit(kind, f"{kind} happened", to="dc1")
    assert agent.events.flush()
    dc = topo.dc("dc2")
    every = read_agent_events(dc, dc.member("n3"), None)
    assert every.answered and [e.kind for e in every.events] == ["agent_active", "lease_taken", "repoint"]
    assert {(e.dc, e.member) for e in every.events} == {("dc2", "n3")}
    assert every.events[2].details == {"to": "dc1"}
    # The client escapes "+00:00"; the time of the second event itself is included.
    later = read_agent_events(dc, dc.member("n3"), every.events[1].time)
    assert [e.kind for e in later.events] == ["lease_taken", "repoint"]


def test_get_events_refuses_a_since_that_is_no_time(served: tuple[Topology, Agent]) -> None:
    from federation.agent_gates import agent_get

    topo, _agent = served
    code, body = agent_get(topo.dc("dc2").member("n3"), "/events?since=yesterday")
    assert code == 400 and "ISO 8601" in json.loads(body)["error"]
    code, body = agent_get(topo.dc("dc2").member("n3"), "/events?since=2026-01-01T12:00:00+00:00")  # "+" unescaped
    assert code == 200 and json.loads(body) == []


def test_an_agent_that_does_not_answer_is_reported_not_raised() -> None:
    topo = one_member_topology(free_port())  # nobody listens there
    dc = topo.dc("dc2")
    answer = read_agent_events(dc, dc.member("n3"), None, timeout=0.5)
    assert not answer.answered and answer.source == "dc2/n3" and "does not answer" in (answer.error or "")


def test_a_recent_since_reads_only_the_current_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.jsonl"
    wall = Wall()
    log = EventLog(path, dc="dc1", member="n1", max_bytes=1000, wall=wall)
    for i in range(30):
        log.emit("job", f"job {i} ok", name=f"j{i}")
    assert log.flush()
    opened: list[str] = []
    real_read = events_module._read_lines

    def spy(p: Path, since: datetime | None = None) -> Iterator[dict[str, object]]:
        opened.append(p.name)
        yield from real_read(p, since)

    monkeypatch.setattr(events_module, "_read_lines", spy)
    newest = log.read(wall.now - timedelta(seconds=1))
    assert [e["name"] for e in newest] == ["j25", "j26", "j27", "j28", "j29"] and opened == ["events.jsonl"]
    opened.clear()
    assert len(log.read(NOON)) > 6 and opened == ["events.jsonl.1", "events.jsonl"]
    log.close()
