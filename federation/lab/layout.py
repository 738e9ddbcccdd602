"""Where a lab keeps each thing: one directory per DC and per member under the lab directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from federation.lab.netns import netns_of, netns_of_address
from federation.lab.processes import ManagedProcess
from federation.topology import Datacenter, Member, Topology

PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class MemberPaths:
    root: Path
    netns: str | None = None  # the member's site in a namespace lab

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def patroni_config(self) -> Path:
        return self.root / "patroni.yml"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    @property
    def patroni(self) -> ManagedProcess:
        return ManagedProcess("patroni", self.root / "patroni.pid", self.root / "patroni.log",
                              str(self.patroni_config), netns=self.netns)


@dataclass(frozen=True)
class LabLayout:
    topo: Topology

    @property
    def root(self) -> Path:
        return self.topo.lab_dir

    @property
    def pgbackrest_dir(self) -> Path:
        return self.root / "pgbackrest"

    @property
    def pgbackrest_config(self) -> Path:
        return self.pgbackrest_dir / "pgbackrest.conf"

    def dc_dir(self, dc: Datacenter) -> Path:
        return self.root / dc.name

    def dcs_data(self, dc: Datacenter) -> Path:
        return self.dc_dir(dc) / dc.dcs.kind

    @property
    def network_dir(self) -> Path:
        return self.root / "network"

    def netns(self, dc: Datacenter) -> str | None:
        """The network namespace a DC's processes run in (None in a loopback lab)."""
        return netns_of(self.topo, dc.name)

    def netns_of_address(self, address: str) -> str | None:
        """The network namespace of the site that holds `address` (the repository host's, say)."""
        return netns_of_address(self.topo, address)

    def member(self, dc: Datacenter, member: Member) -> MemberPaths:
        return MemberPaths(self.dc_dir(dc) / member.name, self.netns(dc))
