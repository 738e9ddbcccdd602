"""WAL continuity logic: segment names, timeline history, ownership across switches, gap finding."""

from __future__ import annotations

import pytest

from backup.wal import (
    SEGMENT_SIZE,
    Gap,
    Segment,
    Switch,
    archived_segment,
    expected_segments,
    find_gaps,
    history_file_name,
    history_timeline,
    is_segment_name,
    owner,
    parse_history,
    ranges_per_timeline,
    timeline_path,
)


@pytest.mark.parametrize(("name", "tli", "segno"), [
    ("000000010000000000000001", 1, 1),
    ("0000000100000000000000FF", 1, 255),
    ("000000010000000100000000", 1, 256),
    ("00000003000000020000000A", 3, 2 * 256 + 10),
    ("0000000a0000000000000001", 10, 1),  # lower case is accepted
])
def test_segment_names_round_trip(name: str, tli: int, segno: int) -> None:
    seg = Segment.from_name(name)
    assert (seg.timeline, seg.segno) == (tli, segno)
    assert seg.name == name.upper()


def test_segment_after_ff_carries_into_the_log_part() -> None:
    assert Segment(1, 255 + 1).name == "000000010000000100000000"


@pytest.mark.parametrize("bad", ["", "00000001000000000000001", "0000000100000000000000010", "G00000010000000000000001",
                                 "000000000000000000000001", "000000010000000000000100", "00000002.history"])
def test_bad_segment_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Segment.from_name(bad)
    assert not is_segment_name(bad)


def test_segment_of_an_lsn() -> None:
    assert Segment.of_lsn(1, "0/3000028") == Segment(1, 3)
    assert Segment.of_lsn(2, "1/0") == Segment(2, 256)
    assert Segment.of_lsn(2, "0/FFFFFFF").name == "00000002000000000000000F"
    assert Segment(1, 3).start_lsn == 3 * SEGMENT_SIZE


def test_history_file_names() -> None:
    assert history_file_name(3) == "00000003.history"
    assert history_file_name(26) == "0000001A.history"
    assert history_timeline("0000001A.history") == 26
    assert history_timeline("0000001A.history.ready") is None
    assert history_timeline("000000010000000000000001") is None


@pytest.mark.parametrize(("file_name", "segment"), [
    ("000000010000000000000003-d222e20fdc44912f7475a4ee1698a3669dde2908.lz4", "000000010000000000000003"),
    ("000000010000000000000003-d222e20fdc44912f7475a4ee1698a3669dde2908", "000000010000000000000003"),
    ("000000010000000000000003.partial-d222e20fdc44912f7475a4ee1698a3669dde2908.lz4", None),
    ("000000010000000000000002.00000028.backup", None),
    ("00000002.history", None),
    ("archive.info", None),
])
def test_archived_segment_from_repo_file_names(file_name: str, segment: str | None) -> None:
    assert archived_segment(file_name) == segment


def test_parse_history_of_a_third_timeline() -> None:
    text = "1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tbefore 2000-01-01 00:00:00+00\n"
    assert parse_history(text, 3) == [Switch(1, 0x3000060, "no recovery target specified"),
                                      Switch(2, 0x5000000, "before 2000-01-01 00:00:00+00")]


def test_parse_history_skips_comments_and_accepts_missing_reason() -> None:
    assert parse_history("# comment\n1\t0/3000060\n", 2) == [Switch(1, 0x3000060, "")]


