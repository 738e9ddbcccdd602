"""Where a cleanly shut down primary's WAL ends, from pg_controldata's output (federation/control_data.py).

The expected ends are what PostgreSQL 15's `pg_last_wal_replay_lsn()` reported after replaying shutdown
checkpoints placed at these points (tests/integration/test_control_data.py checks the same on a live server):
inside a page, ending exactly at a page's end, crossing into a page with a short header, and crossing into a
new segment's long header."""

from __future__ import annotations

import pytest

from federation.control_data import ControlDataError, parse_control_data, record_end
from federation.lsn import format_lsn, parse_lsn

SEGMENT = 16 * 1024 * 1024
LENGTH = 114

OUTPUT = """pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7714965510857704489
Database cluster state:               {state}
pg_control last modified:             Thu Dec  3 06:46:27 2026
Latest checkpoint location:           {checkpoint}
Latest checkpoint's REDO location:    {redo}
Latest checkpoint's REDO WAL file:    000000010000000000000001
Latest checkpoint's TimeLineID:       3
Latest checkpoint's PrevTimeLineID:   2
Minimum recovery ending location:     0/0
WAL block size:                       8192
Bytes per WAL segment:                16777216
"""


@pytest.mark.parametrize(("start", "end"), [
    ("0/1501F38", "0/1501FB0"),  # 48 bytes left on the page after it: within the page
    ("0/1503F88", "0/1504000"),  # 114 bytes, rounded up to 120, fill the page to its end
    ("0/1505F90", "0/1506020"),  # crosses into the next page (a 24-byte short header)
    ("0/150DFF8", "0/150E088"),  # only 8 bytes on the first page
    ("0/151A018", "0/151A090"),  # right after a page header
    ("0/11FFFFA0", "0/12000040"),  # crosses into a new segment (a 40-byte long header)
    ("0/13FFFFF8", "0/14000098"),
])
def test_the_end_of_a_shutdown_checkpoint_is_where_postgresql_replays_it_to(start: str, end: str) -> None:
    assert format_lsn(record_end(parse_lsn(start), LENGTH, 8192, SEGMENT)) == end


def test_a_record_longer_than_a_page_continues_over_every_page_header() -> None:
    # 8100 bytes from 8000 into a page: 192 there, 8168 on the next page (after its 24-byte header) is more
    # than the 7908 left, so it ends on that page.
    assert record_end(8000, 8100, 8192, SEGMENT) == 8192 + 24 + 7912
    assert record_end(8000, 192 + 8168 + 10, 8192, SEGMENT) == 2 * 8192 + 24 + 16


def test_a_clean_primary_shutdown_gives_the_wal_end() -> None:
    data = parse_control_data(OUTPUT.format(state="shut down", checkpoint="0/11FFFFA0", redo="0/11FFFFA0"))
    assert (data.system_identifier, data.timeline, data.version) == ("7714965510857704489", 3, 1300)
    assert data.clean_primary_shutdown
    assert data.wal_end() == parse_lsn("0/12000040")


@pytest.mark.parametrize(("state", "redo"), [
    ("in production", "0/11FFFFA0"),  # still running: its WAL goes on
    ("shut down in recovery", "0/11FFFFA0"),  # a standby's shutdown: it has no WAL of its own to end
    ("in archive recovery", "0/11FFFFA0"),  # Patroni started it again
    ("shut down", "0/11FF0000"),  # redo before the checkpoint: not a shutdown checkpoint
])
def test_no_wal_end_unless_it_shut_down_cleanly_as_a_primary(state: str, redo: str) -> None:
    data = parse_control_data(OUTPUT.format(state=state, checkpoint="0/11FFFFA0", redo=redo))
    assert data.wal_end() is None


def test_an_unknown_pg_control_version_gives_no_wal_end() -> None:
    text = OUTPUT.format(state="shut down", checkpoint="0/11FFFFA0", redo="0/11FFFFA0")
    data = parse_control_data(text.replace("1300", "1700", 1))
    assert data.clean_primary_shutdown and data.wal_end() is None


def test_output_without_a_field_is_refused_naming_it() -> None:
    text = OUTPUT.format(state="shut down", checkpoint="0/1", redo="0/1")
    with pytest.raises(ControlDataError, match="printed no wal_block_size"):
        parse_control_data("\n".join(line for line in text.splitlines() if not line.startswith("WAL block")))
    with pytest.raises(ControlDataError, match="cannot read"):
        parse_control_data(text.replace("0/1\n", "zz\n", 1))


def test_a_checksum_warning_is_refused() -> None:
    text = OUTPUT.format(state="shut down", checkpoint="0/11FFFFA0", redo="0/11FFFFA0")
    warning = ("WARNING: Calculated CRC checksum does not match value stored in file.\nEither the file is corrupt, "
               "or it has a different layout than this program\nis expecting.  The results below are untrustworthy."
               "\n\n")
    with pytest.raises(ControlDataError, match="checksum wrong"):
        parse_control_data(warning + text)
