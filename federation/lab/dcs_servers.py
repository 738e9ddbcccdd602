"""Starting a DC's DCS servers in the lab: etcd 3.4 or ZooKeeper 3.8, by hand on loopback.

A DC may list several DCS hosts; each becomes one member of that DC's own ensemble. Peer ports are the
client port + 1 (etcd peer; ZooKeeper quorum) and + 2 (ZooKeeper leader election).
"""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

from federation.errors import LabError
from federation.lab.layout import LabLayout
from federation.lab.processes import LabUser, ManagedProcess, chown_tree
from federation.topology import Address, Datacenter

ETCD_BIN = "/usr/bin/etcd"
ZOOKEEPER_JARS = ["/etc/zookeeper/conf", "/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar"]


def server_processes(layout: LabLayout, dc: Datacenter) -> list[tuple[Address, ManagedProcess, Path]]:
    base = layout.dcs_data(dc)
    out = []
    for i, host in enumerate(dc.dcs.hosts, start=1):
        d = base / f"s{i}"
        proc = ManagedProcess(dc.dcs.kind, d / "server.pid", d / "server.log", f"{d}/", netns=layout.netns(dc))
        out.append((host, proc, d))
    return out


def start_dcs(layout: LabLayout, dc: Datacenter, user: LabUser) -> None:
    for i, (host, proc, d) in enumerate(server_processes(layout, dc), start=1):
        if not proc.running() and _accepts_connections(host):
            raise LabError(f"{host}, the {dc.dcs.kind} address of {dc.name}, is already in use by a process this "
                           "lab did not start", hint="stop whatever listens there (`ss -ltnp` names it), or run "
                           "`fedctl lab down` for the lab that started it")
        (d / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
        if dc.dcs.kind == "etcd3":
            argv = etcd_argv(dc, i, host, d / "data")
        else:
            argv = zookeeper_argv(dc, i, d)
        chown_tree(d, user)
        proc.start(user, argv, cwd=d)


def etcd_argv(dc: Datacenter, index: int, host: Address, data: Path) -> list[str]:
    cluster = ",".join(f"{dc.name}-{i}=http://{h.host}:{h.port + 1}" for i, h in enumerate(dc.dcs.hosts, start=1))
    return [
        ETCD_BIN, "--name", f"{dc.name}-{index}", "--data-dir", str(data),
        "--listen-client-urls", f"http://{host}", "--advertise-client-urls", f"http://{host}",
        "--listen-peer-urls", f"http://{host.host}:{host.port + 1}",
        "--initial-advertise-peer-urls", f"http://{host.host}:{host.port + 1}",
        "--initial-cluster", cluster, "--initial-cluster-state", "new",
        "--initial-cluster-token", f"fedlab-{dc.name}", "--listen-metrics-urls", "",
        "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap",
    ]


def zookeeper_argv(dc: Datacenter, index: int, d: Path) -> list[str]:
    host = dc.dcs.hosts[index - 1]
    lines = ["tickTime=500", "initLimit=10", "syncLimit=5", f"dataDir={d / 'data'}",
             f"clientPort={host.port}", f"clientPortAddress={host.host}", "admin.enableServer=false",
             "4lw.commands.whitelist=ruok,srvr,mntr", "maxClientCnxns=200"]
    if len(dc.dcs.hosts) > 1:
        lines += [f"server.{i}={h.host}:{h.port + 1}:{h.port + 2}" for i, h in enumerate(dc.dcs.hosts, start=1)]
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
    return all(_server_healthy(dc.dcs.kind, h, timeout) for h in dc.dcs.hosts)


def _server_healthy(kind: str, host: Address, timeout: float) -> bool:
    try:
        if kind == "etcd3":
            with urllib.request.urlopen(f"http://{host}/health", timeout=timeout) as resp:
                return b'"true"' in resp.read()
        with socket.create_connection((host.host, host.port), timeout=timeout) as sock:
            sock.sendall(b"ruok")
            return sock.recv(16) == b"imok"
    except OSError:
        return False


def wait_dcs(layout: LabLayout, dc: Datacenter, user: LabUser, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    restarts = 0
    while time.monotonic() < deadline:
        if dcs_healthy(dc):
            return
        for _, proc, _d in server_processes(layout, dc):
            if not proc.running():
                if restarts < 2:
                    # One more chance for a server that really exited (e.g. its port was still held); the
                    # 'silent exits' once seen here were the mid-exec misreading fixed in processes.py.
                    restarts += 1
                    start_dcs(layout, dc, user)
                    continue
                tail = _tail(proc.logfile)
                raise LabError(f"{dc.dcs.kind} of {dc.name} exited during start-up; log {proc.logfile}:\n{tail}")
        time.sleep(0.1)
    raise LabError(f"{dc.dcs.kind} of {dc.name} is not healthy after {timeout:.0f} s",
                   hint=f"see {layout.dcs_data(dc)}/s*/server.log")


def dead_servers(layout: LabLayout, dc: Datacenter) -> list[str]:
    """One line per DCS server of `dc` whose process has exited, with the end of its log."""
    return [f"{dc.dcs.kind} {host} of {dc.name} has exited; {proc.logfile} ends with:\n{_tail(proc.logfile, 8)}"
            for host, proc, _d in server_processes(layout, dc) if not proc.running()]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
