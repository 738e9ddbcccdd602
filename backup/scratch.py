"""A throw-away PostgreSQL for restore verification: its own directory, spare loopback port and socket dir.

Everything lives under `<scratch_dir>/verify/<name>-<pid>/` on the repository host, owned by its pgBackRest
user. `ScratchCluster.close()` stops the server (fast shutdown, then SIGKILL of its process group) and removes
the directory; `sweep_stale` does the same for runs whose fedctl process died without cleaning up (SIGKILL,
power loss).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from federation.errors import OperationFailed
from federation.os_user import OsUser, as_user, chown_tree, user_env
from federation.pidfile_process import PidfileProcess, kill_postmaster

OVERRIDES_MARK = "# fedctl verify-restore overrides"


def spare_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def scratch_root(base_dir: Path) -> Path:
    return base_dir / "verify"


@dataclass
class ScratchCluster:
    root: Path
    user: OsUser
    superuser: str
    bin_dir: Path  # the PostgreSQL binaries of the backup set's major version
    host: str = "127.0.0.1"
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def process(self) -> PidfileProcess:
        return PidfileProcess("scratch postgres", self.root / "postgres.pid", self.root / "postgres.log",
                              str(self.data))

    @classmethod
    def create(cls, base_dir: Path, name: str, user: OsUser, superuser: str, bin_dir: Path) -> ScratchCluster:
        root = scratch_root(base_dir) / f"{name}-{os.getpid()}"
        root.mkdir(parents=True, exist_ok=False)
        (root / "owner").write_text(f"{os.getpid()}\n")
        for sub in ("data", "run"):
            (root / sub).mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(root.parent, user.uid, user.gid)
        chown_tree(root, user)
        return cls(root, user, superuser, bin_dir, port=spare_port())

    def write_overrides(self) -> None:
        """Appended to postgresql.auto.conf, so they win over the restored settings: own port and socket,
        no archiving (never push a test timeline into the real archive), a trust-only local pg_hba."""
        hba = self.root / "pg_hba.conf"
        hba.write_text(f"local all {self.superuser} trust\n")
        (self.root / "pg_ident.conf").write_text("")
        lines = [OVERRIDES_MARK, f"port = {self.port}", f"listen_addresses = '{self.host}'",
                 f"unix_socket_directories = '{self.socket_dir}'", "archive_mode = 'off'", "archive_command = ''",
                 "ssl = 'off'",  # the restored settings name the member's certificate, which is not here
                 f"hba_file = '{hba}'", f"ident_file = '{self.root / 'pg_ident.conf'}'",
                 "cluster_name = 'fedctl-verify'", "shared_buffers = '64MB'", "primary_conninfo = ''",
                 "primary_slot_name = ''", "logging_collector = 'off'"]
        with open(self.data / "postgresql.auto.conf", "a") as f:
            f.write("\n" + "\n".join(lines) + "\n")
        chown_tree(self.root, self.user)

    def start(self, env: dict[str, str]) -> None:
        self.process.start(self.user, [str(self.bin_dir / "postgres"), "-D", str(self.data)], env=env, cwd=self.data)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=self.superuser, dbname=dbname,
                               connect_timeout=2, autocommit=True)

    def wait_promoted(self, timeout: float) -> None:
        """Until recovery has ended (recovery_target=immediate + promote); fails early if the server died."""
        deadline = time.monotonic() + timeout
        last = "not started"
        while time.monotonic() < deadline:
            if not self.process.running():
                raise OperationFailed(f"the restored PostgreSQL stopped during recovery:\n{self.log_tail()}",
                                      hint="read the log lines above: missing WAL or a damaged file?")
            try:
                with self.connect() as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and row[0] is False:
                    return
                last = "still in recovery"
            except psycopg.OperationalError as exc:
                last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no connection"
            time.sleep(0.1)
        raise OperationFailed(f"the restored PostgreSQL did not finish recovery within {timeout:.0f} s ({last}):\n"
                              f"{self.log_tail()}")

    def log_tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.process.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def run_tool(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL client tool as the scratch copy's user; returns it whatever its exit code."""
        return subprocess.run(as_user(self.user, argv), env=user_env(self.user), cwd=self.root,
                              capture_output=True, text=True, timeout=timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Fast shutdown (SIGINT), then SIGKILL of the process group; a clean stop lets pg_checksums run."""
        pid = self.process.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.running():
            time.sleep(0.05)
        if self.process.running():
            self.process.kill()

    def close(self) -> None:
        try:
            self.stop(timeout=30)
        finally:
            kill_postmaster(self.data)
            shutil.rmtree(self.root, ignore_errors=True)


def sweep_stale(base_dir: Path) -> list[Path]:
    """Remove scratch runs whose owning fedctl process is gone (stopping a server left running there)."""
    removed: list[Path] = []
    root = scratch_root(base_dir)
    if not root.is_dir():
        return removed
    for run_dir in root.iterdir():
        try:
            owner = int((run_dir / "owner").read_text().strip())
        except (OSError, ValueError):
            owner = -1
        if owner > 0 and Path(f"/proc/{owner}").exists():
            continue
        PidfileProcess("scratch postgres", run_dir / "postgres.pid", run_dir / "postgres.log",
                       str(run_dir / "data")).kill()
        kill_postmaster(run_dir / "data")
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir)
    return removed


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived: unwind (running every `finally`) like Ctrl-C does."""


@contextmanager
def signals_unwind() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into an exception for the duration, so cleanup code runs on them as on Ctrl-C."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(f"received {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
