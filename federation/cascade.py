"""The one rule for who streams from whom: the declared cascade, re-rooted at the primary DC. Pure.

The topology declares a tree of links between DCs (`Datacenter.upstream`). Whichever DC is primary, every
DC streams from its neighbour on the tree path towards it, so an operation only turns links around and
never makes one the topology did not declare. The one exception is a DC that is gone: a live DC behind it
follows the nearest live DC on the path instead, over a temporary link that rejoin-dc's reshape step
takes back once the gone DC has returned.
"""

from __future__ import annotations

from collections.abc import Mapping

from federation.topology import Topology

Upstreams = dict[str, str | None]


def declared_links(topo: Topology) -> set[frozenset[str]]:
    """The tree's edges, without direction."""
    return {frozenset((dc.name, dc.upstream)) for dc in topo.datacenters if dc.upstream is not None}


def tree_parents(topo: Topology, root: str) -> Upstreams:
    """Each DC's neighbour on the tree path towards `root` (the root: None)."""
    neighbours: dict[str, list[str]] = {dc.name: [] for dc in topo.datacenters}
    for link in declared_links(topo):
        a, b = sorted(link)
        neighbours[a].append(b)
        neighbours[b].append(a)
    parents: Upstreams = {root: None}
    frontier = [root]
    while frontier:
        here = frontier.pop()
        for there in neighbours[here]:
            if there not in parents:
                parents[there] = here
                frontier.append(there)
    return {dc.name: parents[dc.name] for dc in topo.datacenters}


def reroot(topo: Topology, new_primary: str, gone: frozenset[str] = frozenset()) -> Upstreams:
    """Every DC's upstream once `new_primary` is the primary DC, in topology order.

    A DC in `gone` keeps its tree neighbour, so that it comes back into the declared shape; a live DC whose
    neighbour is gone follows the nearest live DC towards the root instead (a temporary link)."""
    if new_primary in gone:
        raise ValueError(f"the new primary DC {new_primary} cannot be gone")
    parents = tree_parents(topo, new_primary)
    upstreams: Upstreams = {}
    for name, parent in parents.items():
        if name not in gone:
            while parent is not None and parent in gone:
                parent = parents[parent]
        upstreams[name] = parent
    return upstreams


def temporary_links(topo: Topology, upstreams: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """The (dc, upstream) pairs that are not a declared link, in topology order."""
    declared = declared_links(topo)
    return [(dc.name, up) for dc in topo.datacenters
            if (up := upstreams.get(dc.name)) is not None and frozenset((dc.name, up)) not in declared]


def skipped(topo: Topology, dc: str, upstream: str) -> list[str]:
    """The DCs a temporary link from `dc` to `upstream` passes over on the tree, nearest to `dc` first."""
    parents = tree_parents(topo, upstream)
    between = []
    here = parents[dc]
    while here is not None and here != upstream:
        between.append(here)
        here = parents[here]
    return between


def describe(upstreams: Mapping[str, str | None]) -> list[str]:
    """One line per DC: "dc3 ← dc2", or "dc1 (primary)"."""
    return [f"{dc} (primary)" if up is None else f"{dc} ← {up}" for dc, up in upstreams.items()]
