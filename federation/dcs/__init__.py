"""DCS adapters: one abstract interface (base.DCS), one module per backend, `connect(dc)` picks it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from federation.dcs.base import DCS, Versioned

if TYPE_CHECKING:
    from federation.topology import Datacenter

__all__ = ["DCS", "Versioned", "connect"]


def connect(dc: Datacenter, *, timeout: float | None = None) -> DCS:
    """Open the DC's DCS (etcd v3 or ZooKeeper, from the topology). Raises DCSError when unreachable.

    Backends are imported here, not at module import, so commands that never touch a DCS stay fast.
    etcd connects lazily (the first call raises); ZooKeeper needs a session, so it fails right here.
    """
    hosts = [(a.host, a.port) for a in dc.dcs.hosts]
    if dc.dcs.kind == "etcd3":
        from federation.dcs.etcd3 import DEFAULT_TIMEOUT as ETCD_TIMEOUT
        from federation.dcs.etcd3 import EtcdDCS

        return EtcdDCS(hosts, label=dc.name, timeout=timeout or ETCD_TIMEOUT, tls=dc.etcd_tls)
    from federation.dcs.zookeeper import DEFAULT_TIMEOUT as ZK_TIMEOUT
    from federation.dcs.zookeeper import ZooKeeperDCS

    return ZooKeeperDCS(hosts, label=dc.name, timeout=timeout or ZK_TIMEOUT, auth=dc.zookeeper_auth,
                        private_prefix=dc.fedctl_prefix)
