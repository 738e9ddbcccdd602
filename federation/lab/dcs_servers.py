"""Starting a DC's DCS servers in the lab: etcd 3.4 or ZooKeeper 3.8, by hand on loopback.

A DC may list several DCS hosts; each becomes one member of that DC's own ensemble. Peer ports are the
client port + 1 (etcd peer; ZooKeeper quorum) and + 2 (ZooKeeper leader election).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from federation.errors import LabError
from federation.http_deadline import exchange
from federation.lab.layout import LabLayout
from federation.lab.netns import netns_of
from federation.lab.processes import LabUser, ManagedProcess, chown_tree
from federation.lab.tls_certs import etcd_cert_name, lab_ca
from federation.pgbackrest_layout import PgBackRestTLS
from federation.tls_files import ClientTLS
from federation.topology import Address, Datacenter

ETCD_BIN = "/usr/bin/etcd"
ZOOKEEPER_JARS = ["/etc/zookeeper/conf", "/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar"]


@dataclass(frozen=True)
class ServerGroup:
    """One ensemble the lab runs: a DC's own DCS, or the federation store (one member per site)."""

    name: str  # the DC's name, or "store"
    kind: str  # etcd3 or zookeeper
    hosts: tuple[Address, ...]
    data_dir: Path
    netns: tuple[str | None, ...]  # each member's network namespace (namespace labs)
    tls: PgBackRestTLS | None = None  # etcd over TLS with client certificates: the lab CA's server certificates
    client: ClientTLS | None = None  # the certificate the lab's own health checks present


def _etcd_tls(layout: LabLayout, kind: str) -> tuple[PgBackRestTLS | None, ClientTLS | None]:
    wanted = layout.topo.etcd_tls
    if kind != "etcd3" or wanted is None:
        return None, None
    return lab_ca(layout.topo, wanted.ca_file, "etcd_tls.ca_file"), wanted.client()


def dc_group(layout: LabLayout, dc: Datacenter) -> ServerGroup:
    return ServerGroup(dc.name, dc.dcs.kind, tuple(dc.dcs.hosts), layout.dcs_data(dc),
                       tuple(layout.netns(dc) for _ in dc.dcs.hosts), *_etcd_tls(layout, dc.dcs.kind))


def store_group(layout: LabLayout) -> ServerGroup | None:
    """The federation store's members, each in its own site (None when the topology names no store)."""
    store = layout.topo.federation_store
    if store is None:
        return None
    hosts = tuple(Address.model_validate(h.address) for h in store.hosts)
    return ServerGroup("store", store.kind, hosts, layout.root / "store",
                       tuple(netns_of(layout.topo, h.site) for h in store.hosts), *_etcd_tls(layout, store.kind))


def store_members_in(layout: LabLayout, *sites: str) -> set[int]:
    """The numbers (from 1) of the store members standing in any of `sites`."""
    store = layout.topo.federation_store
    return {i for i, h in enumerate(store.hosts, start=1) if h.site in sites} if store else set()


def store_processes_in(layout: LabLayout, *sites: str) -> list[tuple[Address, ManagedProcess]]:
    """The store members standing in any of `sites` (lab kill takes them with their DC)."""
    group = store_group(layout)
    if group is None:
        return []
    wanted = store_members_in(layout, *sites)
    return [(host, proc) for i, (host, proc, _d) in enumerate(group_processes(group), start=1) if i in wanted]


def group_processes(group: ServerGroup) -> list[tuple[Address, ManagedProcess, Path]]:
    out = []
    for i, (host, netns) in enumerate(zip(group.hosts, group.netns, strict=True), start=1):
        d = group.data_dir / f"s{i}"
        proc = ManagedProcess(group.kind, d / "server.pid", d / "server.log", f"{d}/", netns=netns)
        out.append((host, proc, d))
    return out


def server_processes(layout: LabLayout, dc: Datacenter) -> list[tuple[Address, ManagedProcess, Path]]:
    return group_processes(dc_group(layout, dc))


def start_dcs(layout: LabLayout, dc: Datacenter, user: LabUser) -> None:
    start_group(dc_group(layout, dc), user)


