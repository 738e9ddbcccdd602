"""Printing long-running work as named steps with their durations."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class StepRecord:
    name: str
    seconds: float
    outcome: str = "ok"
    detail: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": round(self.seconds, 3), "outcome": self.outcome,
                "detail": self.detail}


@dataclass
class Progress:
    """Prints each step as it starts and ends, and keeps the records for a JSON report.

    `quiet` keeps the records but prints nothing (for --format json, whose stdout is one object).
    """

    out: TextIO = field(default_factory=lambda: sys.stderr)
    quiet: bool = False
    steps: list[StepRecord] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.out, flush=True)

    def warn(self, message: str) -> None:
        """Printed even when quiet: something went wrong that the operator should know of."""
        print(f"warning: {message}", file=self.out, flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[StepRecord]:
        record = StepRecord(name, 0.0)
        self.say(f"-> {name} ...")
        started = self.clock()
        try:
            yield record
        except BaseException as exc:
            record.seconds = self.clock() - started
            record.outcome = "failed"
            record.detail = record.detail or str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.steps.append(record)
            self.say(f"   FAILED {name} after {record.seconds:.2f} s")
            raise
        record.seconds = self.clock() - started
        self.steps.append(record)
        extra = f" ({record.detail})" if record.detail else ""
        self.say(f"   done  {name}: {record.seconds:.2f} s{extra}")
