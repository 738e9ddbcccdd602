"""The federation topology: frozen pydantic models, validated once at the edge.

`load_topology(path)` reads YAML, validates field types and then the federation-wide rules
(unique names, one primary DC, no upstream cycles, ...). Every problem is reported with the file, the
line and the field path, and raises `TopologyError` (exit code 2).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from federation.dcs.zookeeper import ZooKeeperAuth
from federation.errors import BadInput, TopologyError
from federation.field_rules import (
    OS_USER_PATTERN,
    ROLE_NAME_PATTERN,
    absolute_path,
    dcs_namespace,
    federation_name,
    host_port,
    lab_dir,
    no_control,
    not_bool,
)
from federation.job_spec import JobList
from federation.pgbackrest_layout import PgBackRestConfig as PgBackRestConfig  # re-exported
from federation.pgbackrest_layout import pgbackrest_problems
from federation.secret_ref import SecretRef as SecretRef  # re-exported: part of the topology API
from federation.secret_ref import secret_file_problem
from federation.store_config import StoreConfig, store_problems
from federation.tls_files import ClientTLS
from federation.yaml_lines import LineMap, dotted_path, load_yaml_with_lines

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,30}$"
SLOT_PATTERN = r"^[a-z0-9_]{1,63}$"  # what PostgreSQL accepts as a replication slot name
NAME_HELP = "lowercase letters, digits and '_', starting with a letter, at most 31 characters"
DEFAULT_LAB_ROOT = "/var/tmp/pg-federation"


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Credential(Model):
    username: Annotated[str, Field(pattern=ROLE_NAME_PATTERN)]
    password: SecretRef


class Credentials(Model):
    superuser: Credential
    replication: Credential
    rewind: Credential


def _check_host(value: str) -> str:
    if not value or len(value) > 253:
        raise ValueError("host must be an IP address or a DNS name")
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if not all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", label) for label in labels):
        raise ValueError(f"{value!r} is neither an IP address nor a DNS name")
    if labels[-1].isdigit():
        # No top-level domain is all digits, so this is a mistyped IPv4 address such as 10.1.0.300.
        raise ValueError(f"{value!r} is not a valid IP address")
    return value


Port = Annotated[int, BeforeValidator(not_bool), Field(ge=1, le=65535)]


class Address(Model):
    """host:port, written as one string in YAML."""

    host: str
    port: Port

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, str):
            host, sep, port = data.rpartition(":")
            if not sep or not port.isascii() or not port.isdigit():
                raise ValueError(f"{data!r} is not host:port")
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
                if ":" not in host:
                    raise ValueError(f"{data!r}: brackets are for IPv6 addresses only")
            elif ":" in host:
                raise ValueError(f"{data!r}: an IPv6 address needs brackets, as in [{host}]:{port}")
            return {"host": host, "port": int(port)}
        if not isinstance(data, dict):
            raise ValueError(f"expected 'host:port' as a string, got {data!r}")
        return data

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)

    def __str__(self) -> str:
        return host_port(self.host, self.port)


class EtcdDCS(Model):
    hosts: list[Address] = Field(min_length=1)


class ZooKeeperDCS(Model):
    hosts: list[Address] = Field(min_length=1)


class DCSConfig(Model):
    etcd3: EtcdDCS | None = None
    zookeeper: ZooKeeperDCS | None = None
    namespace: str = "/service/"

    @model_validator(mode="after")
    def _one_kind(self) -> DCSConfig:
        if (self.etcd3 is None) == (self.zookeeper is None):
            raise ValueError("declare exactly one DCS kind: 'etcd3' or 'zookeeper'")
        return self

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return dcs_namespace(value)

    @property
    def kind(self) -> Literal["etcd3", "zookeeper"]:
        return "etcd3" if self.etcd3 is not None else "zookeeper"

    @property
    def hosts(self) -> list[Address]:
        chosen = self.etcd3 or self.zookeeper
        assert chosen is not None
        return chosen.hosts


class ServerTLS(Model):
    # The CA that signed the members' server certificates: fedctl verifies each member against it.
    ca_file: Annotated[str, AfterValidator(absolute_path)]


class EtcdTLS(Model):
    """Every etcd cluster of the federation (each DC's DCS and the federation store) serves TLS and requires
    client certificates: fedctl, the agents and the gate verify the servers against `ca_file` and present
    `cert_file`/`key_file`."""

    ca_file: Annotated[str, AfterValidator(absolute_path)]
    cert_file: Annotated[str, AfterValidator(absolute_path)]
    key_file: Annotated[str, AfterValidator(absolute_path)]

    def client(self) -> ClientTLS:
        return ClientTLS(self.ca_file, self.cert_file, self.key_file)


class AgentTLS(Model):
    """The agents serve their API over https with the member's certificate (`{host}`: the member's name) and
    take only clients that present a certificate signed by `ca_file`; fedctl, HAProxy's checks and the tests
    present `client_cert_file` (HAProxy's `crt` wants the key in the same file: append it)."""

    ca_file: Annotated[str, AfterValidator(absolute_path)]
    cert_file: Annotated[str, AfterValidator(absolute_path)]
    key_file: Annotated[str, AfterValidator(absolute_path)]
    client_cert_file: Annotated[str, AfterValidator(absolute_path)]
    client_key_file: Annotated[str, AfterValidator(absolute_path)]

    def server_cert(self, member: str) -> str:
        return self.cert_file.replace("{host}", member)

    def server_key(self, member: str) -> str:
        return self.key_file.replace("{host}", member)

    def client(self) -> ClientTLS:
        return ClientTLS(self.ca_file, self.client_cert_file, self.client_key_file)


class AgentApi(Model):
    tls: AgentTLS | None = None


class PostgresSettings(Model):
    """How fedctl (and the lab's clients) reach PostgreSQL on the members: with `tls`, the members accept
    only TLS connections (hostssl) and fedctl connects with sslmode=verify-full against this CA."""

    tls: ServerTLS | None = None


class PatroniApi(Model):
    """How fedctl reaches the members' Patroni REST API, as Patroni's restapi section is set up: over https
    (with `tls`) and with basic auth for the unsafe endpoints (with `authentication`, Patroni's
    restapi.authentication)."""

    tls: ServerTLS | None = None
    authentication: Credential | None = None


class Member(Model):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    host: str
    port: Port = 5432
    api: Address
    # Its `pgbackrest server` port, in the repository-host layout (default: pgbackrest.member_tls_port).
    pgbackrest_port: Port | None = None

    # How its Patroni REST API is reached: the topology's patroni_api section, set when the topology is built.
    _api_security: PatroniApi | None = PrivateAttr(default=None)
    # How its fedctl agent's API is reached: the topology's agent_api.tls (None: plain http).
    _agent_tls: AgentTLS | None = PrivateAttr(default=None)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)

    @property
    def api_security(self) -> PatroniApi | None:
        return self._api_security

    @property
    def api_url(self) -> str:
        scheme = "https" if self._api_security is not None and self._api_security.tls is not None else "http"
        return f"{scheme}://{self.api}"

    @property
    def agent_tls(self) -> AgentTLS | None:
        return self._agent_tls


