"""A long-running child process tracked by a pid file, started as another OS user.

setpriv execs in place, so the PID we hold is the real process (runuser/su would fork a wrapper). A pid file
is trusted only while /proc/<pid>/cmdline still names the process's marker (its config file or data
directory), so a recycled PID is never signalled. verify-restore's scratch PostgreSQL runs as one; the lab's
processes are this plus a network namespace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from federation.os_user import OsUser, as_user, user_env


@dataclass(frozen=True)
class PidfileProcess:
    """A long-running process: its pid file, log file and the marker that proves a PID is ours."""

    name: str
    pidfile: Path
    logfile: Path
    marker: str

    def launch_argv(self, user: OsUser, argv: Sequence[str]) -> list[str]:
        return as_user(user, argv)

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if runs_marker(pid, self.marker) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, user: OsUser, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> int:
        if (pid := self.pid()) is not None:
            return pid
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            proc = subprocess.Popen(self.launch_argv(user, argv), env=user_env(user, env), cwd=cwd or "/",
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.pidfile.write_text(f"{proc.pid}\n")
        # setpriv (and nsenter) exec the program in place: until they have, the command line is theirs.
        deadline = time.monotonic() + 5
        while argv[0] not in _leading_args(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        return proc.pid

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL to the whole process group after `timeout` seconds."""
        pid = self.pid()
        if pid is not None:
            send_signal(pid, signal.SIGTERM)
            if not wait_exited(pid, timeout):
                kill_group(pid)
                wait_exited(pid, 5)
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the process and everything in its process group (as a crashed host would)."""
        pid = self.pid()
        if pid is not None:
            kill_group(pid)
            wait_exited(pid, 5)
        self.pidfile.unlink(missing_ok=True)


def _leading_args(pid: int) -> list[str]:
    """The first two arguments of a process: a script run through its #! interpreter has its path second."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:2]
    except OSError:
        return []


def runs_marker(pid: int, marker: str) -> bool:
    """Is `pid` alive and running the command line holding `marker` (not a recycled PID)?"""
    for _attempt in range(5):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        if cmdline:
            return marker in cmdline.replace(b"\0", b" ").decode(errors="replace") and not has_exited(pid)
        if has_exited(pid):
            return False
        time.sleep(0.01)  # an empty command line while alive: the process is in the middle of an exec
    return False


def send_signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def kill_group(pid: int) -> None:
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        send_signal(pid, signal.SIGKILL)


def has_exited(pid: int) -> bool:
    """Gone, or a zombie whose threads have all exited (only then are its sockets and files closed)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except (OSError, IndexError):
        return True
    return state in ("Z", "X") and threads <= 1


def wait_exited(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not has_exited(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def kill_postmaster(data_dir: Path) -> None:
    """SIGKILL a postmaster left behind (its pid is the first line of postmaster.pid) and its group."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if b"postgres" in cmdline and str(data_dir).encode() in cmdline:
        kill_group(pid)
        send_signal(pid, signal.SIGKILL)
