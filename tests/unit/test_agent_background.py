"""The agent's background action: one at a time, the caller never waits for it, its outcome is kept."""

from __future__ import annotations

import threading

from agent.background import Background, Finished


def test_one_action_at_a_time_and_the_caller_does_not_wait() -> None:
    release = threading.Event()
    done: list[Finished] = []
    runner = Background()
    assert runner.try_run("rejoin-dc dc1", lambda: "rejoined" if release.wait(10) else None, done.append)
    assert runner.running() is not None and runner.running()[0] == "rejoin-dc dc1"  # type: ignore[index]
    assert not runner.try_run("rejoin-dc dc1", lambda: "second"), "a second action must wait its turn"
    assert runner.status()["running"]["action"] == "rejoin-dc dc1"
    release.set()
    assert runner.wait(10)
    assert runner.running() is None and done[0].outcome == "rejoined" and done[0].error is None
    assert runner.status()["last"]["outcome"] == "rejoined"


def test_a_failing_action_is_reported_and_the_runner_stays_usable() -> None:
    done: list[Finished] = []
    runner = Background()

    def boom() -> str:
        raise RuntimeError("pg_rewind failed\nmore detail")

    runner.try_run("rejoin-dc dc1", boom, done.append)
    assert runner.wait(10)
    assert done[0].error == "pg_rewind failed" and runner.status()["last"]["error"] == "pg_rewind failed"
    assert runner.try_run("rejoin-dc dc1", lambda: "ok")
    assert runner.wait(10) and runner.last is not None and runner.last.outcome == "ok"


def test_it_tells_whether_an_action_ended_after_a_given_moment() -> None:
    now = [100.0]
    runner = Background(clock=lambda: now[0])
    assert not runner.ended_after(0.0), "nothing has run yet"
    release = threading.Event()
    runner.try_run("rejoin-dc dc1", lambda: "ok" if release.wait(10) else None)
    now[0] = 105.0
    release.set()
    assert runner.wait(10)
    assert runner.ended_after(104.0), "a look begun at 104 saw the action still running"
    assert not runner.ended_after(106.0), "a look begun after the end is fresh"
