"""The topology's optional `federation_store:` section: the consensus cluster that holds the record.

```yaml
federation_store:
  etcd3:                       # or zookeeper:, the same shape as a DC's dcs: section
    hosts:
      - {address: "10.1.0.9:2379", site: dc1}
      - {address: "10.2.0.9:2379", site: dc2}
      - {address: "10.9.0.9:2379", site: witness}
  namespace: /fedctl/
  lease_ttl: 10                # seconds the primary DC's lease lives without a renewal
  fencing_margin: 3            # the primary DC fences this long before its lease can expire
```

Every host names the site it stands in: a DC of the federation or an extra site such as a witness.
Partition safety needs the store's majority to survive the loss of any one site, which a two-DC
federation cannot have without a member outside both DCs: `store_warnings` says so (not an error:
such a federation then relies on its `fence_command`).

This module imports nothing from federation.topology at import time (topology imports it); the
Address model is borrowed at validation time.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from federation.dcs.zookeeper import ZooKeeperAuth
from federation.field_rules import dcs_namespace, not_bool
from federation.tls_files import ClientTLS
from federation.yaml_lines import dotted_path

if TYPE_CHECKING:
    from federation.topology import Problem, Topology

SITE_PATTERN = r"^[a-z][a-z0-9_]{0,30}$"
DEFAULT_LEASE_TTL = 10
DEFAULT_FENCING_MARGIN = 3.0
# How long after the lease's expiry the old primary DC has certainly stopped acknowledging writes: its
# agents decide to fence at (expiry - margin) by their own clock and check every LEASE_CHECK_SECONDS;
# the bound covers that check, the PATCH to the DC's own Patroni leader and Patroni's fast shutdown.
# promote-dc waits this long after it saw the lease gone (unless the old DC's fence_command succeeded).
FENCING_BOUND_SECONDS = 5.0
# Every agent of the primary DC looks at the lease this often (the active one renews it as often).
LEASE_CHECK_SECONDS = 1.0


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StoreHost(_Model):
    """One member of the store: its client address (host:port) and the site it stands in."""

    address: str
    site: Annotated[str, Field(pattern=SITE_PATTERN)]

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        from federation.topology import Address

        parsed = Address.model_validate(value)  # raises ValidationError, reported at this field
        return str(parsed)

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0].strip("[]")  # an IPv6 address is kept in brackets

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


class StoreHosts(_Model):
    hosts: list[StoreHost] = Field(min_length=1)


class StoreConfig(_Model):
    etcd3: StoreHosts | None = None
    zookeeper: StoreHosts | None = None
    namespace: str = "/fedctl/"
    lease_ttl: Annotated[int, BeforeValidator(not_bool), Field(ge=2, le=300)] = DEFAULT_LEASE_TTL
    fencing_margin: Annotated[float, BeforeValidator(not_bool), Field(gt=0)] = DEFAULT_FENCING_MARGIN
    _etcd_tls: ClientTLS | None = PrivateAttr(default=None)  # the topology's etcd_tls, set when it is built
    _zookeeper_auth: Any = PrivateAttr(default=None)  # the topology's zookeeper_auth (a Credential)

    @property
    def etcd_tls(self) -> ClientTLS | None:
        return self._etcd_tls

    @property
    def zookeeper_auth(self) -> ZooKeeperAuth | None:
        """The digest identity for a ZooKeeper store (every znode of the store is fedctl's)."""
        return ZooKeeperAuth.of(self._zookeeper_auth) if self.kind == "zookeeper" else None

    @model_validator(mode="after")
    def _one_kind_and_margin(self) -> StoreConfig:
        if (self.etcd3 is None) == (self.zookeeper is None):
            raise ValueError("declare exactly one store kind: 'etcd3' or 'zookeeper'")
        if self.fencing_margin >= self.lease_ttl:
            raise ValueError(f"fencing_margin ({self.fencing_margin:g} s) must be smaller than lease_ttl "
                             f"({self.lease_ttl} s): the primary DC fences at lease_ttl - fencing_margin")
        return self

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return dcs_namespace(value)

    @property
    def kind(self) -> Literal["etcd3", "zookeeper"]:
        return "etcd3" if self.etcd3 is not None else "zookeeper"

    @property
    def hosts(self) -> list[StoreHost]:
        chosen = self.etcd3 or self.zookeeper
        assert chosen is not None
        return chosen.hosts

    @property
    def majority(self) -> int:
        return len(self.hosts) // 2 + 1


def store_problems(topo: Topology) -> list[Problem]:
    """Rules of the store section that need the rest of the topology; empty without a store."""
    store = topo.federation_store
    if store is None:
        return []
    problems: list[Problem] = []
    at = ("federation_store", store.kind, "hosts")
    seen: dict[str, str] = {}
    dc_addresses = {str(a): dc.name for dc in topo.datacenters for a in dc.dcs.hosts}
    member_addresses = {f"{m.host}:{m.port}": m.name for _dc, m in topo.members()} | {
        str(m.api): m.name for _dc, m in topo.members()}
    for k, host in enumerate(store.hosts):
        if host.address in seen:
            problems.append(((*at, k, "address"), f"store address {host.address} is used twice "
                             f"(also at {seen[host.address]})"))
        seen.setdefault(host.address, dotted_path((*at, k, "address")))
        # The store must be a cluster of its own: sharing a DC's DCS would let that DC's outage or
        # restart take the record with it, and a Patroni member's address cannot serve etcd.
        if host.address in dc_addresses:
            problems.append(((*at, k, "address"), f"store address {host.address} is also the DCS of "
                             f"datacenter {dc_addresses[host.address]}: the store needs members of its own"))
        if host.address in member_addresses:
            problems.append(((*at, k, "address"), f"store address {host.address} is also used by member "
                             f"{member_addresses[host.address]}"))
    return problems


def store_warnings(topo: Topology) -> list[str]:
    """What validates but is not partition-safe. One sentence each; empty when nothing to say."""
    store = topo.federation_store
    dc_names = {dc.name for dc in topo.datacenters}
    if store is None:
        if len(topo.datacenters) > 1:
            return ["no federation_store: the record is committed to the first DC that answers, which is not "
                    "consensus; two operators on the two sides of a partition can both commit"]
        return []
    outside = [h for h in store.hosts if h.site not in dc_names]
    warnings = []
    if len(topo.datacenters) == 2 and not outside:
        warnings.append("a two-DC federation whose store has no member outside the two DCs (a witness site) "
                        "cannot be partition-safe: when the DCs are cut apart, the side with the store's "
                        "majority may promote while the other cannot be sure it fenced; it relies on "
                        "fence_command")
    sites = Counter(h.site for h in store.hosts)
    largest, count = sites.most_common(1)[0]
    if len(store.hosts) > 1 and count >= store.majority and not (len(topo.datacenters) == 2 and not outside):
        warnings.append(f"site {largest} holds {count} of the store's {len(store.hosts)} members, a majority: "
                        "cut off, it could still commit and renew while the rest of the federation stops")
    if len(store.hosts) % 2 == 0:
        warnings.append(f"the store has {len(store.hosts)} members: an even count tolerates no more failures "
                        f"than {len(store.hosts) - 1} members do")
    return warnings