class DCRole(StrEnum):
    PRIMARY = "primary"
    STANDBY = "standby"


class SyncMode(StrEnum):
    OFF = "off"
    ON = "on"
    QUORUM = "quorum"


class Datacenter(Model):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    role: DCRole
    upstream: str | None = None
    scope: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] | None = None
    # The physical slot this DC streams through while it is a standby (default fed_<name>): an adopted
    # standby cluster keeps the slot its DBA named.
    slot: Annotated[str, Field(pattern=SLOT_PATTERN)] | None = None
    dcs: DCSConfig
    members: list[Member] = Field(min_length=1)
    pgbackrest: PgBackRestConfig | None = None
    synchronous: SyncMode = SyncMode.OFF
    synchronous_node_count: Annotated[int, BeforeValidator(not_bool), Field(ge=1)] = 1
    # An argument list written as one line (split like a shell would, run without a shell); see docs/topology.md.
    fence_command: str | None = None
    jobs: JobList = Field(default_factory=list)
    # The topology's etcd_tls and zookeeper_auth, for this DC's DCS (set when the topology is built).
    _etcd_tls: ClientTLS | None = PrivateAttr(default=None)
    _zookeeper_auth: Credential | None = PrivateAttr(default=None)

    @property
    def etcd_tls(self) -> ClientTLS | None:
        return self._etcd_tls

    @property
    def zookeeper_auth(self) -> ZooKeeperAuth | None:
        """The digest identity for this DC's ZooKeeper (None on etcd, or without zookeeper_auth)."""
        return ZooKeeperAuth.of(self._zookeeper_auth) if self.dcs.kind == "zookeeper" else None

    @property
    def fedctl_prefix(self) -> str:
        """Where fedctl's own keys live in this DC's DCS (the record copy, samples, the agent lease)."""
        return f"{self.dcs.namespace}_fedctl"

    @field_validator("fence_command")
    @classmethod
    def _fence_command(cls, value: str | None) -> str | None:
        return None if value is None else fence_argv_line(value)

    @field_validator("synchronous", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off`/`on` as a boolean.
        if value is True:
            return "on"
        if value is False:
            return "off"
        return value

    @property
    def patroni_scope(self) -> str:
        return self.scope or self.name

    @property
    def slot_name(self) -> str:
        """The physical slot this DC uses on its upstream DC while it is a standby."""
        return self.slot or f"fed_{self.name}"

    def member(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        known = ", ".join(m.name for m in self.members)
        raise BadInput(f"datacenter {self.name} has no member {name!r} (members: {known})")


class FencingPolicy(StrEnum):
    PERMISSIVE = "permissive"
    STRICT = "strict"


class LabNetwork(StrEnum):
    LOOPBACK = "loopback"
    NAMESPACES = "namespaces"


SiteName = Annotated[str, Field(pattern=NAME_PATTERN)]


class LabSettings(Model):
    dir: Annotated[str, AfterValidator(lab_dir)] | None = None
    user: Annotated[str, Field(pattern=OS_USER_PATTERN)] = "postgres"  # never root: PostgreSQL refuses it
    # `namespaces`: every site (each DC, plus any extra site such as a witness) runs in its own Linux
    # network namespace with the addresses of `sites`, so the lab can cut the WAN between them.
    network: LabNetwork = LabNetwork.LOOPBACK
    sites: dict[SiteName, str] = Field(default_factory=dict)
    # Start the DCs as a DBA typically has them before fedctl (for `fedctl adopt`): plain Patroni clusters, the
    # standby clusters streaming from one member of their upstream, no promotion gate, no agents, no record.
    unmanaged: bool = False

    @field_validator("user")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if value == "root":
            raise ValueError("the lab runs PostgreSQL and Patroni as this user, and PostgreSQL refuses root")
        return value

    @field_validator("sites")
    @classmethod
    def _subnets(cls, value: dict[str, str]) -> dict[str, str]:
        for site, subnet in value.items():
            try:
                net = ipaddress.ip_network(subnet, strict=True)
            except ValueError as exc:
                raise ValueError(f"site {site}: {subnet!r} is not a subnet such as 10.250.1.0/24 ({exc})") from None
            if net.version != 4 or net.prefixlen > 28:
                raise ValueError(f"site {site}: {subnet} must be an IPv4 subnet of /28 or larger")
        return value


class Topology(Model):
    federation: Annotated[str, AfterValidator(federation_name)]
    credentials: Credentials
    fencing: FencingPolicy = FencingPolicy.PERMISSIVE
    pgbackrest: PgBackRestConfig | None = None
    lab: LabSettings = Field(default_factory=LabSettings)
    federation_store: StoreConfig | None = None
    patroni_api: PatroniApi | None = None
    postgresql: PostgresSettings | None = None
    etcd_tls: EtcdTLS | None = None
    agent_api: AgentApi | None = None
    # Every ZooKeeper (a DC's DCS, or the federation store) authenticates fedctl, the agents and the gate with
    # this digest identity; the znodes fedctl creates let in this identity alone (docs/security.md).
    zookeeper_auth: Credential | None = None
    datacenters: list[Datacenter] = Field(min_length=1)
    source: str = Field(default="<memory>", exclude=True)

    @property
    def agent_tls(self) -> AgentTLS | None:
        return self.agent_api.tls if self.agent_api is not None else None

    def model_post_init(self, _context: Any) -> None:
        etcd = self.etcd_tls.client() if self.etcd_tls is not None else None
        for dc in self.datacenters:
            dc._etcd_tls = etcd
            dc._zookeeper_auth = self.zookeeper_auth
            for member in dc.members:
                member._api_security = self.patroni_api
                member._agent_tls = self.agent_tls
        if self.federation_store is not None:
            self.federation_store._etcd_tls = etcd
            self.federation_store._zookeeper_auth = self.zookeeper_auth

    def dc(self, name: str) -> Datacenter:
        for dc in self.datacenters:
            if dc.name == name:
                return dc
        known = ", ".join(d.name for d in self.datacenters)
        raise BadInput(f"unknown datacenter {name!r} in {self.source} (datacenters: {known})")

    @property
    def initial_primary(self) -> Datacenter:
        return next(dc for dc in self.datacenters if dc.role is DCRole.PRIMARY)

    @property
    def postgres_tls(self) -> ServerTLS | None:
        return self.postgresql.tls if self.postgresql is not None else None

    def ssl_params(self) -> dict[str, Any]:
        """libpq's TLS settings for connecting to a member: verify-full against the CA when the members
        require TLS, else libpq's default (TLS when the server offers it)."""
        tls = self.postgres_tls
        return {"sslmode": "verify-full", "sslrootcert": tls.ca_file} if tls is not None else {"sslmode": "prefer"}

    def pgbackrest_for(self, dc: Datacenter) -> PgBackRestConfig | None:
        return dc.pgbackrest or self.pgbackrest

    @property
    def lab_dir(self) -> Path:
        override = os.environ.get("FEDCTL_LAB_DIR")
        if override:
            try:
                lab_dir(override)
            except ValueError as exc:
                raise BadInput(f"FEDCTL_LAB_DIR: {exc}") from None
        return Path(override or self.lab.dir or f"{DEFAULT_LAB_ROOT}/{self.federation}")

    @property
    def lab_cuts_file(self) -> Path:
        """Where the namespace lab records the network cuts in place (written by `fedctl lab partition`)."""
        return self.lab_dir / "network" / "cuts.json"

    def members(self) -> Iterator[tuple[Datacenter, Member]]:
        for dc in self.datacenters:
            for member in dc.members:
                yield dc, member


FieldPath = tuple[str | int, ...]
Problem = tuple[FieldPath, str]


def federation_problems(topo: Topology) -> list[Problem]:
    """Rules that span several fields. Returns (field path, message) pairs; empty when valid."""
    return [*_duplicates(topo), *_per_datacenter(topo), *_upstreams(topo), *_lab_sites(topo), *store_problems(topo),
            *pgbackrest_problems(topo), *_derived_ports(topo), *_secret_files(topo)]


SHELL_OPERATORS = frozenset({"|", "||", "&", "&&", ";", ";;", ">", ">>", "<", "<<", "(", ")", "`"})


def fence_argv_line(value: str) -> str:
    """A fence command is a program and its arguments, split like a shell would and run without one."""
    no_control(value)
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} cannot be split into arguments ({exc}): check its quotes") from None
    if not argv:
        raise ValueError("an empty fence_command fences nothing: leave the field out if this DC has none")
    shell = [a for a in argv if a in SHELL_OPERATORS or a.startswith(("$(", "`")) or a.endswith((";", "|"))]
    if shell:
        raise ValueError(f"{value!r} uses shell syntax ({' '.join(shell)}), but the command runs without a shell: "
                         "put it in a script, or write sh -c '...' explicitly")
    return value


