"""Which members of the federation store answer from here, each probed on its own with a short deadline.

The count is what an operator needs when the store refuses ("0 of 3 members answer"), and the store
sends its requests only to members that answered, so that a member behind a cut costs one probe
deadline instead of one request timeout per attempt. A member answers when it serves: an etcd member
that reports a raft leader (`/v3/maintenance/status`), a ZooKeeper server whose `srvr` reports a Mode
(one cut off from its quorum says it is "not currently serving requests").
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException

from federation.http_deadline import exchange
from federation.store_config import StoreHost
from federation.tls_files import ClientTLS


@dataclass(frozen=True)
class MemberProbe:
    host: StoreHost
    serving: bool
    reason: str  # "serving", "no answer within 0.5 s", "answers, but has no leader ...", ...
    leads: bool = False
    applied: int | None = None  # etcd: the raft index this member has applied
    up_without_leader: bool = False  # answers, but follows no leader (cut off, or an election under way)


@dataclass(frozen=True)
class QuorumView:
    probes: tuple[MemberProbe, ...]

    @property
    def serving(self) -> list[StoreHost]:
        """The members that serve, best first: the leader, then by how much of the log each has applied. A
        member that has just come back from behind a cut serves before it has caught up, and a linearizable
        read sent to it waits until it has (seen for seconds after a heal on the loaded lab)."""
        ranked = sorted((p for p in self.probes if p.serving),
                        key=lambda p: (not p.leads, -(p.applied if p.applied is not None else -1)))
        return [p.host for p in ranked]

    @property
    def total(self) -> int:
        return len(self.probes)

    @property
    def majority(self) -> int:
        return self.total // 2 + 1

    @property
    def has_majority(self) -> bool:
        """Whether the store's majority can be reached from here: some member serves, that is it follows a
        leader that holds a majority, and forwards our requests to it. Counting only the members reached
        directly would fence a primary DC that is cut from one other site but still reaches the majority
        through the witness (a cut that is not transitive). A member that still believes in a leader it
        lost (etcd: about 1.8 s after a cut) costs one request deadline, after which the call fails."""
        return bool(self.serving)

    @property
    def electing(self) -> bool:
        """Whether a majority of the members is up but none follows a leader: an election under way (etcd
        needs its election timeout, ~1-2 s, after losing its leader to a cut), not a cut from this side,
        where the members that answer are a minority."""
        return not self.serving and sum(p.up_without_leader for p in self.probes) >= self.majority

    def describe(self) -> str:
        return "; ".join(f"{p.host.address} ({p.host.site}): {p.reason}" for p in self.probes)


def probe_etcd(host: StoreHost, timeout: float, tls: ClientTLS | None = None) -> MemberProbe:
    try:
        status_code, raw = exchange(host.host, host.port, "POST", "/v3/maintenance/status", body=b"{}",
                                    headers={"Content-Type": "application/json"}, timeout=timeout,
                                    tls=tls.context() if tls is not None else None)
    except TimeoutError:
        return MemberProbe(host, False, f"no answer within {timeout:g} s")
    except (OSError, HTTPException) as exc:
        return MemberProbe(host, False, (getattr(exc, "strerror", None) or type(exc).__name__).lower())
    if status_code != 200:
        return MemberProbe(host, False, f"HTTP {status_code}")
    try:
        status = json.loads(raw)
    except ValueError:
        return MemberProbe(host, False, "not an etcd answer")
    if not isinstance(status, dict):
        return MemberProbe(host, False, "not an etcd answer")
    leader = str(status.get("leader") or "0")
    if leader == "0":
        return MemberProbe(host, False, "answers, but has no leader (cut off from its peers, or electing one)",
                           up_without_leader=True)
    header = status.get("header")
    member_id = str(header.get("member_id") or "") if isinstance(header, dict) else ""
    return MemberProbe(host, True, "serving", leads=member_id == leader, applied=_index(status))


def _index(status: dict[str, object]) -> int | None:
    raw = status.get("raftAppliedIndex", status.get("raftIndex"))
    try:
        return int(str(raw))
    except ValueError:
        return None


def probe_zookeeper(host: StoreHost, timeout: float, tls: ClientTLS | None = None) -> MemberProbe:
    try:
        with socket.create_connection((host.host, host.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"srvr")
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except TimeoutError:
        return MemberProbe(host, False, f"no answer within {timeout:g} s")
    except OSError as exc:
        return MemberProbe(host, False, (exc.strerror or type(exc).__name__).lower())
    text = b"".join(chunks).decode(errors="replace")
    if "Mode:" in text:
        return MemberProbe(host, True, "serving", leads="Mode: leader" in text, applied=_zxid(text))
    if "not currently serving" in text:
        return MemberProbe(host, False, "answers, but is not serving (cut off from its quorum, or electing a leader)",
                           up_without_leader=True)
    # `srvr` is not on the server's 4lw.commands.whitelist: it accepted TCP, which is all we can tell.
    return MemberProbe(host, True, "accepts connections (srvr not allowed)")


def _zxid(srvr: str) -> int | None:
    for line in srvr.splitlines():
        if line.startswith("Zxid:"):
            try:
                return int(line.split(":", 1)[1].strip(), 16)
            except ValueError:
                return None
    return None


def probe_members(kind: str, hosts: Sequence[StoreHost], timeout: float,
                  tls: ClientTLS | None = None) -> QuorumView:
    """Probe every member in parallel; returns after at most about `timeout` seconds."""
    probe = probe_etcd if kind == "etcd3" else probe_zookeeper
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return QuorumView(tuple(pool.map(lambda h: probe(h, timeout, tls), hosts)))
