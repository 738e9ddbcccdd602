"""The lab's PgBouncer: a pooled client entrypoint kept pointed at the primary DC by the follower.

`<lab dir>/pgbouncer/pgbouncer.ini` listens on 127.0.0.1:P+2 (the third default port,
federation/entrypoints.py) and `%include`s `databases.ini`, which only the entrypoint follower writes
(federation/lab/follower.py). Clients log in as the lab superuser with SCRAM (PostgreSQL 15's method);
the auth file holds that password in clear, because PgBouncer needs it to log in to PostgreSQL with
SCRAM itself, so it is readable by the lab user only. PgBouncer runs in the foreground as the lab user,
tracked by its pid file like every lab process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from federation.entrypoints import default_binds
from federation.errors import LabError
from federation.lab.processes import ManagedProcess, chown_tree

if TYPE_CHECKING:
    from federation.lab.lab import Lab
    from federation.lab.layout import LabLayout

PGBOUNCER = "/usr/sbin/pgbouncer"
LAB_DATABASES = ("postgres",)


def pgbouncer_dir(layout: LabLayout) -> Path:
    return layout.root / "pgbouncer"


def config_path(layout: LabLayout) -> Path:
    return pgbouncer_dir(layout) / "pgbouncer.ini"


def databases_path(layout: LabLayout) -> Path:
    return pgbouncer_dir(layout) / "databases.ini"


def pgbouncer_process(layout: LabLayout) -> ManagedProcess:
    root = pgbouncer_dir(layout)
    return ManagedProcess("pgbouncer", root / "pgbouncer.pid", root / "pgbouncer.log", str(config_path(layout)))


def listen(layout: LabLayout) -> tuple[str, int]:
    host, port = default_binds(layout.topo).pgbouncer.rsplit(":", 1)
    return host, int(port)


def admin_conninfo(layout: LabLayout) -> str:
    """The admin console, without the password (the follower takes it from the topology)."""
    host, port = listen(layout)
    return f"host={host} port={port} user={layout.topo.credentials.superuser.username} dbname=pgbouncer"


def server_tls(layout: LabLayout) -> list[str]:
    """The members accept only TLS (postgresql.tls): PgBouncer verifies each one it connects to."""
    tls = layout.topo.postgres_tls
    return [] if tls is None else ["server_tls_sslmode = verify-full", f"server_tls_ca_file = {tls.ca_file}"]


def render_config(layout: LabLayout) -> str:
    host, port = listen(layout)
    root = pgbouncer_dir(layout)
    superuser = layout.topo.credentials.superuser.username
    return "\n".join([
        f"; The lab's PgBouncer for federation {layout.topo.federation} (federation/lab/pgbouncer.py).",
        "[pgbouncer]",
        f"listen_addr = {host}",
        f"listen_port = {port}",
        f"unix_socket_dir = {root}",
        "auth_type = scram-sha-256",
        f"auth_file = {root / 'userlist.txt'}",
        f"admin_users = {superuser}",
        "pool_mode = transaction",
        "ignore_startup_parameters = extra_float_digits",
        # A server that refuses or vanishes mid-switchover must not hold clients for the defaults (15 s
        # between login retries, 120 s in the queue): the follower re-points within half a second.
        "server_connect_timeout = 2",
        "server_login_retry = 1",
        "query_wait_timeout = 40",  # above the 30 s a switchover may hold transactions (PAUSE)
        *server_tls(layout),
        f"%include {databases_path(layout)}",
        "",
    ])


def write_config(lab: Lab) -> Path:
    root = pgbouncer_dir(lab.layout)
    root.mkdir(parents=True, exist_ok=True)
    path = config_path(lab.layout)
    path.write_text(render_config(lab.layout))
    creds = lab.topo.credentials.superuser
    users = root / "userlist.txt"
    fd = os.open(users, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'"{creds.username}" "{creds.password.resolve()}"\n')
    if not databases_path(lab.layout).exists():
        # Until the follower writes the leader: PgBouncer starts, and refuses clients ("no such database").
        databases_path(lab.layout).write_text("; written by the entrypoint follower\n[databases]\n")
    chown_tree(root, lab.user)
    return path


def start_pgbouncer(lab: Lab) -> int:
    """Write the configuration and start PgBouncer (left alone when already running). Returns its pid."""
    path = write_config(lab)
    proc = pgbouncer_process(lab.layout)
    pid = proc.start(lab.user, [PGBOUNCER, str(path)], cwd=path.parent)
    if not proc.running():
        tail = proc.logfile.read_text(errors="replace")[-1500:] if proc.logfile.exists() else ""
        raise LabError(f"PgBouncer did not start; {proc.logfile} ends with:\n{tail}")
    return pid


def stop_pgbouncer(layout: LabLayout) -> None:
    pgbouncer_process(layout).stop(timeout=10)


def pgbouncer_rows(layout: LabLayout) -> list[list[str]]:
    """Rows (DC, process, address, pid or '-') for `fedctl lab status`."""
    return [["-", "pgbouncer", default_binds(layout.topo).pgbouncer, str(pgbouncer_process(layout).pid() or "-")]]
