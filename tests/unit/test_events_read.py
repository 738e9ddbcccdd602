"""`fedctl events`: since, merge, de-duplication and follow over fake sources, and the command's output and exit."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from federation import events_read
from federation.cli import cli
from federation.errors import BadInput
from federation.events_read import (
    FOLLOW_OVERLAP,
    Event,
    EventFollower,
    Source,
    SourceAnswer,
    merge,
    operation_event,
    parse_since,
    read_sources,
)
from federation.state import HistoryEntry
from tests.unit.test_agent_decide import TOPOLOGY

NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOON + timedelta(seconds=seconds)


def event(seconds: float, kind: str = "repoint", who: str = "dc2/n3", sentence: str | None = None) -> Event:
    dc, member = who.split("/")
    return Event(at(seconds), dc, member, kind, sentence or f"{kind} at {seconds}")


class FakeSource:
    """A source whose events the test sets; it answers `since` as an agent does (inclusive)."""

    def __init__(self, name: str, events: Sequence[Event] = (), error: str | None = None) -> None:
        self.name, self.events, self.error = name, list(events), error
        self.asked: list[datetime | None] = []

    def __call__(self, since: datetime | None) -> SourceAnswer:
        self.asked.append(since)
        if self.error:
            return SourceAnswer(self.name, error=self.error)
        return SourceAnswer(self.name, [e for e in self.events if since is None or e.time >= since])

    @property
    def source(self) -> Source:
        return Source(self.name, self)


def test_since_is_a_duration_back_from_now_or_an_iso_time() -> None:
    assert parse_since("5m", NOON) == NOON - timedelta(minutes=5)
    assert parse_since("90s", NOON) == NOON - timedelta(seconds=90)
    assert parse_since("1d", NOON) == NOON - timedelta(days=1)
    assert parse_since("2026-01-01T11:00:00Z", NOON) == NOON - timedelta(hours=1)
    assert parse_since("2026-01-01T11:00:00", NOON) == NOON - timedelta(hours=1)  # naive counts as UTC
    with pytest.raises(BadInput, match="neither a duration"):
        parse_since("yesterday", NOON)


def test_merge_orders_by_time_across_sources_and_keeps_a_duplicate_once() -> None:
    a = [event(1, who="dc1/n1"), event(5, who="dc1/n1")]
    b = [event(3, "lease_taken", who="dc2/n3"), event(1, who="dc1/n1")]  # the same event, twice
    merged = merge([a, b])
    assert [(e.time, e.member) for e in merged] == [(at(1), "n1"), (at(3), "n3"), (at(5), "n1")]


def test_events_from_json_are_lenient() -> None:
    good = Event.from_json_dict({"time": "2026-01-01T12:00:00.000+00:00", "dc": "dc1", "member": "n1",
                                 "kind": "fence", "sentence": "fenced dc1", "reason": "lease"})
    assert good is not None and good.details == {"reason": "lease"} and good.time == NOON
    for bad in ({"time": "noon", "kind": "fence", "sentence": "x"}, {"time": "2026-01-01T12:00:00"}, [], "x"):
        assert Event.from_json_dict(bad) is None
    assert good.to_json_dict()["time"] == "2026-01-01T12:00:00.000+00:00"


def test_an_operation_of_the_history_is_an_event() -> None:
    entry = HistoryEntry(epoch=7, time="2026-01-01T12:00:00.000+00:00", operation="switchover-dc", source="dc1",
                         target="dc2", outcome="done", seconds=12.34)
    e = operation_event(entry)
    assert e is not None and (e.kind, e.dc, e.member) == ("operation", "dc2", "fedctl")
    assert e.sentence == "switchover-dc dc1 -> dc2: done in 12.3 s (epoch 7)" and e.details["epoch"] == 7


def test_a_slow_or_broken_source_is_reported_and_the_others_still_read() -> None:
    hang = threading.Event()

    def slow(_since: datetime | None) -> SourceAnswer:
        hang.wait(5)
        return SourceAnswer("slow")

    def broken(_since: datetime | None) -> SourceAnswer:
        raise RuntimeError("boom")

    good = FakeSource("dc1/n1", [event(1)])
    try:
        answers = read_sources([Source("dc2/n3", slow), Source("dc2/n4", broken), good.source], None, 0.3)
    finally:
        hang.set()
    by_name = {a.source: a for a in answers}
    assert by_name["dc2/n3"].error == "no answer within 0.3 s" and by_name["dc2/n4"].error == "boom"
    assert by_name["dc1/n1"].answered and [e.time for e in by_name["dc1/n1"].events] == [at(1)]


def test_a_follow_returns_only_new_events_and_asks_with_an_overlap() -> None:
    n1 = FakeSource("dc1/n1", [event(1, who="dc1/n1"), event(2, who="dc1/n1")])
    n3 = FakeSource("dc2/n3", [event(4)])
    follower = EventFollower([n1.source, n3.source], at(0))
    first = follower.poll()
    assert [e.time for e in first.events] == [at(1), at(2), at(4)] and first.silent == []
    assert follower.poll().events == []  # nothing new: nothing printed twice
    n1.events.append(event(6, who="dc1/n1"))
    n3.events.append(event(3.5, "lease_taken"))  # its clock is behind: still before the newest seen
    again = follower.poll()
    assert [(e.time, e.kind) for e in again.events] == [(at(3.5), "lease_taken"), (at(6), "repoint")]
    assert n1.asked[-1] == at(0)  # the overlap reaches back beyond --since: --since wins


def test_without_since_a_follow_asks_from_the_newest_seen_less_the_overlap() -> None:
    n1 = FakeSource("dc1/n1", [event(100, who="dc1/n1")])
    follower = EventFollower([n1.source], None)
    follower.poll()
    follower.poll()
    assert n1.asked == [None, at(100) - FOLLOW_OVERLAP]


def test_a_follow_never_goes_back_before_since() -> None:
    n1 = FakeSource("dc1/n1", [event(-10, who="dc1/n1"), event(1, who="dc1/n1")])
    follower = EventFollower([n1.source], at(0))
    assert [e.time for e in follower.poll().events] == [at(1)]
    assert follower.poll().events == [] and all(asked is not None and asked >= at(0) for asked in n1.asked)


def test_a_silent_source_is_in_every_poll_and_its_absence_does_not_stop_the_others() -> None:
    follower = EventFollower([FakeSource("dc1/n1", error="its agent does not answer").source,
                              FakeSource("dc2/n3", [event(1)]).source], None)
    poll = follower.poll()
    assert [a.source for a in poll.silent] == ["dc1/n1"] and len(poll.events) == 1


# ---- the command ------------------------------------------------------------------------------------------------

@pytest.fixture
def sources(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeSource]:
    now = datetime.now(UTC)
    fakes = {
        "dc1/n1": FakeSource("dc1/n1", [Event(now - timedelta(seconds=30), "dc1", "n1", "lease_released",
                                              "released the primary-DC lease of dc1")]),
        "dc2/n3": FakeSource("dc2/n3", [Event(now - timedelta(seconds=20), "dc2", "n3", "lease_taken",
                                              "took the primary-DC lease of dc2"),
                                        Event(now - timedelta(hours=3), "dc2", "n3", "repoint", "too old")]),
        "record": FakeSource("federation record", [Event(now - timedelta(seconds=25), "dc2", "fedctl", "operation",
                                                         "switchover-dc dc1 -> dc2: done")]),
    }
    monkeypatch.setattr(events_read, "event_sources", lambda *_a, **_k: [f.source for f in fakes.values()])
    return fakes


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["events", "-t", str(TOPOLOGY), *args])
    return result.exit_code, result.stdout, result.stderr


def test_the_command_prints_one_line_per_event_oldest_first_and_exits_0(sources: dict[str, FakeSource]) -> None:
    code, out, err = run("--since", "5m")
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert lines[0].split() == ["TIME", "DC/MEMBER", "KIND", "SENTENCE"]
    assert [line.split()[1:3] for line in lines[1:]] == [["dc1/n1", "lease_released"], ["dc2/fedctl", "operation"],
                                                         ["dc2/n3", "lease_taken"]]


def test_json_is_a_list_in_time_order(sources: dict[str, FakeSource]) -> None:
    code, out, _err = run("--since", "5m", "--format", "json")
    assert code == 0
    assert [e["kind"] for e in json.loads(out)] == ["lease_released", "operation", "lease_taken"]


def test_an_agent_that_does_not_answer_is_named_once_on_stderr_and_exits_1(
        sources: dict[str, FakeSource], monkeypatch: pytest.MonkeyPatch) -> None:
    sources["dc1/n1"].error = "its agent does not answer at http://127.0.31.11:8108: connection refused"
    polls = iter(range(3))

    def pace(_seconds: float) -> None:
        if next(polls) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the third poll

    monkeypatch.setattr("federation.cli.events.time.sleep", pace)
    code, out, err = run("--since", "5m", "--follow")
    assert code == 1
    assert err.count("dc1/n1: not read: its agent does not answer") == 1
    assert [line.split()[2] for line in out.splitlines()[1:]] == ["operation", "lease_taken"]  # each once


def test_a_since_that_is_no_time_is_bad_input(sources: dict[str, FakeSource]) -> None:
    code, _out, err = run("--since", "soon")
    assert code == 2 and "neither a duration" in err
