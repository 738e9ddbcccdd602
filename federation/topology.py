"""The federation topology: frozen pydantic models, validated once at the edge.

`load_topology(path)` reads YAML, validates field types and then the federation-wide rules
(unique names, one primary DC, no upstream cycles, one PostgreSQL port per DC). Every problem is
reported with the file, the line and the field path, and raises `TopologyError` (exit code 2).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from federation.errors import BadInput, TopologyError
from federation.yaml_lines import LineMap, load_yaml_with_lines

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,30}$"
NAME_HELP = "lowercase letters, digits and '_', starting with a letter, at most 31 characters"
DEFAULT_LAB_ROOT = "/var/tmp/pg-federation"


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretRef(Model):
    """A secret given by environment variable, by file, or (discouraged) inline."""

    env: str | None = None
    file: str | None = None
    value: str | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'env', 'file' or 'value'")
        return self

    @property
    def file_path(self) -> Path | None:
        return Path(os.path.expandvars(os.path.expanduser(self.file))) if self.file else None

    def describe(self) -> str:
        if self.env:
            return f"environment variable {self.env}"
        if self.file:
            return f"file {self.file}"
        return "inline value"

    def resolve(self) -> str:
        """Read the secret now. Raises BadInput naming the reference, never the secret."""
        if self.value is not None:
            return self.value
        if self.env is not None:
            found = os.environ.get(self.env)
            if found is None:
                raise BadInput(f"secret {self.describe()} is not set", hint=f"export {self.env}=...")
            return found
        path = self.file_path
        assert path is not None
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise BadInput(f"cannot read secret {self.describe()}: {exc.strerror}") from exc


class Credential(Model):
    username: str = Field(min_length=1)
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
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", value):
        raise ValueError(f"{value!r} is neither an IP address nor a DNS name")
    return value


Port = Annotated[int, Field(ge=1, le=65535)]


class Address(Model):
    """host:port, written as one string in YAML."""

    host: str
    port: Port

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, str):
            host, sep, port = data.rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"{data!r} is not host:port")
            return {"host": host.strip("[]"), "port": int(port)}
        return data

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


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
        if not re.fullmatch(r"/([A-Za-z0-9_.-]+/)*", value if value.endswith("/") else value + "/"):
            raise ValueError("namespace must look like /name/ (letters, digits, '_', '.', '-')")
        return value if value.endswith("/") else value + "/"

    @property
    def kind(self) -> Literal["etcd3", "zookeeper"]:
        return "etcd3" if self.etcd3 is not None else "zookeeper"

    @property
    def hosts(self) -> list[Address]:
        chosen = self.etcd3 or self.zookeeper
        assert chosen is not None
        return chosen.hosts


class Member(Model):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    host: str
    port: Port = 5432
    api: Address

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)

    @property
    def api_url(self) -> str:
        return f"http://{self.api}"


class DCRole(StrEnum):
    PRIMARY = "primary"
    STANDBY = "standby"


class SyncMode(StrEnum):
    OFF = "off"
    ON = "on"
    QUORUM = "quorum"


class PgBackRestConfig(Model):
    stanza: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = "fed"
    repo_path: str = Field(min_length=1)
    options: dict[str, str] = Field(default_factory=dict)


class Datacenter(Model):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    role: DCRole
    upstream: str | None = None
    scope: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] | None = None
    dcs: DCSConfig
    members: list[Member] = Field(min_length=1)
    pgbackrest: PgBackRestConfig | None = None
    synchronous: SyncMode = SyncMode.OFF
    synchronous_node_count: Annotated[int, Field(ge=1)] = 1
    fence_command: str | None = None

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
    def pg_port(self) -> int:
        return self.members[0].port

    @property
    def slot_name(self) -> str:
        """The physical slot this DC uses on its upstream DC while it is a standby."""
        return f"fed_{self.name}"

    def member(self, name: str) -> Member:
        for member in self.members:
            if member.name == name:
                return member
        known = ", ".join(m.name for m in self.members)
        raise BadInput(f"datacenter {self.name} has no member {name!r} (members: {known})")


class FencingPolicy(StrEnum):
    PERMISSIVE = "permissive"
    STRICT = "strict"


class LabSettings(Model):
    dir: str | None = None
    user: str = "postgres"


class Topology(Model):
    federation: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    credentials: Credentials
    fencing: FencingPolicy = FencingPolicy.PERMISSIVE
    pgbackrest: PgBackRestConfig | None = None
    lab: LabSettings = Field(default_factory=LabSettings)
    datacenters: list[Datacenter] = Field(min_length=1)
    source: str = Field(default="<memory>", exclude=True)

    def dc(self, name: str) -> Datacenter:
        for dc in self.datacenters:
            if dc.name == name:
                return dc
        known = ", ".join(d.name for d in self.datacenters)
        raise BadInput(f"unknown datacenter {name!r} in {self.source} (datacenters: {known})")

    @property
    def initial_primary(self) -> Datacenter:
        return next(dc for dc in self.datacenters if dc.role is DCRole.PRIMARY)

    def pgbackrest_for(self, dc: Datacenter) -> PgBackRestConfig | None:
        return dc.pgbackrest or self.pgbackrest

    @property
    def lab_dir(self) -> Path:
        chosen = os.environ.get("FEDCTL_LAB_DIR") or self.lab.dir or f"{DEFAULT_LAB_ROOT}/{self.federation}"
        return Path(chosen)

    def members(self) -> Iterator[tuple[Datacenter, Member]]:
        for dc in self.datacenters:
            for member in dc.members:
                yield dc, member


def federation_problems(topo: Topology) -> list[tuple[tuple[str | int, ...], str]]:
    """Rules that span several fields. Returns (field path, message) pairs; empty when valid."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    dc_names = [dc.name for dc in topo.datacenters]

    def duplicate(kind: str, path: tuple[str | int, ...], value: object, seen: dict[object, str]) -> None:
        where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
        if value in seen:
            problems.append((path, f"{kind} {value} is used twice (also at {seen[value]})"))
        else:
            seen[value] = where

    names: dict[object, str] = {}
    scopes: dict[object, str] = {}
    members: dict[object, str] = {}
    endpoints: dict[object, str] = {}
    for i, dc in enumerate(topo.datacenters):
        duplicate("datacenter name", ("datacenters", i, "name"), dc.name, names)
        duplicate("Patroni scope", ("datacenters", i, "scope"), (dc.dcs.namespace, dc.patroni_scope), scopes)
        for j, m in enumerate(dc.members):
            duplicate("member name", ("datacenters", i, "members", j, "name"), m.name, members)
            duplicate("PostgreSQL address", ("datacenters", i, "members", j, "host"), f"{m.host}:{m.port}",
                      endpoints)
            duplicate("REST API address", ("datacenters", i, "members", j, "api"), str(m.api), endpoints)
            if m.port != dc.pg_port:
                problems.append((("datacenters", i, "members", j, "port"),
                                 f"member {m.name} uses PostgreSQL port {m.port} but {dc.members[0].name} uses "
                                 f"{dc.pg_port}: every member of a DC needs the same port, because Patroni's "
                                 "standby_cluster.port is a single integer"))
        for k, h in enumerate(dc.dcs.hosts):
            # DCs may share one DCS ensemble; a DCS address clashes only with a member's address.
            if str(h) in endpoints:
                problems.append((("datacenters", i, "dcs", dc.dcs.kind, "hosts", k),
                                 f"DCS address {h} is also used by {endpoints[str(h)]}"))

    primaries = [dc for dc in topo.datacenters if dc.role is DCRole.PRIMARY]
    if len(primaries) != 1:
        listed = ", ".join(dc.name for dc in primaries) or "none"
        problems.append((("datacenters",), f"exactly one datacenter must have role: primary (found: {listed})"))

    by_name = {dc.name: dc for dc in topo.datacenters}
    for i, dc in enumerate(topo.datacenters):
        if dc.role is DCRole.PRIMARY and dc.upstream is not None:
            problems.append((("datacenters", i, "upstream"), f"primary datacenter {dc.name} cannot have an upstream"))
        if dc.role is DCRole.STANDBY:
            if dc.upstream is None:
                problems.append((("datacenters", i, "role"),
                                 f"standby datacenter {dc.name} needs 'upstream: <dc>' (one of: {', '.join(dc_names)})"))
            elif dc.upstream not in by_name:
                problems.append((("datacenters", i, "upstream"),
                                 f"upstream {dc.upstream!r} is not a datacenter of this federation "
                                 f"(datacenters: {', '.join(dc_names)})"))
            elif dc.upstream == dc.name:
                problems.append((("datacenters", i, "upstream"), f"datacenter {dc.name} cannot be its own upstream"))
        if topo.pgbackrest_for(dc) is None:
            problems.append((("datacenters", i), f"datacenter {dc.name} has no pgbackrest section and the "
                             "federation has no default one"))

    for i, dc in enumerate(topo.datacenters):
        chain = [dc.name]
        current = dc
        while current.role is DCRole.STANDBY and current.upstream in by_name and current.upstream != current.name:
            current = by_name[current.upstream]
            if current.name in chain:
                cycle = " -> ".join([*chain, current.name])
                problems.append((("datacenters", i, "upstream"), f"upstream cycle: {cycle}"))
                break
            chain.append(current.name)
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
            problems.append(f"{source}:{lines.line_of(loc)}: {_dotted(loc) or '(top)'}: {_message(err)}")
        raise TopologyError(source, problems) from None
    found = federation_problems(topo)
    if found:
        raise TopologyError(source, [f"{source}:{lines.line_of(p)}: {_dotted(p)}: {m}" for p, m in found])
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
    data, lines = load_yaml_with_lines(text, source)
    return parse_topology(data, source, lines)


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; see docs/topology.md)"
    if err["type"] == "string_pattern_mismatch" and err["loc"] and err["loc"][-1] in ("name",):
        return f"{err['input']!r} is not a valid name: {NAME_HELP}"
    return msg.removeprefix("Value error, ")
