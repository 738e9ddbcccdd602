"""Commands on PgBouncer's admin console (the `pgbouncer` pseudo-database): RELOAD, SHOW DATABASES.

The console speaks only the simple query protocol, so commands go through libpq's PQexec
(`pgconn.exec_`) rather than psycopg's extended-protocol `execute`. The password comes from the
conninfo when it holds one, else from the caller (the topology's superuser credential); it is never
logged, and errors name only the host and port.
"""

from __future__ import annotations

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from federation.errors import FedError

CONNECT_TIMEOUT = 2


class PgBouncerUnreachable(FedError):
    """The admin console did not answer or refused the command."""


def admin_conninfo(conninfo: str, password: str | None) -> str:
    """`conninfo` with dbname=pgbouncer, a connect timeout and `password` unless it has one already."""
    params = conninfo_to_dict(conninfo)
    params.setdefault("dbname", "pgbouncer")
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    if password is not None and not params.get("password"):
        params["password"] = password
    return make_conninfo("", **params)


def describe(conninfo: str) -> str:
    params = conninfo_to_dict(conninfo)
    return f"PgBouncer admin console {params.get('host', 'localhost')}:{params.get('port', 6432)}"


def admin_command(conninfo: str, command: str, password: str | None = None) -> list[tuple[str | None, ...]]:
    """Run one console command; returns its rows (text), or [] for commands without any."""
    full = admin_conninfo(conninfo, password)
    try:
        with psycopg.connect(full, autocommit=True) as conn:
            result = conn.pgconn.exec_(command.encode())
            if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
                message = (result.error_message or b"").decode(errors="replace").strip()
                raise PgBouncerUnreachable(f"{describe(conninfo)} refused {command}: {message}")
            return [tuple(None if (v := result.get_value(row, col)) is None else v.decode()
                          for col in range(result.nfields)) for row in range(result.ntuples)]
    except psycopg.Error as exc:
        raise PgBouncerUnreachable(f"{describe(conninfo)} does not answer: {_first_line(exc)}") from None


def reload(conninfo: str, password: str | None = None) -> None:
    """RELOAD: PgBouncer re-reads its configuration (and %include files). Client connections stay; server
    connections to a database whose host changed are closed as they are released, so the next
    transaction of every client goes to the new host."""
    admin_command(conninfo, "RELOAD", password)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
