"""The `pgbackrest:` section: the shared stanza, and where pgBackRest's repository lives.

Two layouts:
- no `repo_host`: the repository is a path every member reaches (`repo_path`), as on one machine;
- `repo_host`: pgBackRest's production layout. A repository host holds the repository and runs
  `pgbackrest server`; every database host runs `pgbackrest server` too. The database hosts push and get
  WAL through the repository host's server (`repo1-host-type=tls`); the repository host backs up through
  theirs (`pgN-host-type=tls`). Both directions authenticate with client certificates signed by `tls.ca_file`
  whose common name is the host's name (a member's name, or `repo_host.name`), which `tls-server-auth`
  lists. No SSH anywhere.

Certificate paths may contain `{host}`: each host's own certificate, at one path pattern.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from federation.field_rules import OS_USER_PATTERN, absolute_path, no_control, not_bool

if TYPE_CHECKING:
    from federation.topology import Problem, Topology

DEFAULT_TLS_PORT = 8432  # pgBackRest's own default for tls-server-port
DEFAULT_AGENT_PORT = 8108  # the backup-host agent's API, as a DC agent's next to Patroni's 8008
HOST_PLACEHOLDER = "{host}"

Port = Annotated[int, BeforeValidator(not_bool), Field(ge=1, le=65535)]
HostName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


AbsolutePath = Annotated[str, Field(min_length=1),
                         BeforeValidator(lambda v: absolute_path(v) if isinstance(v, str) else v)]


class RepoHost(_Model):
    """The repository host: where the repository is, where fedctl runs backups, restore checks and jobs."""

    address: str = Field(min_length=1)  # its TLS server listens here; the database hosts connect to it
    tls_port: Port = DEFAULT_TLS_PORT
    name: HostName = "repo"  # its certificate's common name, and `{host}` in its certificate paths
    config: AbsolutePath = "/etc/pgbackrest/pgbackrest.conf"  # rendered by `fedctl backup-config --write`
    # The OS user pgBackRest runs as there (it owns the repository); fedctl started as root drops to it.
    # None: the user fedctl runs as.
    user: Annotated[str, Field(pattern=OS_USER_PATTERN)] | None = None
    # verify-restore's scratch copies go under <scratch_dir>/verify on the repository host.
    scratch_dir: AbsolutePath = "/var/tmp/fedctl"
    # The backup-host agent's HTTP API (/health, /metrics, /events) listens on address:agent_port.
    agent_port: Port = DEFAULT_AGENT_PORT


class PgBackRestTLS(_Model):
    ca_file: AbsolutePath
    cert_file: AbsolutePath  # may contain {host}
    key_file: AbsolutePath  # may contain {host}

    def cert(self, host: str) -> str:
        return self.cert_file.replace(HOST_PLACEHOLDER, host)

    def key(self, host: str) -> str:
        return self.key_file.replace(HOST_PLACEHOLDER, host)


class PgBackRestConfig(_Model):
    stanza: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = "fed"
    repo_path: AbsolutePath
    options: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")], Annotated[str, AfterValidator(no_control)]] = \
        Field(default_factory=dict)
    repo_host: RepoHost | None = None
    tls: PgBackRestTLS | None = None
    member_tls_port: Port = DEFAULT_TLS_PORT  # each database host's `pgbackrest server` (a member may override)

    @field_validator("options", mode="before")
    @classmethod
    def _option_values(cls, value: Any) -> Any:
        # `repo1-retention-full: 2` is natural YAML; pgBackRest's booleans are y/n.
        if not isinstance(value, dict):
            return value
        return {k: ("y" if v else "n") if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
                for k, v in value.items()}


# Options fedctl renders itself for the repository-host layout; setting them in `options` would fight it.
OWNED_OPTIONS = ("repo1-host", "repo1-host-type", "repo1-host-port", "repo1-path", "tls-server-address",
                 "tls-server-port", "tls-server-auth", "backup-standby")


def pgbackrest_problems(topo: Topology) -> list[Problem]:
    """The repository-host layout's rules, for every pgbackrest section (the top-level one and each DC's)."""
    problems: list[Problem] = []
    sections: list[tuple[tuple[str | int, ...], PgBackRestConfig]] = []
    if topo.pgbackrest is not None:
        sections.append((("pgbackrest",), topo.pgbackrest))
    sections += [(("datacenters", i, "pgbackrest"), dc.pgbackrest) for i, dc in enumerate(topo.datacenters)
                 if dc.pgbackrest is not None]
    for at, section in sections:
        if section.repo_host is not None and section.tls is None:
            problems.append(((*at, "tls"), "a repo_host needs a tls section (ca_file, cert_file, key_file): "
                             "the hosts reach each other only through pgBackRest's TLS server, never SSH"))
        if section.tls is not None and section.repo_host is None:
            problems.append(((*at, "repo_host"), "tls is used only with a repo_host"))
        owned = sorted(k for k in section.options if k in OWNED_OPTIONS) if section.repo_host else []
        if owned:
            problems.append(((*at, "options"), f"{', '.join(owned)} are rendered by fedctl from repo_host and the "
                             "members: remove them from options"))
        if section.repo_host is not None:
            names = {m.name for _dc, m in topo.members()}
            if section.repo_host.agent_port == section.repo_host.tls_port:
                problems.append(((*at, "repo_host", "agent_port"), f"agent_port {section.repo_host.agent_port} "
                                 "is also the repository host's tls_port: the agent and pgBackRest's TLS server "
                                 "cannot listen on one port"))
            if section.repo_host.name in names:
                problems.append(((*at, "repo_host", "name"), f"repo_host name {section.repo_host.name!r} is also "
                                 "a member's name: certificates are told apart by their common name"))
    repos = {(s.repo_host.address if s.repo_host else None, s.stanza) for _at, s in sections}
    if len({address for address, _stanza in repos}) > 1:
        problems.append((("pgbackrest",), "every DC must use the same repository (one shared stanza): "
                         "their pgbackrest sections name different repo_host addresses"))
    elif len({s.repo_host.agent_port for _at, s in sections if s.repo_host is not None}) > 1:
        problems.append((("pgbackrest",), "one repository host runs one backup-host agent: every pgbackrest "
                         "section's repo_host must name the same agent_port"))
    return problems


def repo_host_of(topo: Topology) -> RepoHost | None:
    """The repository host of the repository-host layout (every section names the same one), else None."""
    sections = [topo.pgbackrest, *(dc.pgbackrest for dc in topo.datacenters)]
    return next((s.repo_host for s in sections if s is not None and s.repo_host is not None), None)


def member_tls_port(section: PgBackRestConfig, member_port: int | None) -> int:
    """A member's `pgbackrest server` port: its own `pgbackrest_port`, else the section's default."""
    return member_port if member_port is not None else section.member_tls_port
