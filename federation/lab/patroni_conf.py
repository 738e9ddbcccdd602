"""Patroni configuration for one lab member, as a plain dict (rendered to YAML by the caller).

Short timings make the lab fast: ttl 20 is Patroni's minimum (it silently raises lower values).
"""

from __future__ import annotations

from typing import Any

from federation.lab.layout import PG_BIN_DIR, LabLayout
from federation.lab.pgbackrest_conf import ARCHIVE_PUSH, REPLICA_RESTORE
from federation.lab.tls_certs import lab_ca
from federation.patroni_dynamic import ARCHIVE_GET, desired_slots, role_section
from federation.topology import Datacenter, DCRole, Member, SyncMode, Topology

LAB_TIMINGS = {"ttl": 20, "loop_wait": 2, "retry_timeout": 4}


def synchronous_settings(dc: Datacenter) -> dict[str, Any]:
    if dc.synchronous is SyncMode.OFF:
        return {"synchronous_mode": False}
    mode: bool | str = True if dc.synchronous is SyncMode.ON else "quorum"
    return {"synchronous_mode": mode, "synchronous_node_count": dc.synchronous_node_count}


def dynamic_config(topo: Topology, dc: Datacenter) -> dict[str, Any]:
    upstream_of = {d.name: d.upstream for d in topo.datacenters}
    config: dict[str, Any] = {
        **LAB_TIMINGS,
        "maximum_lag_on_failover": 16 * 1024 * 1024,
        **synchronous_settings(dc),
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {
                "wal_level": "replica",
                "hot_standby": "on",
                "wal_log_hints": "on",
                "max_wal_senders": 10,
                "max_replication_slots": 10,
                "wal_keep_size": "128MB",
                "archive_mode": "on",
                "archive_command": ARCHIVE_PUSH,
                "archive_timeout": 60,
                "hot_standby_feedback": "on",
                # How soon a standby retries streaming after a failed attempt: the old primary DC streams
                # from the new one at most this long after its promotion. Lower retries the archive more
                # often too, while the upstream is away (one pgBackRest run each).
                "wal_retrieve_retry_interval": "500ms",
                "max_connections": 100,
            },
        },
    }
    slots = desired_slots(topo, dc, upstream_of)
    if slots:
        config["slots"] = {name: {"type": "physical"} for name in sorted(slots)}
    if dc.role is DCRole.STANDBY and dc.upstream:
        upstream = topo.dc(dc.upstream)
        # Where a standby DC streams from one upstream member (follow_mode), that is the first until the
        # agents see the upstream's leader and re-point it.
        config["standby_cluster"] = (hand_built_standby_cluster(dc, upstream) if topo.lab.unmanaged
                                     else role_section(topo, dc, upstream_of))
    return config


def hand_built_standby_cluster(dc: Datacenter, upstream: Datacenter) -> dict[str, Any]:
    """A standby cluster as a DBA sets one up by hand: one upstream host, the slot, the archive; Patroni's
    default basebackup to clone."""
    return {"host": upstream.members[0].host, "port": upstream.members[0].port, "primary_slot_name": dc.slot_name,
            "restore_command": ARCHIVE_GET}


def client_networks(topo: Topology) -> list[str]:
    """Where the lab's clients connect from: loopback, and in a namespace lab every site's subnet (peers in
    other sites, and the admin host, whose address on a site's link is that subnet's first address)."""
    return ["127.0.0.0/8", *topo.lab.sites.values()]


def restapi_section(topo: Topology, member: Member) -> dict[str, Any]:
    """Patroni's restapi: https with the lab CA's certificate of the member (the one its pgBackRest server
    uses: common name its name, its address as subject alternative name) and basic auth on the unsafe
    endpoints, when the topology's patroni_api asks for them."""
    section: dict[str, Any] = {"listen": str(member.api), "connect_address": str(member.api)}
    api = topo.patroni_api
    if api is None:
        return section
    if api.tls is not None:
        tls = lab_ca(topo, api.tls.ca_file, "patroni_api.tls.ca_file")
        section |= {"certfile": tls.cert(member.name), "keyfile": tls.key(member.name), "cafile": tls.ca_file}
    if api.authentication is not None:
        section["authentication"] = {"username": api.authentication.username,
                                     "password": api.authentication.password.resolve()}
    return section


def ssl_parameters(topo: Topology, member: Member) -> dict[str, str]:
    """PostgreSQL's TLS server settings with the member's lab-CA certificate (the one its pgBackRest server
    and its Patroni REST API use)."""
    wanted = topo.postgres_tls
    if wanted is None:
        return {}
    tls = lab_ca(topo, wanted.ca_file, "postgresql.tls.ca_file")
    return {"ssl": "on", "ssl_cert_file": tls.cert(member.name), "ssl_key_file": tls.key(member.name),
            "ssl_ca_file": tls.ca_file}


def etcd_client_settings(topo: Topology, dc: Datacenter, member: Member) -> dict[str, str]:
    """Patroni's etcd3 client over TLS, presenting the member's lab-CA certificate (etcd requires one)."""
    if dc.dcs.kind != "etcd3" or topo.etcd_tls is None:
        return {}
    tls = lab_ca(topo, topo.etcd_tls.ca_file, "etcd_tls.ca_file")
    return {"protocol": "https", "cacert": tls.ca_file, "cert": tls.cert(member.name), "key": tls.key(member.name)}


def member_config(layout: LabLayout, dc: Datacenter, member: Member, passwords: dict[str, str],
                  pre_promote: str | None = None) -> dict[str, Any]:
    topo = layout.topo
    paths = layout.member(dc, member)
    creds = topo.credentials
    dcs_hosts = [str(h) for h in dc.dcs.hosts]
    # With postgresql.tls the members take only TLS connections, and Patroni's own verify the server.
    ssl = topo.ssl_params() if topo.postgres_tls is not None else {}
    host = "hostssl" if topo.postgres_tls is not None else "host"
    postgresql: dict[str, Any] = {
        "listen": f"{member.host}:{member.port}",
        "connect_address": f"{member.host}:{member.port}",
        "data_dir": str(paths.data),
        "bin_dir": str(PG_BIN_DIR),
        "pgpass": str(paths.pgpass),
        "authentication": {
            "superuser": {"username": creds.superuser.username, "password": passwords["superuser"], **ssl},
            "replication": {"username": creds.replication.username, "password": passwords["replication"], **ssl},
            "rewind": {"username": creds.rewind.username, "password": passwords["rewind"], **ssl},
        },
        "parameters": {"unix_socket_directories": str(paths.socket_dir), "shared_buffers": "64MB",
                       **ssl_parameters(topo, member)},
        "pg_hba": [
            "local all all trust",
            *(rule for net in client_networks(topo) for rule in (
                f"{host} replication {creds.replication.username} {net} scram-sha-256",
                f"{host} all all {net} scram-sha-256")),
        ],
        "create_replica_methods": ["pgbackrest", "basebackup"],
        "pgbackrest": {"command": REPLICA_RESTORE, "keep_data": True, "no_params": True},
        "basebackup": [{"checkpoint": "fast"}],
    }
    if pre_promote:
        postgresql["pre_promote"] = pre_promote
    return {
        "scope": dc.patroni_scope,
        "namespace": dc.dcs.namespace,
        "name": member.name,
        "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
        "restapi": restapi_section(layout.topo, member),
        dc.dcs.kind: {"hosts": dcs_hosts, **etcd_client_settings(topo, dc, member)},
        "bootstrap": {
            "dcs": dynamic_config(topo, dc),
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": postgresql,
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
    }