@pytest.mark.parametrize(("text", "fragment"), [
    ("1 nonsense reason\n", "line 1"),
    ("x\t0/1\n", "line 1"),
    ("1\t0/5000000\n\n1\t0/6000000\n", "line 3: timelines must increase"),
    ("1\t0/5000000\n2\t0/4000000\n", "must not go back"),
    ("3\t0/5000000\n", "not older than 3"),
])
def test_parse_history_refuses_malformed_files(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_history(text, 3)


def test_timeline_path_gives_the_switch_segment_to_the_child() -> None:
    path = timeline_path(3, [Switch(1, 0x3000060), Switch(2, 0x5000000)])
    assert [(s.timeline, s.first_segno, s.last_segno) for s in path] == [(1, 0, 2), (2, 3, 4), (3, 5, None)]
    assert owner(path, 2) == 1
    assert owner(path, 3) == 2  # holds 0/3000060, copied onto timeline 2 at promotion
    assert owner(path, 5) == 3  # switch exactly at a segment boundary: timeline 3 starts with segment 5
    assert owner(path, 10_000) == 3


def test_expected_segments_cross_timelines() -> None:
    path = timeline_path(3, [Switch(1, 0x3000060), Switch(2, 0x5000000)])
    names = [s.name for s in expected_segments(path, Segment(1, 1), 6)]
    assert names == ["000000010000000000000001", "000000010000000000000002", "000000020000000000000003",
                     "000000020000000000000004", "000000030000000000000005", "000000030000000000000006"]


def test_expected_segments_from_a_backup_in_the_switch_segment_of_the_parent() -> None:
    path = timeline_path(2, [Switch(1, 0x3000060)])
    assert [s.name for s in expected_segments(path, Segment(1, 3), 4)] == [
        "000000020000000000000003", "000000020000000000000004"]


def test_expected_segments_refuse_a_start_on_an_abandoned_branch() -> None:
    path = timeline_path(4, [Switch(1, 0x3000060), Switch(3, 0x9000000)])
    with pytest.raises(ValueError, match="abandoned branch"):
        list(expected_segments(path, Segment(2, 4), 10))
    with pytest.raises(ValueError, match="abandoned branch"):
        list(expected_segments(path, Segment(1, 7), 10))  # timeline 1 past its switch to 3


def test_expected_segments_empty_when_end_before_start() -> None:
    assert list(expected_segments(timeline_path(1, []), Segment(1, 5), 4)) == []


def test_find_gaps_reports_each_run_by_segment_name() -> None:
    path = timeline_path(2, [Switch(1, 0x5000000)])
    expected = list(expected_segments(path, Segment(1, 1), 9))
    present = {s.name for s in expected} - {"000000010000000000000002", "000000010000000000000004",
                                            "000000020000000000000005", "000000020000000000000006",
                                            "000000020000000000000009"}
    gaps = find_gaps(expected, present)
    assert [str(g) for g in gaps] == [
        "missing WAL segment 000000010000000000000002",
        "missing WAL segment 000000010000000000000004",  # 5 is next but on timeline 2: a separate run
        "missing 2 WAL segments 000000020000000000000005 .. 000000020000000000000006",
        "missing WAL segment 000000020000000000000009",
    ]
    assert [s.name for s in gaps[2].segments()] == ["000000020000000000000005", "000000020000000000000006"]


def test_find_gaps_splits_a_run_at_a_timeline_change() -> None:
    expected = [Segment(1, 3), Segment(1, 4), Segment(2, 5)]
    assert find_gaps(expected, set()) == [Gap(Segment(1, 3), Segment(1, 4)), Gap(Segment(2, 5), Segment(2, 5))]


def test_no_gaps_when_everything_is_there() -> None:
    expected = list(expected_segments(timeline_path(1, []), Segment(1, 1), 300))
    assert find_gaps(expected, {s.name for s in expected}) == []
    assert expected[-1].name == "00000001000000010000002C"


def test_ranges_per_timeline() -> None:
    ranges = ranges_per_timeline(["000000010000000000000003", "000000010000000000000001", "000000020000000000000004",
                                  "000000010000000000000003"])
    assert [(r.timeline, r.first.name, r.last.name, r.count) for r in ranges] == [
        (1, "000000010000000000000001", "000000010000000000000003", 2),
        (2, "000000020000000000000004", "000000020000000000000004", 1)]
