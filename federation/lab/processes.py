"""Starting and stopping lab processes as the unprivileged lab user, tracked by pid files.

setpriv execs in place, so the PID we hold is the real process (runuser/su would fork a wrapper).
A pid file is trusted only while /proc/<pid>/cmdline still names the process's marker (its config
file), so a recycled PID is never signalled.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from federation.errors import LabError
from federation.lab.netns import in_netns
from federation.os_user import OsUser, as_user
from federation.os_user import user_env as user_env  # re-exported for the lab's callers

LabUser = OsUser  # the lab's unprivileged user: an OsUser like any other


def ensure_lab_user(name: str) -> LabUser:
    """The unprivileged user that runs PostgreSQL and Patroni. Created when running as root and missing."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return LabUser(me.pw_name, me.pw_uid, me.pw_gid, me.pw_dir)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--create-home", "--home-dir",
                        f"/var/lib/{name}", "--shell", "/bin/bash", name], check=True, capture_output=True)
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise LabError(f"lab user {name} is root; PostgreSQL refuses to run as root",
                       hint="set lab.user in the topology to an unprivileged user")
    return LabUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def as_user_argv(user: LabUser, argv: Sequence[str], netns: str | None = None) -> list[str]:
    """`argv` run as `user` (setpriv) inside the network namespace `netns` (nsenter); both exec in place."""
    return in_netns(as_user(user, argv), netns)


def chown_tree(path: Path, user: LabUser) -> None:
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.uid, user.gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), user.uid, user.gid)


def run_as(user: LabUser, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
           timeout: float = 120, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short command as the lab user and return it; raises LabError with its output on failure."""
    full = as_user_argv(user, argv, netns)
    try:
        done = subprocess.run(full, env=user_env(user, env), cwd=cwd or "/", capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)} did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-2000:]
        raise LabError(f"{' '.join(argv)} failed with exit code {done.returncode}: {output}")
    return done


@dataclass(frozen=True)
class ManagedProcess:
    """A long-running lab process: its pid file, log file and the marker that proves a PID is ours."""

    name: str
    pidfile: Path
    logfile: Path
    marker: str
    netns: str | None = None  # the network namespace it runs in (a namespace lab's site), None for the root one

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _runs_marker(pid, self.marker) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, user: LabUser, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> int:
        if (pid := self.pid()) is not None:
            return pid
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            proc = subprocess.Popen(as_user_argv(user, argv, self.netns), env=user_env(user, env), cwd=cwd or "/",
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
            _signal(pid, signal.SIGTERM)
            if not _wait_exited(pid, timeout):
                _killpg(pid)
                _wait_exited(pid, 5)
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the process and everything in its process group (as a crashed host would)."""
        pid = self.pid()
        if pid is not None:
            _killpg(pid)
            _wait_exited(pid, 5)
        self.pidfile.unlink(missing_ok=True)


def _leading_args(pid: int) -> list[str]:
    """The first two arguments of a process: a script run through its #! interpreter has its path second."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:2]
    except OSError:
        return []


def _runs_marker(pid: int, marker: str) -> bool:
    """Is `pid` alive and running the command line holding `marker` (not a recycled PID)?"""
    for _attempt in range(5):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        if cmdline:
            return marker in cmdline.replace(b"\0", b" ").decode(errors="replace") and not _has_exited(pid)
        if _has_exited(pid):
            return False
        time.sleep(0.01)  # an empty command line while alive: the process is in the middle of an exec
    return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _killpg(pid: int) -> None:
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        _signal(pid, signal.SIGKILL)


def _has_exited(pid: int) -> bool:
    """Gone, or a zombie whose threads have all exited (only then are its sockets and files closed)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except (OSError, IndexError):
        return True
    return state in ("Z", "X") and threads <= 1


def _wait_exited(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _has_exited(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


LAB_PROGRAMS = frozenset({"etcd", "java", "patroni", "postgres", "pgbackrest", "haproxy", "pgbouncer", "fedctl",
                          "fedctl-gate", "python", "python3"})


def stray_processes(root: Path, uid: int) -> list[tuple[int, str]]:
    """Lab programs run by `uid` whose command line names a path under `root`, other than us and our parents.

    Every lab process names its lab directory in its arguments (data dir, config file, pid file), so
    these are lab processes whose pid file was lost or overwritten: left running, they hold the lab's
    addresses and a new lab's servers cannot bind them."""
    needle = (str(root).rstrip("/") + "/").encode()
    ours = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            if entry.stat().st_uid != uid or (entry / "comm").read_text().strip() not in LAB_PROGRAMS:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if needle in cmdline and not _has_exited(int(entry.name)):
            found.append((int(entry.name), cmdline.decode(errors="replace").strip()))
    return found


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def kill_strays(root: Path, uid: int) -> list[str]:
    """SIGKILL the stray lab processes under `root` (see stray_processes); returns what was killed."""
    killed = []
    for pid, cmdline in stray_processes(root, uid):
        _signal(pid, signal.SIGKILL)
        killed.append(f"pid {pid}: {cmdline[:160]}")
    return killed


def kill_postmaster(data_dir: Path) -> None:
    """SIGKILL a postmaster left behind (its pid is the first line of postmaster.pid) and its group."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if b"postgres" in cmdline and str(data_dir).encode() in cmdline:
        _killpg(pid)
        _signal(pid, signal.SIGKILL)
