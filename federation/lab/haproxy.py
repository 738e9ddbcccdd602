"""The lab's HAProxy: the client entrypoint that follows the primary DC, run as the lab user.

The configuration is `fedctl entrypoint haproxy` with the default binds (federation/entrypoints.py),
written to `<lab dir>/haproxy/haproxy.cfg`, plus an admin stats socket beside it that tests read.
HAProxy runs in master-worker mode in the foreground (-W -db), so the pid we track is the master and
SIGUSR2 reloads the configuration without dropping the listening sockets.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from federation.entrypoints import default_binds, render_haproxy
from federation.errors import LabError
from federation.lab.processes import ManagedProcess, chown_tree, run_as

if TYPE_CHECKING:
    from federation.lab.lab import Lab
    from federation.lab.layout import LabLayout


def haproxy_dir(layout: LabLayout) -> Path:
    return layout.root / "haproxy"


def config_path(layout: LabLayout) -> Path:
    return haproxy_dir(layout) / "haproxy.cfg"


def stats_socket(layout: LabLayout) -> Path:
    return haproxy_dir(layout) / "haproxy.sock"


def haproxy_process(layout: LabLayout) -> ManagedProcess:
    root = haproxy_dir(layout)
    return ManagedProcess("haproxy", root / "haproxy.pid", root / "haproxy.log", str(config_path(layout)))


def write_config(lab: Lab) -> Path:
    binds = default_binds(lab.topo)
    path = config_path(lab.layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_haproxy(lab.topo, read_write_bind=binds.read_write, read_only_bind=binds.read_only,
                                   stats_socket=str(stats_socket(lab.layout))))
    chown_tree(path.parent, lab.user)
    run_as(lab.user, ["haproxy", "-c", "-q", "-f", str(path)], timeout=30)
    return path


def start_haproxy(lab: Lab) -> int:
    """Write the configuration and start HAProxy (left alone when already running). Returns its pid."""
    path = write_config(lab)
    proc = haproxy_process(lab.layout)
    pid = proc.start(lab.user, ["haproxy", "-W", "-db", "-f", str(path)], cwd=path.parent)
    if not proc.running():
        tail = proc.logfile.read_text(errors="replace")[-1500:] if proc.logfile.exists() else ""
        raise LabError(f"HAProxy did not start; {proc.logfile} ends with:\n{tail}")
    return pid


def reload_haproxy(lab: Lab) -> None:
    """Rewrite the configuration and reload it in place (SIGUSR2 to the master)."""
    write_config(lab)
    pid = haproxy_process(lab.layout).pid()
    if pid is None:
        start_haproxy(lab)
        return
    os.kill(pid, signal.SIGUSR2)


def stop_haproxy(layout: LabLayout) -> None:
    haproxy_process(layout).stop(timeout=10)


def haproxy_rows(layout: LabLayout) -> list[list[str]]:
    """Rows (DC, process, address, pid or '-') for `fedctl lab status`."""
    binds = default_binds(layout.topo)
    return [["-", "haproxy", f"rw {binds.read_write} ro {binds.read_only}",
             str(haproxy_process(layout).pid() or "-")]]


STAT_STATUS = 17  # the `status` column of `show stat` (UP, UP 1/2, NOLB, DOWN, ...)


def stat_rows(sock_path: Path, backend: str) -> dict[str, list[str]]:
    """`show stat` over HAProxy's admin socket: each server of `backend` by name, its CSV fields."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(sock_path))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    rows = {}
    for line in data.decode().splitlines()[1:]:
        fields = line.split(",")
        if len(fields) > STAT_STATUS and fields[0] == backend and fields[1] not in ("BACKEND", "FRONTEND"):
            rows[fields[1]] = fields
    return rows
