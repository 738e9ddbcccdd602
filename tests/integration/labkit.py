"""Helpers for integration tests on the real lab: SQL on members, polling to a deadline, log checks."""

from __future__ import annotations

import ctypes
import itertools
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from federation.lab.health import member_state
from federation.lab.lab import Lab, lab_down, lab_up
from federation.lsn import parse_lsn
from federation.progress import Progress
from federation.topology import Datacenter, Member, Topology, load_topology

TOPOLOGIES = Path(__file__).parent / "topologies"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


@dataclass
class LabHandle:
    topo: Topology
    path: Path

    @property
    def lab(self) -> Lab:
        return Lab.of(self.topo)

    def password(self) -> str:
        return self.topo.credentials.superuser.password.resolve()

    def connect(self, member: Member, timeout: int = 2) -> psycopg.Connection[Any]:
        return psycopg.connect(host=member.host, port=member.port, user="postgres", password=self.password(),
                               dbname="postgres", connect_timeout=timeout, autocommit=True)

    def sql(self, member: Member, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect(member) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def sql_one(self, member: Member, query: str, params: Any = None) -> Any:
        rows = self.sql(member, query, params)
        return rows[0][0] if rows else None

    def member_role(self, member: Member) -> str | None:
        state = member_state(member)
        return state.get("role") if state else None

    def leader_of(self, dc: Datacenter) -> Member:
        for member in dc.members:
            if self.member_role(member) in ("primary", "standby_leader"):
                return member
        raise AssertionError(f"{dc.name} has no leader")

    def dc(self, name: str) -> Datacenter:
        return self.topo.dc(name)

    def patroni_logs(self) -> dict[str, str]:
        out = {}
        for dc, member in self.topo.members():
            log = self.lab.layout.member(dc, member).patroni.logfile
            out[f"{dc.name}/{member.name}"] = log.read_text(errors="replace") if log.exists() else ""
        return out


EVIDENCE_DIR = Path("/var/tmp/pg-federation-evidence")
TELLING = ("demot", "lock", "fenc", "lease", "promot", "DCS", "ERROR", "WARNING", "CRITICAL", "FATAL")


def keep_lab_evidence(handle: LabHandle, test_name: str, lines_per_log: int = 8) -> str:
    """Copy every log of the lab to EVIDENCE_DIR/<test> and return the last telling lines of each Patroni and
    agent log, for the failure report (a CI run shows the report, not the machine)."""
    import shutil

    target = EVIDENCE_DIR / test_name
    shutil.rmtree(target, ignore_errors=True)
    digest = [f"logs kept in {target}"]
    for log in sorted(handle.topo.lab_dir.rglob("*.log")):
        where = log.relative_to(handle.topo.lab_dir)
        (target / where).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, target / where)
        if log.name in ("patroni.log", "agent.log"):
            telling = [line for line in log.read_text(errors="replace").splitlines()
                       if any(word in line for word in TELLING)]
            digest += [f"{where}: {line[:220]}" for line in telling[-lines_per_log:]]
    return "\n".join(digest)


def start_lab(name: str) -> LabHandle:
    handle = LabHandle(load_topology(TOPOLOGIES / f"{name}.yaml"), TOPOLOGIES / f"{name}.yaml")
    lab_down(handle.topo, Progress(quiet=True), wipe=True)
    lab_up(handle.topo, Progress())
    return handle


def stop_lab(handle: LabHandle) -> None:
    lab_down(handle.topo, Progress(quiet=True), wipe=True)


def assert_nothing_left(handle: LabHandle) -> None:
    """After `lab down`: no namespace, link, nftables table or process of the lab is left on the host."""
    from federation.lab.cuts import table_name
    from federation.lab.netns import sites
    from federation.lab.processes import stray_processes

    topo = handle.topo
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    for site in sites(topo):
        assert site.netns not in namespaces, f"namespace {site.netns} left behind"
        assert site.wan_link not in links, f"link {site.wan_link} left behind"
    assert table_name(topo) not in tables, f"nftables table {table_name(topo)} left behind"
    assert stray_processes(topo.lab_dir, handle.lab.user.uid) == []


def bug_lines(handle: LabHandle) -> list[str]:
    """Lines where Patroni says it hit a bug: a test run must never produce one."""
    return [f"{where}: {line}" for where, text in handle.patroni_logs().items() for line in text.splitlines()
            if "please report it as a BUG" in line]


def eventually(what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll `probe` until it returns something truthy, else fail naming `what` and the last error."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
            last = result
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"not true after {timeout:.0f} s: {what} (last: {last!r})")