AGENT_PORT_OFFSET = 100  # the agent listens on its member's Patroni API port + 100 (agent/settings.py)


def _derived_ports(topo: Topology) -> list[Problem]:
    return [(("datacenters", i, "members", j, "api"),
             f"the agent's port is the Patroni API port + {AGENT_PORT_OFFSET} = {m.api.port + AGENT_PORT_OFFSET}, "
             f"beyond 65535: give Patroni's API a port of at most {65535 - AGENT_PORT_OFFSET}")
            for i, dc in enumerate(topo.datacenters) for j, m in enumerate(dc.members)
            if m.api.port + AGENT_PORT_OFFSET > 65535]


def _secret_files(topo: Topology) -> list[Problem]:
    """A secret file that exists must be owned by this user (or root) and readable by no one else but a group."""
    problems: list[Problem] = []
    for role in ("superuser", "replication", "rewind"):
        ref = getattr(topo.credentials, role).password
        if ref.file_path is not None and (why := secret_file_problem(ref.file_path)):
            problems.append((("credentials", role, "password", "file"), why))
    return problems


def _duplicates(topo: Topology) -> list[Problem]:
    problems: list[Problem] = []

    def once(kind: str, path: FieldPath, value: object, seen: dict[object, str]) -> None:
        if value in seen:
            problems.append((path, f"{kind} {value} is used twice (also at {seen[value]})"))
        else:
            seen[value] = dotted_path(path)

    names: dict[object, str] = {}
    slots: dict[object, str] = {}
    scopes: dict[tuple[str, str, str], str] = {}
    members: dict[object, str] = {}
    endpoints: dict[object, str] = {}
    for i, dc in enumerate(topo.datacenters):
        once("datacenter name", ("datacenters", i, "name"), dc.name, names)
        once("slot name", ("datacenters", i, "slot"), dc.slot_name, slots)
        # The same scope is fine in DCs with their own DCS; on a shared DCS their keys would collide.
        keys = [(str(h), dc.dcs.namespace, dc.patroni_scope) for h in dc.dcs.hosts]
        clash = next((key for key in keys if key in scopes), None)
        if clash:
            problems.append((("datacenters", i, "scope"), f"Patroni scope {clash[1]}{clash[2]} on DCS "
                             f"{clash[0]} is used twice (also at {scopes[clash]})"))
        for key in keys:
            scopes.setdefault(key, dotted_path(("datacenters", i, "scope")))
        for j, m in enumerate(dc.members):
            at: FieldPath = ("datacenters", i, "members", j)
            once("member name", (*at, "name"), m.name, members)
            once("PostgreSQL address", (*at, "host"), f"{m.host}:{m.port}", endpoints)
            once("REST API address", (*at, "api"), str(m.api), endpoints)
        for k, h in enumerate(dc.dcs.hosts):
            # DCs may share one DCS ensemble; a DCS address clashes only with a member's address.
            if str(h) in endpoints:
                problems.append((("datacenters", i, "dcs", dc.dcs.kind, "hosts", k),
                                 f"DCS address {h} is also used by {endpoints[str(h)]}"))
    return problems


