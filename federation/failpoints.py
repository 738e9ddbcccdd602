"""Failpoints for tests, in the style of etcd's gofail: named points where fedctl can be made to fail.

Inert unless the environment sets FEDCTL_FAILPOINTS, a `;`-separated list of `name=action`:
  crash     exit at once with status 86, as a SIGKILL would (no cleanup, no `finally`)
  panic     raise FailpointPanic, a BaseException nothing in fedctl catches (unit tests' crash)
  error     raise OperationFailed naming the failpoint (an ordinary, reported failure)
  sleep(S)  sleep S seconds (a slow step; widens a race window)
e.g. FEDCTL_FAILPOINTS='switchover/before-promote=crash'. For developers and tests only.

Every operation step has two points, `<operation>/before-<step>` (after the record says the step is
next, before it acts) and `<operation>/after-<step>` (after it acted, before it is verified).
"""

from __future__ import annotations

import os
import re
import sys
import time
from functools import lru_cache

from federation.errors import BadInput, OperationFailed

ENV = "FEDCTL_FAILPOINTS"
CRASH_STATUS = 86
_SLEEP = re.compile(r"sleep\((\d+(?:\.\d+)?)\)")


class FailpointPanic(BaseException):
    """A failpoint's `panic`: unwinds like a crash that nothing catches."""


@lru_cache(maxsize=8)
def _parse(spec: str) -> dict[str, str]:
    points: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        name, sep, action = item.partition("=")
        action = action.strip()
        if not sep or not name.strip() or not (action in ("crash", "panic", "error") or _SLEEP.fullmatch(action)):
            raise BadInput(f"{ENV}: cannot parse {item!r}",
                           hint="write name=crash|panic|error|sleep(SECONDS), separated by ';'")
        points[name.strip()] = action
    return points


def armed() -> dict[str, str]:
    """The failpoints the environment arms (empty when FEDCTL_FAILPOINTS is unset)."""
    spec = os.environ.get(ENV, "")
    return _parse(spec) if spec else {}


def hit(name: str) -> None:
    """Pass the failpoint `name`: nothing happens unless the environment arms it."""
    action = armed().get(name) if ENV in os.environ else None
    if action is None:
        return
    if action == "crash":
        sys.stdout.flush()
        sys.stderr.write(f"failpoint {name}: crash\n")
        sys.stderr.flush()
        os._exit(CRASH_STATUS)
    if action == "panic":
        raise FailpointPanic(name)
    if action == "error":
        raise OperationFailed(f"failpoint {name} fired", hint=f"unset {ENV}")
    match = _SLEEP.fullmatch(action)
    assert match is not None
    time.sleep(float(match.group(1)))
