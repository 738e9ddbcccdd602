"""Reading how much a pgBackRest restore copied from its detail output or its log file."""

from __future__ import annotations

from backup.restore_log import PROCESS_START, last_restore_in_log, parse_restore_output, size_bytes

DETAIL = """\
2026-11-25 18:28:41.210 P01 DETAIL: restore file /d/base/5/1255 - exists and matches backup (768KB, 3.41%) checksum 40fc
2026-11-25 18:28:41.211 P02 DETAIL: restore file /d/base/4/16384 (1.5MB, 10.00%) checksum 8d60
2026-11-25 18:28:41.211 P02 DETAIL: restore file /d/base/4/16390 (8KB, 10.10%) checksum 8d61
2026-11-25 18:28:41.212 P01 DETAIL: restore file /d/global/pg_control.pgbackrest.tmp (8KB, 99%) checksum 1234
2026-11-25 18:28:41.212 P01 DETAIL: restore file /d/base/5/2838 - exists and is zero size (0B, 100.00%)
2026-11-25 18:28:41.490 P00   INFO: restore size = 22.0MB, file total = 970
"""


def test_detail_output_splits_copied_and_kept_files() -> None:
    stats = parse_restore_output(DETAIL)
    assert stats.copied_files == 3 and stats.copied_bytes == round(1.5 * 1024**2) + 8192 + 8192
    assert stats.kept_files == 2 and stats.kept_bytes == 768 * 1024
    assert stats.total_bytes == round(22.0 * 1024**2) and stats.total_files == 970


def test_info_output_gives_only_the_total() -> None:
    stats = parse_restore_output("P00   INFO: restore size = 1.2GB, file total = 1300\n")
    assert stats.copied_bytes is None and stats.kept_bytes is None
    assert stats.total_bytes == size_bytes("1.2", "GB") and stats.total_files == 1300


def test_last_restore_in_log_picks_the_newest_run_for_that_data_directory() -> None:
    log = (f"{PROCESS_START}\nrestore command begin 2.45: --pg1-path=/d/n2/data --stanza=fed\nrun one\n"
           f"{PROCESS_START}\nrestore command begin 2.45: --pg1-path=/d/n3/data --stanza=fed\nother member\n"
           f"{PROCESS_START}\nrestore command begin 2.45: --pg1-path=/d/n2/data --stanza=fed\nrun two\n")
    assert "run two" in (last_restore_in_log(log, "/d/n2/data") or "")
    assert "other member" in (last_restore_in_log(log, "/d/n3/data") or "")
    assert last_restore_in_log(log, "/d/n2/dat") is None
