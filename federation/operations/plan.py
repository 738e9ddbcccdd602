"""Operations as declared step plans: each step checks the real state, acts, and is verified.

A step's `done` looks at the world (and at the inputs earlier steps committed) and says whether the step
already took effect, so a rerun after a crash resumes at the first step not done. Before a step that
changes anything acts, the journal commits the pending operation to the federation record with that
step as the current one and every input the later steps need (the demotion token, the loss estimate,
the fence point): a crash can lose nothing a rerun would need. Each step passes two failpoints,
`<kind>/before-<step>` and `<kind>/after-<step>` (federation.failpoints).

A step whose act is itself the commit of the record (the epoch raise) is `commits_itself`: it writes
the next step's name in that commit, so the journal does not commit before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from federation.errors import FedError, OperationFailed
from federation.failpoints import hit
from federation.progress import Progress


class Journal(Protocol):
    def at(self, step: str, inputs: dict[str, Any]) -> None:
        """Commit that `step` is the operation's current step, with `inputs`, before it acts."""


class PlanContext(Protocol):
    inputs: dict[str, Any]


C = TypeVar("C", bound=PlanContext)


def never_done(_ctx: Any) -> bool:
    return False


@dataclass(frozen=True)
class Step(Generic[C]):
    name: str
    says: str
    act: Callable[[C], str | None]
    done: Callable[[C], bool] = never_done
    verify: Callable[[C], bool] | None = None
    changes: bool = True
    commits_itself: bool = False


@dataclass
class PlanRun:
    """What one run of a plan did: the steps it acted on and those it found already done."""

    acted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def describe(steps: Sequence[Step[Any]]) -> list[str]:
    return [f"{step.name}: {step.says}" for step in steps]


def first_not_done(steps: Sequence[Step[C]], ctx: C) -> Step[C] | None:
    """Where a rerun would start (for `fedctl operation show`)."""
    return next((step for step in steps if not step.done(ctx)), None)


def run_plan(kind: str, steps: Sequence[Step[C]], ctx: C, journal: Journal, progress: Progress) -> PlanRun:
    """Run every step not already done, in order. Raises what a step raises; the record then names the step
    that failed, and a rerun of the same command starts again from the first step not done."""
    run = PlanRun()
    for step in steps:
        if step.done(ctx):
            progress.say(f"   already done: {step.says}")
            run.skipped.append(step.name)
            continue
        if step.changes and not step.commits_itself:
            journal.at(step.name, ctx.inputs)
        hit(f"{kind}/before-{step.name}")
        try:
            with progress.step(step.says) as rec:
                rec.detail = step.act(ctx)
                hit(f"{kind}/after-{step.name}")
                if step.verify is not None and not step.verify(ctx):
                    raise OperationFailed(f"step '{step.name}' ({step.says}) did not take effect")
        except FedError as exc:
            if run.acted or step.changes:
                resume = (f"the {kind} is left pending at step '{step.name}': rerun the same command to resume "
                          "it (`fedctl operation show` says what it does next; `fedctl operation abort` undoes "
                          "it where it still can)")
                exc.hint = f"{exc.hint}; {resume}" if exc.hint else resume
            raise
        run.acted.append(step.name)
    return run