def _per_datacenter(topo: Topology) -> list[Problem]:
    problems: list[Problem] = []
    for i, dc in enumerate(topo.datacenters):
        standbys = len(dc.members) - 1
        if dc.synchronous is not SyncMode.OFF and dc.synchronous_node_count > standbys:
            problems.append((("datacenters", i, "synchronous_node_count"),
                             f"synchronous: {dc.synchronous.value} asks for {dc.synchronous_node_count} "
                             f"synchronous standby(s) but datacenter {dc.name} has only {standbys} "
                             "member(s) besides its leader"))
        if topo.pgbackrest_for(dc) is None:
            problems.append((("datacenters", i), f"datacenter {dc.name} has no pgbackrest section and the "
                             "federation has no default one"))
    return problems


def _upstreams(topo: Topology) -> list[Problem]:
    problems: list[Problem] = []
    dc_names = ", ".join(dc.name for dc in topo.datacenters)
    primaries = [dc.name for dc in topo.datacenters if dc.role is DCRole.PRIMARY]
    if len(primaries) != 1:
        problems.append((("datacenters",), "exactly one datacenter must have role: primary "
                         f"(found: {', '.join(primaries) or 'none'})"))
    by_name = {dc.name: dc for dc in topo.datacenters}
    for i, dc in enumerate(topo.datacenters):
        if dc.role is DCRole.PRIMARY and dc.upstream is not None:
            problems.append((("datacenters", i, "upstream"),
                             f"primary datacenter {dc.name} cannot have an upstream"))
        elif dc.role is DCRole.STANDBY and dc.upstream is None:
            problems.append((("datacenters", i, "role"),
                             f"standby datacenter {dc.name} needs 'upstream: <dc>' (one of: {dc_names})"))
        elif dc.role is DCRole.STANDBY and dc.upstream not in by_name:
            problems.append((("datacenters", i, "upstream"), f"upstream {dc.upstream!r} is not a datacenter "
                             f"of this federation (datacenters: {dc_names})"))
        elif dc.upstream == dc.name:
            problems.append((("datacenters", i, "upstream"),
                             f"datacenter {dc.name} cannot be its own upstream"))

    reported: set[frozenset[str]] = set()
    for i, dc in enumerate(topo.datacenters):
        chain = [dc.name]
        current = dc
        while current.role is DCRole.STANDBY and current.upstream not in (None, current.name):
            if current.upstream not in by_name:
                break
            current = by_name[current.upstream]
            if current.name in chain:
                loop = chain[chain.index(current.name):]
                # Report each cycle once, at the first DC on it, not again for every DC leading into it.
                if frozenset(loop) not in reported and dc.name == loop[0]:
                    reported.add(frozenset(loop))
                    cycle = " -> ".join([*loop, loop[0]])
                    problems.append((("datacenters", i, "upstream"), f"upstream cycle: {cycle}"))
                break
            chain.append(current.name)
    return problems


