"""Typed results of `pgbackrest info --output=json`.

`info` exits 0 even for a missing stanza or a stanza without backups: the truth is `status.code`
(0 ok, 1 missing stanza path, 2 no valid backups, 3 missing stanza data, 4 different cipher,
5 database mismatch, 6 requested backup not found, 99 other). `StanzaInfo.require_ok` turns it into an error.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backup.runner import PgBackRestError, PgBackRestHost, run

STATUS_OK = 0
STATUS_NO_BACKUPS = 2


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Status(_Model):
    code: int
    message: str = ""


class DbRef(_Model):
    id: int | None = None


class WalRange(_Model):
    start: str | None = None
    stop: str | None = None


class LsnRange(_Model):
    start: str | None = None
    stop: str | None = None


class Timestamps(_Model):
    start: int
    stop: int


class RepoSizes(_Model):
    size: int | None = None
    delta: int | None = None


class Sizes(_Model):
    size: int | None = None
    delta: int | None = None
    repository: RepoSizes = Field(default_factory=RepoSizes)


class Backup(_Model):
    label: str
    type: str
    timestamp: Timestamps
    archive: WalRange = Field(default_factory=WalRange)
    lsn: LsnRange = Field(default_factory=LsnRange)
    info: Sizes = Field(default_factory=Sizes)
    error: bool | None = None  # pgBackRest >= 2.36 sets it when a page checksum error was found
    prior: str | None = None
    database: DbRef = Field(default_factory=DbRef)

    @property
    def started(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp.start, UTC)

    @property
    def stopped(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp.stop, UTC)


class ArchiveRange(_Model):
    id: str
    database: DbRef = Field(default_factory=DbRef)
    min: str | None = None
    max: str | None = None


class DbEntry(_Model):
    """One PostgreSQL system/version the stanza has held (a major upgrade adds one)."""

    id: int
    version: str
    system_id: int | None = Field(default=None, alias="system-id")


class StanzaInfo(_Model):
    name: str
    status: Status
    backup: list[Backup] = Field(default_factory=list)
    archive: list[ArchiveRange] = Field(default_factory=list)
    db: list[DbEntry] = Field(default_factory=list)

    def version_of(self, backup: Backup) -> str | None:
        """The PostgreSQL major version a backup set was taken of (its binaries must restore it)."""
        wanted = backup.database.id
        return next((d.version for d in self.db if d.id == wanted), self.db[-1].version if self.db else None)

    @property
    def backups(self) -> list[Backup]:
        """Backups oldest first (pgBackRest lists them so; sorted again to not depend on it)."""
        return sorted(self.backup, key=lambda b: (b.timestamp.start, b.label))

    def find(self, label: str) -> Backup:
        for b in self.backup:
            if b.label == label:
                return b
        known = ", ".join(b.label for b in self.backups) or "none"
        raise PgBackRestError(f"stanza {self.name} has no backup set {label!r} (sets: {known})", code=None,
                              hint="list them with `fedctl backups`")

    def require_ok(self, *, allow_no_backups: bool = False) -> StanzaInfo:
        if self.status.code == STATUS_OK or (allow_no_backups and self.status.code == STATUS_NO_BACKUPS):
            return self
        hint = {1: "create it with `pgbackrest stanza-create` on the primary DC's leader (fedctl lab up does)",
                2: "take one with `fedctl backup DC --type full`",
                3: "the stanza's info files are missing: check the repository path and permissions"}.get(
                    self.status.code, "run `pgbackrest info` on the primary DC's leader for details")
        raise PgBackRestError(f"pgBackRest stanza {self.name} is not usable: {self.status.message} "
                              f"(status code {self.status.code})", code=None, hint=hint)


def parse_info(text: str, stanza: str) -> StanzaInfo:
    """The entry for `stanza` in `info --output=json` output."""
    try:
        data = json.loads(text)
        entries = [StanzaInfo.model_validate(item) for item in data]
    except (ValueError, TypeError, ValidationError) as exc:
        raise PgBackRestError(f"cannot read `pgbackrest info --output=json`: {exc}".splitlines()[0], code=None,
                              hint="is this pgBackRest >= 2.x?") from None
    for entry in entries:
        if entry.name == stanza:
            return entry
    raise PgBackRestError(f"pgbackrest info does not list stanza {stanza}", code=None,
                          hint="check the stanza name in the topology (pgbackrest.stanza)")


def read_info(host: PgBackRestHost, stanza: str) -> StanzaInfo:
    result = run(host.command("info", "--output=json", timeout=120), attempts=3)
    return parse_info(result.stdout, stanza)
