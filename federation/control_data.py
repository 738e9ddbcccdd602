"""What `pg_controldata` says of a data directory, and where a cleanly shut down primary's WAL ends.

A primary that shut down cleanly ("shut down" in pg_control) wrote the shutdown checkpoint as its very last
WAL record, so the end of that record is the end of its WAL: the demotion token, known the moment the
checkpoint is written, before Patroni starts the demoted leader again. The end is computed from the record's
start the way PostgreSQL lays a record into WAL pages: the checkpoint record's fixed length, continued past
page headers (a long one at a segment's start), and the end rounded up to MAXALIGN, as the WAL reader's end
pointer (what `pg_last_wal_replay_lsn()` reports after replaying it) is.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from federation.lsn import parse_lsn

# The pg_control versions whose CHECKPOINT_SHUTDOWN record we know the length of: PostgreSQL 13 to 16
# (XLogRecord 24 bytes + a short data header 2 + CheckPoint 88). Another version gets no token this way.
CHECKPOINT_RECORD_LENGTH = {1300: 24 + 2 + 88}
MAXIMUM_ALIGNOF = 8
SHORT_PAGE_HEADER = 24  # MAXALIGN(sizeof(XLogPageHeaderData))
LONG_PAGE_HEADER = 40  # MAXALIGN(sizeof(XLogLongPageHeaderData)): a segment's first page
SHUT_DOWN = "shut down"  # a primary's clean shutdown; a standby's is "shut down in recovery"
DEFAULT_TIMEOUT = 5.0


class ControlDataError(Exception):
    """pg_controldata could not be run or said something we cannot read."""


@dataclass(frozen=True)
class ControlData:
    version: int
    system_identifier: str
    state: str
    checkpoint: int
    redo: int
    timeline: int
    wal_block_size: int
    wal_segment_size: int

    @property
    def clean_primary_shutdown(self) -> bool:
        """A primary's clean shutdown: its last WAL record is the shutdown checkpoint at `checkpoint`
        (a shutdown checkpoint's redo point is its own location)."""
        return self.state == SHUT_DOWN and self.redo == self.checkpoint

    def wal_end(self) -> int | None:
        """Where the WAL of a cleanly shut down primary ends; None for any other state or an unknown version."""
        length = CHECKPOINT_RECORD_LENGTH.get(self.version)
        if not self.clean_primary_shutdown or length is None:
            return None
        return record_end(self.checkpoint, length, self.wal_block_size, self.wal_segment_size)


def maxalign(value: int) -> int:
    return (value + MAXIMUM_ALIGNOF - 1) // MAXIMUM_ALIGNOF * MAXIMUM_ALIGNOF


def record_end(start: int, length: int, block_size: int, segment_size: int) -> int:
    """The WAL reader's end pointer of a `length`-byte record that begins at `start`."""
    room = block_size - start % block_size
    if length <= room:
        return maxalign(start + length)
    left, page = length - room, start + room
    while True:
        header = LONG_PAGE_HEADER if page % segment_size == 0 else SHORT_PAGE_HEADER
        if left <= block_size - header:
            return page + header + maxalign(left)
        left -= block_size - header
        page += block_size


FIELDS = {
    "pg_control version number": "version",
    "Database system identifier": "system_identifier",
    "Database cluster state": "state",
    "Latest checkpoint location": "checkpoint",
    "Latest checkpoint's REDO location": "redo",
    "Latest checkpoint's TimeLineID": "timeline",
    "WAL block size": "wal_block_size",
    "Bytes per WAL segment": "wal_segment_size",
}


def parse_control_data(text: str) -> ControlData:
    """The fields we use of pg_controldata's output (run with LC_ALL=C: the labels are translated)."""
    if "CRC" in text.split("pg_control version number", 1)[0]:
        # pg_controldata prints its values even when the checksum does not match (a read racing a write).
        raise ControlDataError("pg_controldata found pg_control's checksum wrong (read while being written?)")
    found: dict[str, str] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if sep and label.strip() in FIELDS:
            found[FIELDS[label.strip()]] = value.strip()
    missing = sorted(set(FIELDS.values()) - set(found))
    if missing:
        raise ControlDataError(f"pg_controldata printed no {', '.join(missing)}")
    try:
        return ControlData(
            version=int(found["version"]), system_identifier=found["system_identifier"], state=found["state"],
            checkpoint=parse_lsn(found["checkpoint"]), redo=parse_lsn(found["redo"]),
            timeline=int(found["timeline"]), wal_block_size=int(found["wal_block_size"]),
            wal_segment_size=int(found["wal_segment_size"]))
    except ValueError as exc:
        raise ControlDataError(f"pg_controldata printed a value we cannot read: {exc}") from None


def read_control_data(data_dir: str, bin_dir: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> ControlData:
    """Run pg_controldata on `data_dir` (from `bin_dir`, else PATH). ControlDataError when it cannot."""
    program = os.path.join(bin_dir, "pg_controldata") if bin_dir else "pg_controldata"
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        done = subprocess.run([program, "-D", data_dir], capture_output=True, text=True, timeout=timeout,
                              env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ControlDataError(f"cannot run {program}: {exc}") from None
    if done.returncode != 0:
        raise ControlDataError(f"{program} -D {data_dir} exited {done.returncode}: "
                               f"{done.stderr.strip()[-500:] or 'no message'}")
    return parse_control_data(done.stdout)
