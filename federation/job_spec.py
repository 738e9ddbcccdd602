"""The `jobs:` of a datacenter as the topology declares them: name, kind, cron schedule, timeout.

Only the declaration lives here, below the topology; running a job, its results and the run claims are
backup.jobs' (and the agent's scheduler's), which the topology never imports.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger


class JobKind(StrEnum):
    FULL_BACKUP = "full_backup"
    DIFF_BACKUP = "diff_backup"
    VERIFY_RESTORE = "verify_restore"
    CHECK_ARCHIVE = "check_archive"


# How long a run may take before its run claim in the DCS counts as stale (its agent died mid-run).
DEFAULT_TIMEOUTS = {"full_backup": 6 * 3600, "diff_backup": 3 * 3600, "verify_restore": 3 * 3600,
                    "check_archive": 15 * 60}


class Job(BaseModel):
    """One scheduled job of a DC: `{name: nightly, kind: full_backup, cron: "0 2 * * *"}`.

    `timeout` (seconds, default per kind) does not interrupt a run: past it, another agent may take the
    run claim over, on the assumption that the agent which held it died mid-run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
    kind: JobKind
    cron: str
    timeout: Annotated[int, Field(gt=0)] | None = None

    @property
    def timeout_seconds(self) -> int:
        return self.timeout or DEFAULT_TIMEOUTS[self.kind.value]

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            from apscheduler.triggers.cron import CronTrigger  # heavy (asyncio): only when jobs are declared

            CronTrigger.from_crontab(value, timezone=UTC)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday, "
                             f"e.g. '0 2 * * *'): {exc}") from None
        return value

    def trigger(self, timezone: Any = UTC) -> CronTrigger:
        from apscheduler.triggers.cron import CronTrigger

        return CronTrigger.from_crontab(self.cron, timezone=timezone)

    def next_run(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after` (UTC)."""
        return self.trigger().get_next_fire_time(None, after + timedelta(microseconds=1))


def _unique_names(jobs: list[Job]) -> list[Job]:
    names = [job.name for job in jobs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"job name(s) used twice in this datacenter: {', '.join(twice)}")
    return jobs


JobList = Annotated[list[Job], AfterValidator(_unique_names)]
"""The type of `Datacenter.jobs`: `jobs: JobList = Field(default_factory=list)`."""
