"""The lab's reaper wrapper inherits and reaps the orphans of the program it runs, and passes signals on."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

PROGRAM = """
import os, sys, time
if os.fork() == 0:  # the launcher, as Patroni's postmaster start: it forks the long-lived child and exits
    if os.fork() == 0:
        open(sys.argv[1], "w").write(str(os.getpid()))
        time.sleep(0.5)
        os._exit(0)
    os._exit(0)
os.wait()
time.sleep(float(sys.argv[2]))
sys.exit(7)
"""


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


def _wrapped(tmp_path: Path, seconds: float) -> tuple[subprocess.Popen[bytes], int]:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    marker = tmp_path / "orphan.pid"
    wrapper = subprocess.Popen([sys.executable, "-m", "federation.lab.reaper", sys.executable, str(script),
                                str(marker), str(seconds)])
    deadline = time.monotonic() + 10
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return wrapper, int(marker.read_text())


def test_an_orphan_goes_to_the_wrapper_and_is_reaped_as_soon_as_it_exits(tmp_path: Path) -> None:
    wrapper, orphan = _wrapped(tmp_path, 3)
    try:
        deadline = time.monotonic() + 2  # the launcher may still be exiting: until then it is the parent
        while _ppid(orphan) != wrapper.pid and time.monotonic() < deadline:
            time.sleep(0.005)
        assert _ppid(orphan) == wrapper.pid
        while Path(f"/proc/{orphan}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not Path(f"/proc/{orphan}").exists(), "the exited orphan was left a zombie"
        assert wrapper.wait(timeout=10) == 7  # the program's exit code
    finally:
        wrapper.kill()


def test_sigterm_reaches_the_program(tmp_path: Path) -> None:
    wrapper, _orphan = _wrapped(tmp_path, 30)
    try:
        wrapper.send_signal(signal.SIGTERM)
        assert wrapper.wait(timeout=10) == -signal.SIGTERM
    finally:
        wrapper.kill()
