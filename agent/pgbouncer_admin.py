"""Commands on PgBouncer's admin console (the `pgbouncer` pseudo-database): RELOAD, PAUSE, RESUME, SHOW.

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
    return admin_query(conninfo, command, password)[1]


def admin_query(conninfo: str, command: str, password: str | None = None
                ) -> tuple[list[str], list[tuple[str | None, ...]]]:
    """Run one console command; returns its column names and rows (text)."""
    full = admin_conninfo(conninfo, password)
    try:
        with psycopg.connect(full, autocommit=True) as conn:
            result = conn.pgconn.exec_(command.encode())
            if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
                message = (result.error_message or b"").decode(errors="replace").strip()
                raise PgBouncerUnreachable(f"{describe(conninfo)} refused {command}: {message}")
            names = [(result.fname(col) or b"").decode() for col in range(result.nfields)]
            return names, [tuple(None if (v := result.get_value(row, col)) is None else v.decode()
                                 for col in range(result.nfields)) for row in range(result.ntuples)]
    except psycopg.Error as exc:
        raise PgBouncerUnreachable(f"{describe(conninfo)} does not answer: {_first_line(exc)}") from None


def reload(conninfo: str, password: str | None = None) -> None:
    """RELOAD: PgBouncer re-reads its configuration (and %include files). Client connections stay; server
    connections to a database whose host changed are closed as they are released, so the next
    transaction of every client goes to the new host."""
    admin_command(conninfo, "RELOAD", password)


class PendingPause:
    """PAUSE, sent without waiting: PgBouncer answers only once every running transaction has ended
    (transaction pooling) and its server connections are closed; new transactions wait until RESUME.
    `done()` looks whether it answered yet. A RESUME sent meanwhile (from another connection) leaves this
    PAUSE unanswered for good, so `close()` hangs up on it."""

    def __init__(self, conninfo: str, password: str | None = None) -> None:
        self.where = describe(conninfo)
        self._answered = False
        try:
            self._conn = psycopg.connect(admin_conninfo(conninfo, password), autocommit=True)
            self._conn.pgconn.send_query(b"PAUSE")
        except psycopg.Error as exc:
            raise PgBouncerUnreachable(f"{self.where} does not answer: {_first_line(exc)}") from None

    def done(self) -> bool:
        """True once PAUSE completed (and on every later call); raises PgBouncerUnreachable when PgBouncer
        refused it or hung up."""
        if self._answered:
            return True
        pgconn = self._conn.pgconn
        try:
            pgconn.consume_input()
            if pgconn.is_busy():
                return False
            result = pgconn.get_result()
            while pgconn.get_result() is not None:
                pass
        except psycopg.Error as exc:
            raise PgBouncerUnreachable(f"{self.where} dropped the PAUSE: {_first_line(exc)}") from None
        if result is None or result.status != pq.ExecStatus.COMMAND_OK:
            message = (result.error_message if result else b"no answer").decode(errors="replace").strip()
            if "already suspended/paused" in message:  # paused by us before a restart of the follower
                self._answered = True
                return True
            raise PgBouncerUnreachable(f"{self.where} refused PAUSE: {message}")
        self._answered = True
        return True

    def close(self) -> None:
        self._conn.close()


def resume(conninfo: str, password: str | None = None) -> None:
    """RESUME: held transactions go on, on new server connections made from the current configuration. A
    PgBouncer that is not paused answers with an error, which is what we wanted: it is not paused."""
    try:
        admin_command(conninfo, "RESUME", password)
    except PgBouncerUnreachable as exc:
        if "not paused" not in exc.message.lower():
            raise


def clients_in_transaction(conninfo: str, password: str | None = None) -> list[str]:
    """The clients holding a server connection (in transaction pooling: inside a transaction), which a
    PAUSE waits for: "user@addr:port (application) since HH:MM:SS"."""
    names, rows = admin_query(conninfo, "SHOW CLIENTS", password)
    found = []
    for row in rows:
        client = dict(zip(names, row, strict=False))
        if not client.get("link"):
            continue
        who = f"{client.get('user')}@{client.get('addr')}:{client.get('port')}"
        if client.get("application_name"):
            who += f" ({client['application_name']})"
        since = (client.get("request_time") or "").removesuffix(" UTC").split(" ")[-1]
        found.append(f"{who} since {since}" if since else who)
    return found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
