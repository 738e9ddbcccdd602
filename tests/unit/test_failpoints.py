"""Failpoints: inert unless armed, each action does what it says, a bad spec is refused by name."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from federation.errors import BadInput, OperationFailed
from federation.failpoints import CRASH_STATUS, ENV, FailpointPanic, armed, hit


def test_inert_unless_the_environment_arms_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert armed() == {}
    hit("switchover/before-promote")  # nothing happens
    monkeypatch.setenv(ENV, "promote/after-epoch=panic")
    hit("switchover/before-promote")  # another point: still nothing
    with pytest.raises(FailpointPanic):
        hit("promote/after-epoch")


def test_error_and_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "a/before-x=error; a/after-x=sleep(0.2)")
    assert armed() == {"a/before-x": "error", "a/after-x": "sleep(0.2)"}
    with pytest.raises(OperationFailed, match="failpoint a/before-x fired"):
        hit("a/before-x")
    started = time.monotonic()
    hit("a/after-x")
    assert time.monotonic() - started >= 0.2


def test_a_bad_spec_names_the_item(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "a/before-x=explode")
    with pytest.raises(BadInput, match="cannot parse 'a/before-x=explode'"):
        hit("a/before-x")


def test_crash_exits_at_once_without_running_finally_blocks() -> None:
    code = ("from federation.failpoints import hit\n"
            "try:\n    hit('p/before-s')\nfinally:\n    print('cleanup ran')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          env={ENV: "p/before-s=crash", "PATH": "/usr/bin:/bin"}, cwd=Path(__file__).parents[2])
    assert done.returncode == CRASH_STATUS
    assert "cleanup ran" not in done.stdout and "failpoint p/before-s: crash" in done.stderr
