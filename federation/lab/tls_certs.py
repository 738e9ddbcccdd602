"""The lab's certificate authority for pgBackRest's TLS servers (openssl): a user brings their own.

One CA key and certificate next to `tls.ca_file`, and per host (every member, and the repository host) a key
and a certificate whose common name is the host's name (pgBackRest's tls-server-auth checks it) and whose
subject alternative names carry the host's address both as an IP and as a DNS name: pgBackRest 2.45 matches
the address it connects to against the DNS names only.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import tempfile
from pathlib import Path

from federation.errors import LabError
from federation.lab.processes import LabUser
from federation.pgbackrest_layout import PgBackRestConfig, PgBackRestTLS
from federation.topology import Topology

DAYS = 30
CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise LabError(f"openssl {args[0]} failed: {(done.stderr or done.stdout).strip()[-300:]}",
                       hint="is openssl installed? (make install)")


def tls_sections(topo: Topology) -> list[PgBackRestConfig]:
    sections = [topo.pgbackrest, *(dc.pgbackrest for dc in topo.datacenters)]
    return [s for s in sections if s is not None and s.tls is not None and s.repo_host is not None]


def lab_ca(topo: Topology, ca_file: str, field: str) -> PgBackRestTLS:
    """The lab's one CA (pgbackrest.tls), which `field` must name: every TLS server of the lab gets its
    certificate from it."""
    tls = next((s.tls for s in tls_sections(topo)), None)
    if tls is None or tls.ca_file != ca_file:
        raise LabError(f"{field} must be the lab CA of pgbackrest.tls (the lab has one CA, and gives each member "
                       "one certificate for pgBackRest, Patroni and PostgreSQL)",
                       hint=f"set {field}: {tls.ca_file if tls else '<pgbackrest.tls.ca_file>'}")
    return tls


def etcd_cert_name(group: str, index: int) -> str:
    """The certificate name of etcd server `index` (from 1) of a DC's DCS (group = the DC) or of the store."""
    return f"etcd-{group}-{index}"


def etcd_servers(topo: Topology) -> dict[str, str]:
    """Certificate name -> address of every etcd server of the lab, when the topology asks for etcd TLS."""
    if topo.etcd_tls is None:
        return {}
    servers = {etcd_cert_name(dc.name, i): a.host for dc in topo.datacenters if dc.dcs.kind == "etcd3"
               for i, a in enumerate(dc.dcs.hosts, start=1)}
    store = topo.federation_store
    if store is not None and store.kind == "etcd3":
        servers |= {etcd_cert_name("store", i): h.host for i, h in enumerate(store.hosts, start=1)}
    return servers


def lab_hosts(topo: Topology, section: PgBackRestConfig) -> dict[str, str]:
    """Certificate name -> address, for every host of the layout and every etcd server."""
    assert section.repo_host is not None
    return {section.repo_host.name: section.repo_host.address, **{m.name: m.host for _dc, m in topo.members()},
            **etcd_servers(topo)}


def peer_sources(topo: Topology, address: str) -> list[str]:
    """The addresses an etcd server's peer connections come from besides its own: etcd checks a peer's
    client certificate against it. On loopback every connection comes from 127.0.0.1; in a namespace lab
    from the site's own address on its WAN link."""
    from federation.lab.netns import sites

    own = [s.own_address for s in sites(topo) if ipaddress.ip_address(address) in s.subnet]
    return ["127.0.0.1", *own]


def _issue(ca_cert: Path, ca_key: Path, cert: Path, key: Path, name: str, address: str | None,
           extra_ips: list[str] | None = None) -> None:
    cert.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = Path(tmp) / "host.csr", Path(tmp) / "host.ext"
        extra = "".join(f",IP:{ip}" for ip in extra_ips or [] if ip != address)
        san = f"subjectAltName=IP:{address},DNS:{address}{extra}\n" if address else ""
        ext.write_text(f"{san}extendedKeyUsage=serverAuth,clientAuth\n")
        _openssl("req", "-new", "-nodes", *CURVE, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-days", str(DAYS), "-out", str(cert), "-extfile", str(ext))


def _agent_client(topo: Topology, ca_cert: Path, ca_key: Path) -> list[Path]:
    """The certificate HAProxy's checks (and fedctl) present to the agents: the key is appended to the
    certificate file, because HAProxy's `crt` reads both from one file."""
    agent = topo.agent_tls
    if agent is None:
        return []
    lab_ca(topo, agent.ca_file, "agent_api.tls.ca_file")
    cert, key = Path(agent.client_cert_file), Path(agent.client_key_file)
    if cert.exists() and key.exists():
        return []
    _issue(ca_cert, ca_key, cert, key, "agent-client", None)
    cert.write_text(cert.read_text() + key.read_text())
    return [cert, key]


def ensure_certs(topo: Topology, user: LabUser) -> list[Path]:
    """Create what is missing (a CA, then each host's key and certificate); returns the files written."""
    written: list[Path] = []
    for section in tls_sections(topo):
        tls = section.tls
        assert tls is not None
        ca_cert = Path(tls.ca_file)
        ca_key = ca_cert.with_suffix(".key")
        ca_cert.parent.mkdir(parents=True, exist_ok=True)
        if not ca_cert.exists():
            _openssl("req", "-x509", "-new", "-nodes", *CURVE, "-keyout", str(ca_key), "-out", str(ca_cert),
                     "-days", str(DAYS), "-subj", f"/CN={topo.federation}-lab-ca")
            written += [ca_cert, ca_key]
        for name, address in lab_hosts(topo, section).items():
            cert, key = Path(tls.cert(name)), Path(tls.key(name))
            if cert.exists() and key.exists():
                continue
            etcd = name.startswith("etcd-") and address is not None
            _issue(ca_cert, ca_key, cert, key, name, address, peer_sources(topo, address) if etcd else None)
            written += [cert, key]
        client = topo.etcd_tls
        if client is not None and not (Path(client.cert_file).exists() and Path(client.key_file).exists()):
            # fedctl's own client certificate towards etcd (the CLI, the agents and the gate present it).
            _issue(ca_cert, ca_key, Path(client.cert_file), Path(client.key_file), "fedctl", None)
            written += [Path(client.cert_file), Path(client.key_file)]
        written += _agent_client(topo, ca_cert, ca_key)
        for path in ca_cert.parent.iterdir():
            if os.geteuid() == 0:
                os.chown(path, user.uid, user.gid)
            os.chmod(path, 0o600 if path.suffix in (".key", ".pem") else 0o644)
    return written
