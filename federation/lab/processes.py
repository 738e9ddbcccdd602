"""Starting and stopping lab processes as the unprivileged lab user, tracked by pid files
(federation.pidfile_process), each in its site's network namespace in a namespace lab."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from federation.errors import LabError
from federation.lab.netns import in_netns
from federation.os_user import OsUser, as_user
from federation.os_user import chown_tree as chown_tree  # re-exported for the lab's callers
from federation.os_user import user_env as user_env
from federation.pidfile_process import PidfileProcess, has_exited, send_signal
from federation.pidfile_process import kill_postmaster as kill_postmaster

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
class ManagedProcess(PidfileProcess):
    """A long-running lab process, in the root namespace or in a namespace lab's site."""

    netns: str | None = None  # the network namespace it runs in (a namespace lab's site), None for the root one

    def launch_argv(self, user: OsUser, argv: Sequence[str]) -> list[str]:
        return as_user_argv(user, argv, self.netns)


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
        if needle in cmdline and not has_exited(int(entry.name)):
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
        send_signal(pid, signal.SIGKILL)
        killed.append(f"pid {pid}: {cmdline[:160]}")
    return killed
