"""Keeping an haproxy.cfg in step with the topology file: detect a change, re-render, validate, reload.

HAProxy's read-write backend follows the primary DC by itself (each server is checked on its agent's
GET /primary), so only a change of the topology (members added, moved or removed) needs a new
configuration. A new file is written beside the old one, checked with `haproxy -c`, renamed over it,
then the master process gets SIGUSR2 (master-worker mode: the listening sockets survive the reload).
An invalid topology or a configuration HAProxy rejects is logged and the running one is kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from federation.errors import FedError
from federation.topology import Topology, load_topology

log = logging.getLogger("agent.entrypoint")
CHECK_TIMEOUT = 30


class ReloadFailed(FedError):
    """HAProxy rejected the new configuration, or its master process could not be signalled."""


class Reloader(Protocol):
    def check(self, config: Path) -> None: ...

    def reload(self) -> None: ...


def atomic_write(path: Path, text: str, *, check: Callable[[Path], None] | None = None) -> None:
    """Write `text` to a temporary file beside `path`, optionally check it, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_if_changed(path: Path, text: str, *, check: Callable[[Path], None] | None = None) -> bool:
    """atomic_write `text` unless `path` holds it already; True when it was written."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    atomic_write(path, text, check=check)
    return True


class HAProxyReloader:
    """The real thing: `haproxy -c -q -f FILE`, then SIGUSR2 to the master pid read from `pidfile`."""

    def __init__(self, pidfile: Path, haproxy: str = "haproxy") -> None:
        self.pidfile = pidfile
        self.haproxy = haproxy

    def check(self, config: Path) -> None:
        try:
            done = subprocess.run([self.haproxy, "-c", "-q", "-f", str(config)], capture_output=True, text=True,
                                  timeout=CHECK_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReloadFailed(f"cannot run {self.haproxy} -c: {exc}") from None
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-1500:]
            raise ReloadFailed(f"haproxy -c rejected the new configuration: {output}")

    def reload(self) -> None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGUSR2)
        except (OSError, ValueError, IndexError) as exc:
            raise ReloadFailed(f"cannot signal the HAProxy master named in {self.pidfile}: {exc}") from None


class TopologyWatch:
    """Notices when the topology file's content changes (mtime and size first, then a digest)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._read_stamp()
        self._digest = self._read_digest()

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def changed(self) -> bool:
        """True once per change of content; a rewrite with the same content (a new mtime) is no change."""
        stamp = self._read_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return False
        self._digest = digest
        return True


class HAProxySync:
    """Re-renders `config` from a topology and reloads HAProxy when the rendered text differs."""

    def __init__(self, config: Path, render: Callable[[Topology], str], reloader: Reloader) -> None:
        self.config = config
        self.render = render
        self.reloader = reloader
        self._reload_pending = False

    def sync(self, topo: Topology) -> bool:
        """Returns True when a new configuration was installed and HAProxy reloaded. Raises FedError
        (the old configuration stays in place) when HAProxy rejects it or cannot be signalled; a
        failed signal is retried at the next call."""
        if write_if_changed(self.config, self.render(topo), check=self.reloader.check):
            self._reload_pending = True
        if not self._reload_pending:
            return False
        self.reloader.reload()
        self._reload_pending = False
        return True


def reload_topology(watch: TopologyWatch, current: Topology) -> Topology:
    """The topology after a change of its file, or `current` when the new file does not validate."""
    try:
        topo = load_topology(watch.path)
    except FedError as exc:
        log.error("the topology file %s changed but is invalid; keeping the previous one: %s", watch.path,
                  exc.message)
        return current
    log.info("the topology file %s changed: federation %s, %d members", watch.path, topo.federation,
             len(list(topo.members())))
    return topo
