"""How much a pgBackRest restore copied, read from its output or log file (pure parsing).

At log level `detail` pgBackRest prints one line per file: `restore file <path> (768KB, 3.41%) checksum ...`
when it copied the file, and `restore file <path> - exists and matches backup (768KB, ...)` when a delta
restore kept it. At `info` it prints only the total, `restore size = 22.0MB, file total = 970`.
Sizes are pgBackRest's rounded text (one decimal above 1 MB), so byte counts are approximate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FILE_RE = re.compile(r"DETAIL: restore file (\S+) (- [^(]*)?\((\d+(?:\.\d+)?)(B|KB|MB|GB|TB)[,)]")
_TOTAL_RE = re.compile(r"INFO: restore size = (\d+(?:\.\d+)?)(B|KB|MB|GB|TB), file total = (\d+)")
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
PROCESS_START = "-------------------PROCESS START-------------------"
RESTORE_DONE = "restore command end: completed successfully"


@dataclass(frozen=True)
class RestoreStats:
    total_bytes: int | None
    total_files: int | None
    copied_bytes: int | None  # None when the output had no per-file (detail) lines
    copied_files: int | None
    kept_bytes: int | None
    kept_files: int | None


def size_bytes(number: str, unit: str) -> int:
    return round(float(number) * _UNITS[unit])


def parse_restore_output(text: str) -> RestoreStats:
    copied = kept = copied_n = kept_n = 0
    detail = False
    total: tuple[int, int] | None = None
    for line in text.splitlines():
        match = _FILE_RE.search(line)
        if match:
            detail = True
            size = size_bytes(match.group(3), match.group(4))
            if match.group(2):  # "- exists and matches backup", "- exists and is zero size", ...
                kept, kept_n = kept + size, kept_n + 1
            else:
                copied, copied_n = copied + size, copied_n + 1
            continue
        match = _TOTAL_RE.search(line)
        if match:
            total = (size_bytes(match.group(1), match.group(2)), int(match.group(3)))
    return RestoreStats(total[0] if total else None, total[1] if total else None,
                        copied if detail else None, copied_n if detail else None,
                        kept if detail else None, kept_n if detail else None)


def last_restore_in_log(log_text: str, pg1_path: str) -> str | None:
    """The text of the newest restore run in pgBackRest's `<stanza>-restore.log` for `pg1_path`."""
    runs = log_text.split(PROCESS_START)
    for run in reversed(runs):
        if f"--pg1-path={pg1_path} " in run or run.rstrip().endswith(f"--pg1-path={pg1_path}"):
            return run
    return None