def start_group(group: ServerGroup, user: LabUser, only: set[int] | None = None) -> None:
    """Start the members of `group` that do not run (only those numbered in `only`, from 1, when given)."""
    for i, (host, proc, d) in enumerate(group_processes(group), start=1):
        if only is not None and i not in only:
            continue
        if not proc.running() and _accepts_connections(host):
            raise LabError(f"{host}, the {group.kind} address of {group.name}, is already in use by a process this "
                           "lab did not start", hint="stop whatever listens there (`ss -ltnp` names it), or run "
                           "`fedctl lab down` for the lab that started it")
        (d / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
        if group.kind == "etcd3":
            argv = etcd_argv(group, i, d / "data", group.tls)
        else:
            argv = zookeeper_argv(group, i, d)
        chown_tree(d, user)
        proc.start(user, argv, cwd=d)


def etcd_argv(group: ServerGroup, index: int, data: Path, tls: PgBackRestTLS | None = None) -> list[str]:
    """An etcd member; with `tls` (the lab CA), clients and peers over TLS with client certificates required."""
    host = group.hosts[index - 1]
    scheme = "https" if tls is not None else "http"
    cluster = ",".join(f"{group.name}-{i}={scheme}://{h.host}:{h.port + 1}"
                       for i, h in enumerate(group.hosts, start=1))
    secured: list[str] = []
    if tls is not None:
        name = etcd_cert_name(group.name, index)
        files = ["--cert-file", tls.cert(name), "--key-file", tls.key(name), "--trusted-ca-file", tls.ca_file]
        secured = [*files, "--client-cert-auth", *(f"--peer-{f[2:]}" if f.startswith("--") else f for f in files),
                   "--peer-client-cert-auth"]
    return [
        ETCD_BIN, "--name", f"{group.name}-{index}", "--data-dir", str(data),
        "--listen-client-urls", f"{scheme}://{host}", "--advertise-client-urls", f"{scheme}://{host}",
        "--listen-peer-urls", f"{scheme}://{host.host}:{host.port + 1}",
        "--initial-advertise-peer-urls", f"{scheme}://{host.host}:{host.port + 1}",
        *secured,
        "--initial-cluster", cluster, "--initial-cluster-state", "new",
        "--initial-cluster-token", f"fedlab-{group.name}", "--listen-metrics-urls", "",
        "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap",
        *(["--pre-vote"] if len(group.hosts) > 1 else []),
    ]


def zookeeper_argv(group: ServerGroup, index: int, d: Path) -> list[str]:
    host = group.hosts[index - 1]
    lines = ["tickTime=500", "initLimit=10", "syncLimit=5", f"dataDir={d / 'data'}",
             f"clientPort={host.port}", f"clientPortAddress={host.host}", "admin.enableServer=false",
             "4lw.commands.whitelist=ruok,srvr,mntr", "maxClientCnxns=200"]
    if len(group.hosts) > 1:
        lines += [f"server.{i}={h.host}:{h.port + 1}:{h.port + 2}" for i, h in enumerate(group.hosts, start=1)]
        (d / "data" / "myid").write_text(f"{index}\n")
    (d / "zoo.cfg").write_text("\n".join(lines) + "\n")
    return ["/usr/bin/java", "-Xmx256m", "-Dzookeeper.root.logger=INFO,CONSOLE",
            "-Dzookeeper.log.dir=" + str(d), "-cp", ":".join(p for p in ZOOKEEPER_JARS if Path(p).exists()),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(d / "zoo.cfg")]


def _accepts_connections(host: Address) -> bool:
    try:
        with socket.create_connection((host.host, host.port), timeout=0.3):
            return True
    except OSError:
        return False


def dcs_healthy(dc: Datacenter, timeout: float = 1.0) -> bool:
    return all(_server_healthy(dc.dcs.kind, h, timeout, dc.etcd_tls) for h in dc.dcs.hosts)


def group_healthy(group: ServerGroup, timeout: float = 1.0) -> bool:
    return all(_server_healthy(group.kind, h, timeout, group.client) for h in group.hosts)


def _server_healthy(kind: str, host: Address, timeout: float, client: ClientTLS | None = None) -> bool:
    try:
        if kind == "etcd3":
            status, body = exchange(host.host, host.port, "GET", "/health", timeout=timeout,
                                    tls=client.context() if client is not None else None)
            return status == 200 and b'"true"' in body
        # `ruok` answers imok before the server takes sessions; `srvr` names a Mode only once it serves.
        with socket.create_connection((host.host, host.port), timeout=timeout) as sock:
            sock.sendall(b"srvr")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            return b"\nMode: " in answer
    except (OSError, HTTPException):
        return False


def wait_dcs(layout: LabLayout, dc: Datacenter, user: LabUser, timeout: float = 60.0) -> None:
    wait_group(dc_group(layout, dc), user, timeout)


def wait_group(group: ServerGroup, user: LabUser, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    restarts = 0
    while time.monotonic() < deadline:
        if group_healthy(group):
            return
        for _, proc, _d in group_processes(group):
            if not proc.running():
                if restarts < 2:
                    # One more chance for a server that really exited (e.g. its port was still held); the
                    # 'silent exits' once seen here were the mid-exec misreading fixed in processes.py.
                    restarts += 1
                    start_group(group, user)
                    continue
                tail = _tail(proc.logfile)
                raise LabError(f"{group.kind} of {group.name} exited during start-up; log {proc.logfile}:\n{tail}")
        time.sleep(0.1)
    raise LabError(f"{group.kind} of {group.name} is not healthy after {timeout:.0f} s",
                   hint=f"see {group.data_dir}/s*/server.log")


def dead_servers(layout: LabLayout, dc: Datacenter) -> list[str]:
    """One line per DCS server of `dc` whose process has exited, with the end of its log."""
    return [f"{dc.dcs.kind} {host} of {dc.name} has exited; {proc.logfile} ends with:\n{_tail(proc.logfile, 8)}"
            for host, proc, _d in server_processes(layout, dc) if not proc.running()]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