def dc_addresses(dc: Datacenter) -> list[tuple[FieldPath, str]]:
    """Every address a DC's processes listen on (members, their REST APIs, its DCS servers), with its field."""
    out: list[tuple[FieldPath, str]] = []
    for j, m in enumerate(dc.members):
        out += [(("members", j, "host"), m.host), (("members", j, "api"), m.api.host)]
    out += [(("dcs", dc.dcs.kind, "hosts", k), h.host) for k, h in enumerate(dc.dcs.hosts)]
    return out


def _repo_host_addresses(topo: Topology) -> list[tuple[FieldPath, str]]:
    sections: list[tuple[FieldPath, Any]] = [(("pgbackrest",), topo.pgbackrest)]
    sections += [(("datacenters", i, "pgbackrest"), dc.pgbackrest) for i, dc in enumerate(topo.datacenters)]
    return [((*at, "repo_host", "address"), s.repo_host.address) for at, s in sections
            if s is not None and s.repo_host is not None]


def _in_subnet(host: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(host) in net
    except ValueError:
        return False


def _lab_sites(topo: Topology) -> list[Problem]:
    """A namespace lab: every DC is a site, every address of a DC lies in its site's subnet (not its first
    address, which the lab gives the WAN side of the site's link), and no two sites overlap."""
    lab = topo.lab
    if lab.network is not LabNetwork.NAMESPACES:
        if lab.sites:
            return [(("lab", "sites"), "sites are used only with 'network: namespaces'")]
        return []
    problems: list[Problem] = []
    nets = {name: ipaddress.ip_network(subnet) for name, subnet in lab.sites.items()}
    names = list(nets)
    for a, first in enumerate(names):
        for second in names[a + 1:]:
            if nets[first].overlaps(nets[second]):
                problems.append((("lab", "sites", second), f"subnet {nets[second]} of site {second} overlaps "
                                 f"{nets[first]} of site {first}"))
    placed: list[tuple[FieldPath, str, str]] = []
    for i, dc in enumerate(topo.datacenters):
        if dc.name not in nets:
            problems.append((("lab", "sites"), f"datacenter {dc.name} needs a site: add '{dc.name}: <subnet>' "
                             "(each DC runs in its own network namespace)"))
            continue
        placed += [(("datacenters", i, *path), dc.name, host) for path, host in dc_addresses(dc)]
    store = topo.federation_store
    for k, h in enumerate(store.hosts if store else []):
        at: FieldPath = ("federation_store", store.kind if store else "", "hosts", k, "address")
        if h.site not in nets:
            problems.append((at, f"store member {h.address} stands in site {h.site}, which lab.sites does not "
                             f"name (sites: {', '.join(nets)})"))
        else:
            placed.append((at, h.site, h.host))
    for at, host in _repo_host_addresses(topo):
        site_name = next((name for name, net in nets.items() if _in_subnet(host, net)), "")
        if not site_name:
            problems.append((at, f"the repository host {host} lies in no site's subnet (sites: "
                             f"{', '.join(f'{n} {nets[n]}' for n in nets)}): give it an address in one, e.g. "
                             "the witness site"))
        else:
            placed.append((at, site_name, host))
    for at, site_name, host in placed:
        net = nets[site_name]
        gateway = next(net.hosts())
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            problems.append((at, f"{host} is not an IP address: the namespace lab needs addresses, not names"))
            continue
        if addr not in net or addr in (net.network_address, net.broadcast_address):
            problems.append((at, f"{host} is not a host address of {site_name}'s site subnet {net}"))
        elif addr == gateway:
            problems.append((at, f"{host} is the WAN side of {site_name}'s link (the first address of {net}): "
                             "use another address"))
    return problems


def parse_topology(data: Any, source: str = "<memory>", lines: LineMap | None = None) -> Topology:
    """Validate already-parsed YAML data. Raises TopologyError with file:line: field: message."""
    lines = lines or LineMap({})
    if not isinstance(data, dict):
        raise TopologyError(source, [f"{source}:1: the file must hold a mapping with 'federation' and "
                                     "'datacenters'"])
    try:
        topo = Topology.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            message = _message(err)
            if loc and loc[-1] == "[key]":  # pydantic's marker for a mapping key that failed, not its value
                loc = loc[:-1]
                message = f"{loc[-1]!r} is not a valid key: {message}"
            problems.append(f"{source}:{lines.line_of(loc)}: {dotted_path(loc) or '(top)'}: {message}")
        raise TopologyError(source, problems) from None
    found = federation_problems(topo)
    if found:
        raise TopologyError(source, [f"{source}:{lines.line_of(p)}: {dotted_path(p)}: {m}" for p, m in found])
    return topo


def load_topology(path: str | os.PathLike[str]) -> Topology:
    source = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise BadInput(f"topology file {source} does not exist",
                       hint="pass -t FILE or set FEDCTL_TOPOLOGY (see topologies/ for examples)") from None
    except OSError as exc:
        raise BadInput(f"cannot read topology file {source}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"topology file {source} is not UTF-8 text (byte {exc.start})") from None
    data, lines = load_yaml_with_lines(text, source)
    return parse_topology(data, source, lines)


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; see docs/topology.md)"
    if err["type"] == "string_pattern_mismatch" and err["loc"] and err["loc"][-1] in ("name",):
        return f"{err['input']!r} is not a valid name: {NAME_HELP}"
    return msg.removeprefix("Value error, ")
