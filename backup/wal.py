"""WAL continuity, pure logic: segment names, timeline history files and gaps in an archive listing.

A segment name is TTTTTTTT XXXXXXXX YYYYYYYY (hex): the timeline, then the segment number split into
"log" (segno // 256) and "seg" (segno % 256) for 16 MB segments.

Which timeline holds which segment follows PostgreSQL's own reading rule (XLogFileReadAnyTLI): after a
switch at LSN S from timeline k to k+1, the segment that contains S is read from timeline k+1 (the
promoted server copied its head there), so timeline k owns the segments strictly before it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from federation.lsn import format_lsn, parse_lsn

SEGMENT_SIZE = 16 * 1024 * 1024
SEGMENTS_PER_XLOGID = 0x1_0000_0000 // SEGMENT_SIZE
_SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_HISTORY_RE = re.compile(r"^([0-9A-F]{8})\.history$")
# Repo file names: "<segment>-<sha1>[.ext]", "<segment>.partial-<sha1>[.ext]", "<segment>.<offset>.backup".
_ARCHIVE_FILE_RE = re.compile(r"^([0-9A-F]{24})(\.partial)?-[0-9a-f]{40}(\.[a-z0-9]+)?$")


@dataclass(frozen=True, order=True)
class Segment:
    """One WAL segment: a timeline and a segment number (LSN // SEGMENT_SIZE)."""

    timeline: int
    segno: int

    @classmethod
    def from_name(cls, name: str) -> Segment:
        match = _SEGMENT_RE.match(name.strip().upper())
        if not match:
            raise ValueError(f"{name!r} is not a WAL segment name (24 hex digits, e.g. 000000010000000000000003)")
        tli, log, seg = (int(part, 16) for part in match.groups())
        if tli == 0 or seg >= SEGMENTS_PER_XLOGID:
            raise ValueError(f"{name!r} is not a WAL segment name for 16 MB segments")
        return cls(tli, log * SEGMENTS_PER_XLOGID + seg)

    @classmethod
    def of_lsn(cls, timeline: int, lsn: int | str) -> Segment:
        value = parse_lsn(lsn) if isinstance(lsn, str) else lsn
        return cls(timeline, value // SEGMENT_SIZE)

    @property
    def name(self) -> str:
        return f"{self.timeline:08X}{self.segno // SEGMENTS_PER_XLOGID:08X}{self.segno % SEGMENTS_PER_XLOGID:08X}"

    @property
    def start_lsn(self) -> int:
        return self.segno * SEGMENT_SIZE

    def __str__(self) -> str:
        return self.name


def is_segment_name(name: str) -> bool:
    try:
        Segment.from_name(name)
    except ValueError:
        return False
    return True


def history_file_name(timeline: int) -> str:
    return f"{timeline:08X}.history"


def history_timeline(name: str) -> int | None:
    """00000003.history -> 3; None for any other name."""
    match = _HISTORY_RE.match(name)
    return int(match.group(1), 16) if match else None


def archived_segment(file_name: str) -> str | None:
    """The segment a repo archive file holds ('<segment>-<sha1>.lz4'); None for partial, backup or other files."""
    match = _ARCHIVE_FILE_RE.match(file_name)
    if not match or match.group(2):
        return None
    return match.group(1)


@dataclass(frozen=True)
class Switch:
    """One line of a timeline history file: timeline `parent` ended at LSN `switchpoint`."""

    parent: int
    switchpoint: int
    reason: str = ""


def parse_history(text: str, timeline: int) -> list[Switch]:
    """Parse the history file of `timeline` (lines 'parentTLI<tab>X/Y<tab>reason'), oldest first.

    Raises ValueError naming the line when the file is malformed or not consistent (PostgreSQL itself
    refuses such a file, so recovery through it would fail too).
    """
    switches: list[Switch] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 2)
        try:
            parent = int(fields[0])
            point = parse_lsn(fields[1])
        except (ValueError, IndexError):
            raise ValueError(f"{history_file_name(timeline)} line {number}: expected 'timeline<TAB>X/Y<TAB>reason', "
                             f"got {raw!r}") from None
        if switches and (parent <= switches[-1].parent or point < switches[-1].switchpoint):
            raise ValueError(f"{history_file_name(timeline)} line {number}: timelines must increase and switch "
                             f"points must not go back (after {switches[-1].parent} at "
                             f"{format_lsn(switches[-1].switchpoint)})")
        if parent >= timeline:
            raise ValueError(f"{history_file_name(timeline)} line {number}: parent timeline {parent} is not older "
                             f"than {timeline}")
        switches.append(Switch(parent, point, fields[2] if len(fields) > 2 else ""))
    return switches


@dataclass(frozen=True)
class TimelineSpan:
    """The part of the WAL a timeline owns on the path to the current timeline: segno in [first, last]."""

    timeline: int
    first_segno: int
    last_segno: int | None  # None for the current timeline: it goes on

    def owns(self, segno: int) -> bool:
        return segno >= self.first_segno and (self.last_segno is None or segno <= self.last_segno)


def timeline_path(current: int, history: list[Switch]) -> list[TimelineSpan]:
    """The timelines leading to `current`, oldest first, each with the segments it owns."""
    spans: list[TimelineSpan] = []
    first = 0
    for switch in history:
        end = switch.switchpoint // SEGMENT_SIZE  # the segment holding the switch belongs to the child
        spans.append(TimelineSpan(switch.parent, first, end - 1))
        first = end
    spans.append(TimelineSpan(current, first, None))
    return spans


def owner(path: list[TimelineSpan], segno: int) -> int | None:
    """The timeline whose copy of segment `segno` recovery reads, on this path."""
    for span in reversed(path):
        if span.owns(segno):
            return span.timeline
    return None


def expected_segments(path: list[TimelineSpan], start: Segment, end_segno: int) -> Iterator[Segment]:
    """Every segment recovery needs from `start` through segment number `end_segno`, on the right timeline.

    Raises ValueError when `start` lies on a timeline that is not on the path (a backup from an abandoned
    branch cannot be rolled forward to the current timeline).
    """
    span = next((s for s in path if s.timeline == start.timeline), None)
    # The segment holding a switch point is still valid on the parent timeline (up to the switch).
    if span is None or start.segno < span.first_segno or (
            span.last_segno is not None and start.segno > span.last_segno + 1):
        chain = " -> ".join(str(s.timeline) for s in path)
        raise ValueError(f"segment {start.name} is not on the history of the current timeline (timelines {chain}): "
                         "it belongs to an abandoned branch")
    for segno in range(start.segno, end_segno + 1):
        tli = owner(path, segno)
        assert tli is not None
        yield Segment(tli, segno)


@dataclass(frozen=True)
class Gap:
    """A run of consecutive missing segments (one timeline)."""

    first: Segment
    last: Segment

    @property
    def count(self) -> int:
        return self.last.segno - self.first.segno + 1

    def segments(self) -> list[Segment]:
        return [Segment(self.first.timeline, n) for n in range(self.first.segno, self.last.segno + 1)]

    def __str__(self) -> str:
        if self.count == 1:
            return f"missing WAL segment {self.first.name}"
        return f"missing {self.count} WAL segments {self.first.name} .. {self.last.name}"


def find_gaps(expected: Iterable[Segment], present: set[str]) -> list[Gap]:
    """Runs of expected segments whose names are not in `present`."""
    gaps: list[Gap] = []
    run: list[Segment] = []
    for seg in expected:
        missing = seg.name not in present
        if missing and run and (seg.timeline != run[-1].timeline or seg.segno != run[-1].segno + 1):
            gaps.append(Gap(run[0], run[-1]))
            run = []
        if missing:
            run.append(seg)
        elif run:
            gaps.append(Gap(run[0], run[-1]))
            run = []
    if run:
        gaps.append(Gap(run[0], run[-1]))
    return gaps


@dataclass(frozen=True)
class TimelineRange:
    timeline: int
    first: Segment
    last: Segment
    count: int


def ranges_per_timeline(segment_names: Iterable[str]) -> list[TimelineRange]:
    """min/max segment and number of segments archived per timeline, sorted by timeline."""
    by_tli: dict[int, list[Segment]] = {}
    for name in segment_names:
        seg = Segment.from_name(name)
        by_tli.setdefault(seg.timeline, []).append(seg)
    return [TimelineRange(tli, min(segs), max(segs), len(set(segs))) for tli, segs in sorted(by_tli.items())]
