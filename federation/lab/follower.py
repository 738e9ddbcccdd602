"""The lab's entrypoint follower: `fedctl entrypoint follow` for the lab's PgBouncer and HAProxy.

It runs as the lab user (like the agents, from the lab user's runtime copy of fedctl), reads the lab's
copy of the topology, rewrites `<lab dir>/pgbouncer/databases.ini` and RELOADs PgBouncer when the
primary DC's leader changes, and re-renders the lab's haproxy.cfg when that topology copy changes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from federation.errors import LabError
from federation.lab import haproxy, pgbouncer
from federation.lab.agents import share_secrets_with_lab_user, topology_copy
from federation.lab.health import wait_until
from federation.lab.processes import ManagedProcess

if TYPE_CHECKING:
    from federation.lab.lab import Lab
    from federation.lab.layout import LabLayout


def follower_process(layout: LabLayout) -> ManagedProcess:
    root = pgbouncer.pgbouncer_dir(layout)
    return ManagedProcess("follower", root / "follower.pid", root / "follower.log",
                          f"entrypoint follow -t {topology_copy(layout)} ")


def follower_argv(lab: Lab) -> list[str]:
    layout = lab.layout
    argv = [str(lab.bin / "fedctl"), "entrypoint", "follow", "-t", str(topology_copy(layout)),
            "--pgbouncer-databases", str(pgbouncer.databases_path(layout)),
            "--pgbouncer-admin", pgbouncer.admin_conninfo(layout),
            "--haproxy-config", str(haproxy.config_path(layout)),
            "--haproxy-pidfile", str(haproxy.haproxy_process(layout).pidfile),
            "--haproxy-stats-socket", str(haproxy.stats_socket(layout))]
    for name in pgbouncer.LAB_DATABASES:
        argv += ["--dbname", name]
    return argv


def _not_pointing_yet(lab: Lab) -> str | None:
    """None once PgBouncer's databases file names a leader, else why not (wait_until's convention)."""
    try:
        text = pgbouncer.databases_path(lab.layout).read_text()
    except OSError as exc:
        return str(exc)
    return None if "host=" in text else "its databases file names no leader yet"


def start_follower(lab: Lab, timeout: float = 60.0) -> int:
    """Start the follower (left alone when running) and wait until PgBouncer's file names a leader."""
    share_secrets_with_lab_user(lab)
    env = {"PATH": f"{lab.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}", "PYTHONUNBUFFERED": "1"}
    proc = follower_process(lab.layout)
    pid = proc.start(lab.user, follower_argv(lab), env=env, cwd=pgbouncer.pgbouncer_dir(lab.layout))

    def on_fail() -> str:
        log = proc.logfile.read_text(errors="replace")[-1500:] if proc.logfile.exists() else "(no log)"
        return f"\n--- {proc.logfile} (end)\n{log}"

    if not proc.running():
        raise LabError("the entrypoint follower did not start" + on_fail())
    wait_until("the entrypoint follower to point PgBouncer at a leader", lambda: _not_pointing_yet(lab), timeout,
               on_fail=on_fail)
    return pid


def stop_follower(layout: LabLayout) -> None:
    follower_process(layout).stop(timeout=10)


def follower_rows(layout: LabLayout) -> list[list[str]]:
    """Rows (DC, process, address, pid or '-') for `fedctl lab status`."""
    return [["-", "entrypoint follower", str(pgbouncer.databases_path(layout)),
             str(follower_process(layout).pid() or "-")]]
