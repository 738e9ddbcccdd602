"""WAN cuts between the namespace lab's sites, made with nftables (`tc netem` is not available here).

Packets are dropped, never rejected, and only on their way in, so a cut behaves as a real WAN cut does:
nothing answers, connections that cross it stall until the programs' own timeouts (a local drop on the
way out would instead fail the sender's send at once with EPERM).
- SITE cut from PEER: the root namespace's forward hook drops what travels between their subnets.
- SITE cut from everyone: the forward hook drops everything from or to SITE's subnet, the root
  namespace's input hook drops what SITE sends to it, and inside SITE an input hook drops everything
  that arrives on its WAN link. Traffic inside the site keeps flowing.
The record of cuts (`federation.lab_network`) is the source of truth; every change re-renders and loads
the whole ruleset in one `nft -f` transaction. The same table always keeps the sites' traffic inside the
lab (see root_ruleset).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from federation.errors import LabError
from federation.lab.netns import SITE_LINK, Site, run_tool, site, sites
from federation.lab_network import Cut, read_cuts, write_cuts
from federation.topology import Topology


def table_name(topo: Topology) -> str:
    return "fedlab_" + re.sub(r"[^A-Za-z0-9_]", "_", topo.federation)


def root_ruleset(topo: Topology, cuts: list[Cut]) -> str:
    """The root namespace's table for `cuts`. Whatever the cuts, nothing a site sends may leave the lab: a
    packet from a site to an address outside every site (a DNS resolver, say) is rejected at once, so it
    never reaches another host and the program that sent it is not kept waiting."""
    nets = {s.name: s.subnet for s in sites(topo)}
    lab_nets = ", ".join(str(net) for net in nets.values())
    forward: list[str] = [f"ip saddr {{ {lab_nets} }} ip daddr != {{ {lab_nets} }} reject with icmp type "
                          "admin-prohibited"] if nets else []
    inbound: list[str] = []
    for cut in cuts:
        net = nets[cut.site]
        if cut.peer is None:
            forward += [f"ip saddr {net} drop", f"ip daddr {net} drop"]
            inbound.append(f"ip saddr {net} drop")
        else:
            peer = nets[cut.peer]
            forward += [f"ip saddr {net} ip daddr {peer} drop", f"ip saddr {peer} ip daddr {net} drop"]
    name = table_name(topo)
    return "\n".join([
        f"table ip {name} {{}}",
        f"delete table ip {name}",
        f"table ip {name} {{",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        *(f"    {rule}" for rule in dict.fromkeys(forward)),
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        *(f"    {rule}" for rule in dict.fromkeys(inbound)),
        "  }",
        "}",
        "",
    ])


def site_ruleset(topo: Topology, isolated: bool) -> str:
    """The table inside a site: drop everything arriving on its WAN link while it is cut off from everyone."""
    name = table_name(topo)
    rules = [f'    iifname "{SITE_LINK}" drop'] if isolated else []
    return "\n".join([
        f"table ip {name} {{}}",
        f"delete table ip {name}",
        f"table ip {name} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        *rules,
        "  }",
        "}",
        "",
    ])


def _load(cuts: list[Cut], topo: Topology) -> None:
    run_tool(["nft", "-f", "-"], stdin=root_ruleset(topo, cuts))
    for s in sites(topo):
        isolated = any(c.site == s.name and c.peer is None for c in cuts)
        run_tool(["nft", "-f", "-"], netns=s.netns, stdin=site_ruleset(topo, isolated))


def load_current(topo: Topology) -> None:
    """(Re)load the rules for the cuts on record: at lab up, this puts the lab's egress guard in place."""
    _load(current(topo), topo)


def current(topo: Topology) -> list[Cut]:
    return read_cuts(topo.lab_cuts_file)


def partition(topo: Topology, site_name: str, peer: str | None = None) -> Cut:
    """Cut `site_name` off from `peer` (or from everyone), in both directions; returns the new cut."""
    chosen = site(topo, site_name)
    if peer is not None:
        site(topo, peer)
        if peer == site_name:
            raise LabError(f"cannot cut {site_name} from itself")
    _require_up(chosen)
    cut = Cut(chosen.name, peer)
    cuts = [c for c in current(topo) if c != cut]
    if peer is not None and Cut(peer, site_name) in cuts:
        return Cut(peer, site_name)
    cuts.append(cut)
    _load(cuts, topo)
    write_cuts(topo.lab_cuts_file, cuts)
    return cut


def timed_partition(topo: Topology, site_name: str, seconds: float, peer: str | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> tuple[Cut, float]:
    """A cut that lasts `seconds` and heals itself, in one process: a drill's "3 s cut" is then 3 s, not 3 s
    plus however long a second command takes to start on a loaded host. Only this cut is removed, and it
    is removed even when the wait is interrupted. Returns the cut and how long it was in place."""
    if seconds <= 0:
        raise LabError(f"a timed cut must last a positive number of seconds, not {seconds:g}")
    cut = partition(topo, site_name, peer)
    placed = time.monotonic()
    try:
        sleep(seconds)
    finally:
        _remove(topo, [cut])
    return cut, time.monotonic() - placed


def heal(topo: Topology, site_name: str | None = None) -> list[Cut]:
    """Remove every cut (or those involving `site_name`); returns the cuts removed."""
    if site_name is not None:
        site(topo, site_name)
    removed = [c for c in current(topo) if site_name is None or c.involves(site_name)]
    _remove(topo, removed)
    return removed


def _remove(topo: Topology, removed: list[Cut]) -> None:
    kept = [c for c in current(topo) if c not in removed]
    if any(s.netns_path.exists() for s in sites(topo)):
        _load(kept, topo)
    write_cuts(topo.lab_cuts_file, kept)


def remove_tables(topo: Topology) -> None:
    """Drop the lab's nftables tables everywhere (lab down), whatever the record says."""
    name = table_name(topo)
    run_tool(["nft", "delete", "table", "ip", name], check=False)
    for s in sites(topo):
        if s.netns_path.exists():
            run_tool(["nft", "delete", "table", "ip", name], netns=s.netns, check=False)
    topo.lab_cuts_file.unlink(missing_ok=True)


def _require_up(s: Site) -> None:
    if not s.netns_path.exists():
        raise LabError(f"site {s.name} has no namespace: the lab is not up", hint="run `fedctl lab up` first")
