"""Start a real etcd or ZooKeeper on a loopback address for a test, and stop it afterwards.

`start_etcd(dir, host, port)` and `start_zookeeper(dir, host, port)` return a `ServerHandle` once the
server answers (readiness is polled to a deadline, never a fixed sleep). `handle.stop()` kills it
(TERM, then KILL) and is safe to call twice; use `with start_etcd(...) as server:` or call it in a
fixture's teardown. Logs go to `<dir>/<kind>.log` and are printed in the error when start-up fails.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ETCD_BIN = "/usr/bin/etcd"
JAVA_BIN = "/usr/bin/java"
ZOOKEEPER_JARS = ["/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-log4j12.jar",
                  "/usr/share/java/log4j-1.2.jar"]
START_TIMEOUT = 30.0


@dataclass
class ServerHandle:
    kind: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (TERM, then KILL after `timeout`). Idempotent."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL, as in a crash or a power loss."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str) -> int:
    """A TCP port nobody listens on at `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _spawn(kind: str, argv: list[str], directory: Path, env: dict[str, str] | None = None) -> tuple[
        subprocess.Popen[bytes], Path]:
    log_path = directory / f"{kind}.log"
    with open(log_path, "ab") as log:
        # A new session, so the test runner's Ctrl-C does not reach the server before teardown does.
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=directory, env=env, start_new_session=True)
    return process, log_path


def _wait_ready(handle: ServerHandle, probe: object, what: str) -> None:
    assert callable(probe)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not handle.running():
            raise RuntimeError(f"{handle.kind} at {handle.address} exited with code {handle.process.returncode} "
                               f"during start-up; log:\n{handle.log_tail()}")
        if probe():
            return
        time.sleep(0.05)
    handle.stop()
    raise RuntimeError(f"{handle.kind} at {handle.address} did not become ready ({what}) within "
                       f"{START_TIMEOUT:g} s; log:\n{handle.log_tail()}")


def start_etcd(directory: str | os.PathLike[str], host: str, port: int, peer_port: int | None = None,
               name: str = "etcd0") -> ServerHandle:
    """A single-member etcd 3.4 cluster serving clients on host:port (peers on `peer_port`, default free)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    peer_port = peer_port or free_port(host)
    client_url, peer_url = f"http://{host}:{port}", f"http://{host}:{peer_port}"
    argv = [ETCD_BIN, "--name", name, "--data-dir", str(directory / "data"),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{name}={peer_url}", "--initial-cluster-state", "new",
            "--initial-cluster-token", f"test-{port}", "--listen-metrics-urls", "",
            "--log-outputs", "stderr", "--logger", "zap"]
    process, log_path = _spawn("etcd", argv, directory)
    handle = ServerHandle("etcd", host, port, process, log_path, {"peer_port": peer_port})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def healthy() -> bool:
        try:
            with opener.open(f"{client_url}/health", timeout=1) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    _wait_ready(handle, healthy, "GET /health")
    return handle


def _four_letter(host: str, port: int, word: str) -> str:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def start_zookeeper(directory: str | os.PathLike[str], host: str, port: int) -> ServerHandle:
    """A standalone ZooKeeper 3.8 (Debian's jars) serving clients on host:port; ready when it serves."""
    directory = Path(directory)
    conf = directory / "conf"
    data = directory / "data"
    conf.mkdir(parents=True, exist_ok=True)
    data.mkdir(exist_ok=True)
    (conf / "zoo.cfg").write_text(
        f"tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort={port}\n"
        f"clientPortAddress={host}\nadmin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n"
        "maxClientCnxns=200\n")
    (conf / "log4j.properties").write_text(
        "log4j.rootLogger=INFO, CONSOLE\nlog4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1}: %m%n\n")
    jars = [j for j in ZOOKEEPER_JARS if os.path.exists(j)] or glob.glob("/usr/share/java/zookeeper*.jar")
    argv = [JAVA_BIN, "-Xmx256m", "-XX:+UseSerialGC", "-Dzookeeper.log.dir=" + str(directory),
            f"-Dlog4j.configuration=file:{conf / 'log4j.properties'}",
            "-cp", ":".join([str(conf), *jars]), "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(conf / "zoo.cfg")]
    process, log_path = _spawn("zookeeper", argv, directory)
    handle = ServerHandle("zookeeper", host, port, process, log_path)
    # `ruok` answers before the server takes sessions; `srvr` reports a Mode only once it serves.
    _wait_ready(handle, lambda: "Mode: standalone" in _four_letter(host, port, "srvr"), "srvr reports a Mode")
    return handle


@dataclass
class EtcdCluster:
    """A multi-member etcd cluster on loopback addresses; `members[i]` can be stopped and restarted."""

    directory: Path
    members: list[ServerHandle]
    argv: list[list[str]]

    @property
    def addresses(self) -> list[str]:
        return [m.address for m in self.members]

    def stop_member(self, index: int) -> None:
        self.members[index].stop()

    def restart_member(self, index: int) -> None:
        """Start member `index` again on its data directory (it rejoins; readiness is its TCP port)."""
        old = self.members[index]
        if old.running():
            return
        process, log_path = _spawn("etcd", self.argv[index], old.log_path.parent)
        handle = ServerHandle("etcd", old.host, old.port, process, log_path, old.extra)
        self.members[index] = handle

        def listening() -> bool:
            try:
                with socket.create_connection((old.host, old.port), timeout=0.5):
                    return True
            except OSError:
                return False

        _wait_ready(handle, listening, "client port accepts connections")

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_etcd_cluster(directory: str | os.PathLike[str], hosts: list[str], client_port: int,
                       peer_port: int) -> EtcdCluster:
    """An etcd 3.4 cluster of one member per host (clients on client_port, peers on peer_port), returned
    once every member reports healthy (which etcd does only when the cluster has a leader)."""
    directory = Path(directory)
    names = [f"s{i}" for i in range(len(hosts))]
    initial = ",".join(f"{n}=http://{h}:{peer_port}" for n, h in zip(names, hosts, strict=True))
    argvs: list[list[str]] = []
    processes: list[ServerHandle] = []
    for name, host in zip(names, hosts, strict=True):
        member_dir = directory / name
        member_dir.mkdir(parents=True, exist_ok=True)
        client_url, peer_url = f"http://{host}:{client_port}", f"http://{host}:{peer_port}"
        argv = [ETCD_BIN, "--name", name, "--data-dir", str(member_dir / "data"),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"store-{client_port}", "--listen-metrics-urls", "",
                # Pre-vote (default from etcd 3.5 on): a member that starts or rejoins late does not force
                # an election, which answers requests in flight with "leader changed".
                "--pre-vote",
                "--log-outputs", "stderr", "--logger", "zap"]
        argvs.append(argv)
        process, log_path = _spawn("etcd", argv, member_dir)
        processes.append(ServerHandle("etcd", host, client_port, process, log_path, {"peer_port": peer_port}))
    cluster = EtcdCluster(directory, processes, argvs)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for handle in processes:
        def healthy(url: str = f"http://{handle.address}/health") -> bool:
            try:
                with opener.open(url, timeout=1) as response:
                    return bool(json.loads(response.read()).get("health") == "true")
            except (OSError, ValueError):
                return False

        try:
            _wait_ready(handle, healthy, "GET /health")
        except RuntimeError:
            cluster.stop()
            raise
    return cluster


@dataclass
class ZooKeeperEnsemble:
    """A ZooKeeper ensemble on loopback addresses, one server per host; servers can be stopped and restarted."""

    members: list[ServerHandle]
    argv: list[list[str]]

    @property
    def addresses(self) -> list[str]:
        return [m.address for m in self.members]

    def stop_member(self, index: int) -> None:
        self.members[index].stop()

    def restart_member(self, index: int) -> None:
        old = self.members[index]
        if old.running():
            return
        process, log_path = _spawn("zookeeper", self.argv[index], old.log_path.parent)
        self.members[index] = ServerHandle("zookeeper", old.host, old.port, process, log_path)

    def serving(self, index: int) -> bool:
        member = self.members[index]
        return "Mode: " in _four_letter(member.host, member.port, "srvr")

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def __enter__(self) -> ZooKeeperEnsemble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_zookeeper_ensemble(directory: str | os.PathLike[str], hosts: list[str], client_port: int,
                             quorum_port: int, election_port: int) -> ZooKeeperEnsemble:
    """A ZooKeeper 3.8 ensemble of one server per host, returned once every server serves (leader elected)."""
    directory = Path(directory)
    servers = "".join(f"server.{i}={h}:{quorum_port}:{election_port}\n" for i, h in enumerate(hosts, start=1))
    jars = [j for j in ZOOKEEPER_JARS if os.path.exists(j)] or glob.glob("/usr/share/java/zookeeper*.jar")
    handles: list[ServerHandle] = []
    argvs: list[list[str]] = []
    for i, host in enumerate(hosts, start=1):
        conf, data = directory / f"zk{i}" / "conf", directory / f"zk{i}" / "data"
        conf.mkdir(parents=True, exist_ok=True)
        data.mkdir(exist_ok=True)
        (data / "myid").write_text(f"{i}\n")
        (conf / "zoo.cfg").write_text(
            f"tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort={client_port}\n"
            f"clientPortAddress={host}\nadmin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n"
            f"maxClientCnxns=200\nquorumListenOnAllIPs=false\n{servers}")
        (conf / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, CONSOLE\nlog4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1}: %m%n\n")
        argv = [JAVA_BIN, "-Xmx256m", "-XX:+UseSerialGC", f"-Dzookeeper.log.dir={conf.parent}",
                f"-Dlog4j.configuration=file:{conf / 'log4j.properties'}",
                "-cp", ":".join([str(conf), *jars]), "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                str(conf / "zoo.cfg")]
        argvs.append(argv)
        process, log_path = _spawn("zookeeper", argv, conf.parent)
        handles.append(ServerHandle("zookeeper", host, client_port, process, log_path))
    ensemble = ZooKeeperEnsemble(handles, argvs)
    try:
        for index, handle in enumerate(handles):
            _wait_ready(handle, lambda index=index: ensemble.serving(index), "srvr reports a Mode")
    except RuntimeError:
        ensemble.stop()
        raise
    return ensemble
