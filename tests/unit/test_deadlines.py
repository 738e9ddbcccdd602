"""Every client finishes within its deadline against a peer that trickles its answer one byte at a time.

A socket timeout bounds each read, so such a peer used to keep a read going for as long as it liked
(`status --timeout 2` past 45 s, the gate on Patroni's promotion path past 40 s). Each test first proves
the peer answered at all (bytes arrive), then that the client gave up on time."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from federation.dcs.etcd3 import EtcdDCS
from federation.errors import DCSError
from federation.gate_core import READ_TIMEOUT, run
from federation.gate_store import STORE_DEADLINE
from federation.http_deadline import DeadlineExceeded, exchange
from federation.store_config import StoreHost
from federation.store_quorum import probe_etcd
from tests.unit.trickler import took, trickling_peer

SLACK = 0.4  # thread start-up and scheduling on a loaded 2-core CI machine


def test_the_peer_does_answer_so_a_timeout_is_the_clients_doing() -> None:
    with trickling_peer() as (host, port), socket.create_connection((host, port), timeout=2) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(1) == b"H"


def test_exchange_ends_at_its_deadline() -> None:
    with trickling_peer() as (host, port):
        seconds, error = took(exchange, host, port, "GET", "/", timeout=0.5)
    assert isinstance(error, DeadlineExceeded), error
    assert 0.45 < seconds < 0.5 + SLACK


def test_an_etcd_read_ends_at_the_adapters_timeout() -> None:
    with trickling_peer() as (host, port):
        etcd = EtcdDCS([(host, port)], label="dc1", timeout=0.5)
        seconds, error = took(etcd.get, "/fed/x")
    assert isinstance(error, DCSError), error
    assert seconds < 0.5 + SLACK


def test_the_store_quorum_probe_ends_at_its_timeout() -> None:
    with trickling_peer() as (host, port):
        seconds, error = took(lambda: probe_etcd(StoreHost(address=f"{host}:{port}", site="dc1"), 0.5))
        probe = probe_etcd(StoreHost(address=f"{host}:{port}", site="dc1"), 0.3)
    assert error is None and not probe.serving and "0.3 s" in probe.reason, probe
    assert seconds < 0.5 + SLACK


@pytest.mark.timeout(30)
def test_the_gate_decides_within_its_deadline_when_every_peer_trickles() -> None:
    with trickling_peer() as (host, port):
        address = f"{host}:{port}"
        config = {"dc": "dc2", "fencing": "strict", "initial_primary": "dc1",
                  "datacenters": [{"dc": dc, "kind": "etcd3", "hosts": [address], "key": "/fed/x"}
                                  for dc in ("dc1", "dc2")],
                  "store": {"kind": "etcd3", "hosts": [address, address, address], "namespace": "/fed-store/",
                            "federation": "f", "record_key": "/fed-store/record", "lease_key": "/fed-store/lease"}}
        seconds, error = took(run, config)
        decision = run(config)
    assert error is None and not decision.allowed, decision
    assert seconds < max(READ_TIMEOUT, STORE_DEADLINE) + SLACK


@pytest.mark.timeout(60)
def test_status_returns_within_its_timeout_when_every_peer_trickles(tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner

    from federation.cli import cli

    with ExitStack() as stack:
        peers = [stack.enter_context(trickling_peer(f"127.0.40.{20 + i}")) for i in range(6)]
        (dcs1, dcs2, *apis) = [f"{h}:{p}" for h, p in peers]
        data = {"federation": "trickle", "credentials": {
                    role: {"username": role, "password": {"value": "x"}}
                    for role in ("superuser", "replication", "rewind")},
                "pgbackrest": {"stanza": "fed", "repo_path": "/var/lib/pgbackrest"},
                "datacenters": [
                    {"name": "dc1", "role": "primary", "dcs": {"etcd3": {"hosts": [dcs1]}},
                     "members": [{"name": f"n{i + 1}", "host": apis[i].split(":")[0], "port": 5432,
                                  "api": apis[i]} for i in (0, 1)]},
                    {"name": "dc2", "role": "standby", "upstream": "dc1", "dcs": {"etcd3": {"hosts": [dcs2]}},
                     "members": [{"name": f"n{i + 1}", "host": apis[i].split(":")[0], "port": 5432,
                                  "api": apis[i]} for i in (2, 3)]}]}
        path = tmp_path / "trickle.yaml"
        path.write_text(yaml.safe_dump(data))
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["status", "-t", str(path), "--timeout", "1"])
        seconds = time.monotonic() - started
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "n1" in result.output and "answer within" in result.output, "status asked every peer and says so"
    assert seconds < 1 + 1.0, f"status --timeout 1 took {seconds:.2f} s"
