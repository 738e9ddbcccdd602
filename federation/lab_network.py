"""The network cuts a namespace lab has in place, as recorded in `<lab dir>/network/cuts.json`.

`fedctl lab partition` writes this file and `fedctl status` shows it, so an operator reading the status
of a lab drill sees which links are cut. Reading it needs no privileges and imports nothing of the lab.
Also here: whether the sites' subnets collide with networks this host uses (`validate` and `lab up`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from federation.topology import Topology


@dataclass(frozen=True)
class Cut:
    """`site` cut off from `peer` in both directions, or from every other site and the root namespace."""

    site: str
    peer: str | None = None

    def describe(self) -> str:
        if self.peer is None:
            return f"{self.site} cut off from every site and the admin host"
        return f"{self.site} cut off from {self.peer}"

    def involves(self, site: str) -> bool:
        return site in (self.site, self.peer)

    def to_json(self) -> dict[str, str | None]:
        return {"site": self.site, "peer": self.peer}


def read_cuts(path: Path) -> list[Cut]:
    """The cuts recorded in `path`; none when the file is absent or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    cuts = []
    for item in data:
        if isinstance(item, dict) and isinstance(item.get("site"), str):
            peer = item.get("peer")
            cuts.append(Cut(item["site"], peer if isinstance(peer, str) else None))
    return cuts


def write_cuts(path: Path, cuts: list[Cut]) -> None:
    """Replace the record atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([c.to_json() for c in cuts], indent=2) + "\n")
    os.replace(tmp, path)


def host_networks(exclude: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, ipaddress.IPv4Network]]:
    """(where, network) of every IPv4 address and route of this namespace, except on the `exclude` links.
    Empty when `ip` cannot be run."""
    found: list[tuple[str, ipaddress.IPv4Network]] = []
    for entry in _ip_json("addr"):
        if entry.get("ifname") in exclude:
            continue
        for info in entry.get("addr_info", []):
            net = ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
            found.append((f"address on {entry.get('ifname')}", net))
    for route in _ip_json("route"):
        if route.get("dev") in exclude or route.get("dst") in (None, "default"):
            continue
        try:
            found.append((f"route via {route.get('dev')}", ipaddress.IPv4Network(route["dst"], strict=False)))
        except ValueError:
            continue
    return found


def _ip_json(what: str) -> list[dict[str, Any]]:
    try:
        done = subprocess.run(["ip", "-j", "-4", what, "show"], capture_output=True, text=True, timeout=10)
        data = json.loads(done.stdout or "[]")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []
    return data if isinstance(data, list) else []


def subnet_conflicts(topo: Topology, host: list[tuple[str, ipaddress.IPv4Network]]) -> list[str]:
    """Each site subnet that overlaps a network this host already uses (loopback aside)."""
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    out = []
    for site, subnet in topo.lab.sites.items():
        net = ipaddress.IPv4Network(subnet)
        out += [f"site {site}'s subnet {net} overlaps {used} ({where}) on this host"
                for where, used in host if not used.subnet_of(loopback) and net.overlaps(used)]
    return out


def wan_link_name(federation: str, site: str) -> str:
    """The root side of a site's veth pair (15 characters at most, as Linux requires)."""
    return "fv" + hashlib.sha1(f"{federation}/{site}".encode()).hexdigest()[:8]


def site_conflicts(topo: Topology) -> list[str]:
    """The sites' subnets that this host already uses, ignoring the lab's own links (when it is up)."""
    ours = {wan_link_name(topo.federation, site) for site in topo.lab.sites}
    return subnet_conflicts(topo, host_networks(exclude=ours))


def lab_network_is_up(topo: Topology) -> bool:
    """Whether every site of a namespace lab has its link in this (root) namespace."""
    return all(Path(f"/sys/class/net/{wan_link_name(topo.federation, site)}").exists() for site in topo.lab.sites)