def enter_netns(netns: str) -> None:
    """Move the calling thread (only it: network namespaces are per thread) into a lab site's namespace,
    so the sockets it opens from now on are a client's standing in that site."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def dc_dsn(topo: Topology, dc: Datacenter, connect_timeout: int = 1) -> str:
    """A libpq DSN reaching the writable member of one DC only, as a client inside that DC would use."""
    password = topo.credentials.superuser.password.resolve()
    return (f"host={','.join(m.host for m in dc.members)} port={','.join(str(m.port) for m in dc.members)} "
            f"user={topo.credentials.superuser.username} password={password} dbname=postgres "
            f"target_session_attrs=read-write connect_timeout={connect_timeout}")


class Writer:
    """Commits one row at a time through the lab's multi-host DSN, as an application would, and
    remembers every commit the server acknowledged (id, time).

    `dsn` overrides the DSN; `netns` runs the client inside a lab site (its thread enters the namespace);
    `create=False` leaves the table to another writer (one on a standby cannot create it)."""

    def __init__(self, handle: LabHandle, table: str = "writer_rows", *, dsn: str | None = None,
                 netns: str | None = None, create: bool = True, first_id: int = 1,
                 error_pause: float = 0.02, track_end: bool = False, pace: float = 0.0) -> None:
        import threading

        from federation.lab.lab import lab_dsn

        self.dsn = dsn or lab_dsn(handle.topo).replace("connect_timeout=2", "connect_timeout=1")
        # Extra psycopg.connect arguments, e.g. prepare_threshold=None behind PgBouncer's transaction pooling.
        self.connect_kwargs: dict[str, Any] = {}
        self.table = table
        self.netns = netns
        self.first_id = first_id
        self.error_pause = error_pause
        self.pace = pace  # seconds between two commits (0: back to back, as fast as the server answers)
        self.acked: list[tuple[int, float]] = []
        self.lsn_of: dict[int, int] = {}  # the WAL insert position read inside the commit's transaction
        # With `track_end`: the insert position read right after the commit returned, an upper bound of where
        # its commit record ends (other sessions' WAL may come between lsn_of and the commit record).
        self.track_end = track_end
        self.end_lsn_of: dict[int, int] = {}
        self.errors = 0
        self.answers = 0  # errors the server itself sent (it answered, e.g. "read-only"), not timeouts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if create:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, "
                             "at timestamptz DEFAULT now())")

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=30)

    def _run(self) -> None:
        if self.netns is not None:
            enter_netns(self.netns)
        next_id = self.first_id
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, **self.connect_kwargs)
                conn.execute(f"INSERT INTO {self.table} (id) VALUES (%s)", (next_id,))
                row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
                conn.commit()
                self.acked.append((next_id, time.monotonic()))
                if row:
                    self.lsn_of[next_id] = parse_lsn(row[0])
                if self.track_end:
                    end = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
                    conn.commit()
                    if end:
                        self.end_lsn_of[next_id] = parse_lsn(end[0])
                next_id += 1
                if self.pace:
                    self._stop.wait(self.pace)
            except psycopg.Error as exc:
                self.errors += 1
                if getattr(exc, "sqlstate", None) or "read-only" in str(exc) or "hot standby" in str(exc):
                    self.answers += 1
                if conn is not None:
                    conn.close()
                conn = None
                next_id += 1  # the outcome of that id is unknown: never reuse it
                time.sleep(self.error_pause)
        if conn is not None:
            conn.close()

    def longest_gap(self) -> float:
        """The longest time between two acknowledged commits: the write outage the client saw."""
        times = [t for _, t in self.acked]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def missing_on(self, handle: LabHandle, member: Member) -> list[int]:
        """Acknowledged ids absent on `member`; a running writer's later commits are not counted."""
        acked = list(self.acked)
        present = {row[0] for row in handle.sql(member, f"SELECT id FROM {self.table}")}
        return [i for i, _ in acked if i not in present]


def fedctl(handle: LabHandle, *args: str, timeout: float = 180,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI on the lab's topology, as a user would (`env`: variables added, e.g. failpoints)."""
    import sys

    return subprocess.run([sys.executable, "-m", "federation", *args, "-t", str(handle.path)],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, **env} if env else None)


def fedctl_in(handle: LabHandle, site: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as an operator standing inside a site of the namespace lab (`fedctl lab exec`)."""
    import sys

    inner = [sys.executable, "-m", "federation", *args, "-t", str(handle.path)]
    return subprocess.run([sys.executable, "-m", "federation", "lab", "exec", site, "-t", str(handle.path), "--",
                           *inner], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def wait_for_no_lease(handle: LabHandle, timeout: float = 40.0) -> None:
    """After the primary DC was lost: wait until its lease in the federation store has expired, since
    promote-dc refuses while it lives (the DC might still reach the store's majority)."""
    from federation.store import FederationStore

    store = handle.topo.federation_store
    if store is None:
        return
    eventually("the lost primary DC's lease to expire in the federation store",
               lambda: FederationStore(store, handle.topo.federation).read_lease().holder is None, timeout=timeout,
               interval=0.5)


def agent_get(member: Member, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET `path` of the member's fedctl agent, over https with the topology's agent client certificate
    when the agents serve TLS (as HAProxy's checks do). (status, body); an HTTP error is a status too."""
    from http.client import HTTPException

    from agent.settings import default_listen
    from federation.http_deadline import exchange

    listen = default_listen(member)
    tls = member.agent_tls
    try:
        return exchange(listen.host, listen.port, "GET", path, timeout=timeout,
                        tls=tls.client().context() if tls is not None else None)
    except HTTPException as exc:
        raise OSError(f"agent {listen} answered garbage: {exc}") from exc


def metrics_of(member: Member) -> dict[str, float]:
    """The member's agent's /metrics, each sample as `name{label=value,...}` (or `name`) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    code, body = agent_get(member, "/metrics")
    assert code == 200, f"{member.name}'s agent answered /metrics with {code}"
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values
