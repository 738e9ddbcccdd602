"""federation.cascade over every labelled tree of up to six DCs (Prüfer sequences), every root, every gone set."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.cascade import describe, reroot, skipped, temporary_links, tree_parents
from federation.topology import DCRole, Topology, load_topology

TOPOLOGIES = Path(__file__).parents[1] / "integration" / "topologies"


def prufer_edges(sequence: tuple[int, ...], n: int) -> list[tuple[int, int]]:
    """The labelled tree on 0..n-1 that a Prüfer sequence of length n-2 encodes."""
    degree = [1] * n
    for node in sequence:
        degree[node] += 1
    leaves = [node for node in range(n) if degree[node] == 1]
    heapq.heapify(leaves)
    edges = []
    for node in sequence:
        leaf = heapq.heappop(leaves)
        edges.append((leaf, node))
        degree[node] -= 1
        if degree[node] == 1:
            heapq.heappush(leaves, node)
    edges.append((heapq.heappop(leaves), heapq.heappop(leaves)))
    return edges


def tree_topology(base: Topology, n: int, edges: list[tuple[int, int]], primary: int) -> Topology:
    """`base`'s first DC copied n times (dc1..dcN), its links the tree's, directed towards `primary`."""
    names = [f"dc{i + 1}" for i in range(n)]
    neighbours: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    upstream: dict[int, int | None] = {primary: None}
    frontier = [primary]
    while frontier:
        here = frontier.pop()
        for there in neighbours[here] - upstream.keys():
            upstream[there] = here
            frontier.append(there)
    template = base.datacenters[0]
    dcs = [template.model_copy(update={"name": names[i], "upstream": None if up is None else names[up],
                                       "role": DCRole.PRIMARY if up is None else DCRole.STANDBY})
           for i, up in sorted(upstream.items())]
    return base.model_copy(update={"datacenters": dcs})


def all_trees(base: Topology) -> Iterator[Topology]:
    """Every labelled tree on 1..6 DCs, declared with dc1 as the primary."""
    for n in range(1, 7):
        if n == 1:
            yield tree_topology(base, 1, [], 0)
            continue
        for sequence in itertools.product(range(n), repeat=n - 2):
            yield tree_topology(base, n, prufer_edges(sequence, n), 0)


@pytest.fixture(scope="module")
def trees() -> list[Topology]:
    return list(all_trees(load_topology(TOPOLOGIES / "two-dc.yaml")))


def links(upstreams: dict[str, str | None]) -> set[frozenset[str]]:
    return {frozenset((dc, up)) for dc, up in upstreams.items() if up is not None}


def declared(topo: Topology) -> dict[str, str | None]:
    return {dc.name: dc.upstream for dc in topo.datacenters}


def test_there_are_as_many_trees_as_cayley_says(trees: list[Topology]) -> None:
    assert len(trees) == sum(n ** (n - 2) if n > 1 else 1 for n in range(1, 7))
    assert all(len(links(declared(t))) == len(t.datacenters) - 1 for t in trees)


def test_every_re_root_keeps_exactly_the_declared_links(trees: list[Topology]) -> None:
    for topo in trees:
        want = links(declared(topo))
        assert reroot(topo, topo.initial_primary.name) == declared(topo)
        for root in (dc.name for dc in topo.datacenters):
            ups = reroot(topo, root)
            assert links(ups) == want, (declared(topo), root)
            assert [dc for dc, up in ups.items() if up is None] == [root]
            assert temporary_links(topo, ups) == []
            assert list(ups) == [dc.name for dc in topo.datacenters]


def test_live_dcs_follow_the_nearest_live_dc_towards_the_root(trees: list[Topology]) -> None:
    for topo in trees:
        names = [dc.name for dc in topo.datacenters]
        want = links(declared(topo))
        for root in names:
            parents = tree_parents(topo, root)
            others = [n for n in names if n != root]
            for size in range(len(others) + 1):
                for gone in map(frozenset, itertools.combinations(others, size)):
                    ups = reroot(topo, root, gone)
                    assert ups[root] is None
                    for dc in others:
                        if dc in gone:
                            assert ups[dc] == parents[dc], "a gone DC keeps its declared neighbour"
                            continue
                        nearest = parents[dc]
                        while nearest in gone:
                            nearest = parents[nearest]
                        assert ups[dc] == nearest and ups[dc] not in gone
                    temporary = {(dc, up) for dc, up in ups.items()
                                 if up is not None and frozenset((dc, up)) not in want}
                    assert set(temporary_links(topo, ups)) == temporary
                    assert all(dc not in gone for dc, _up in temporary)
                    assert all(set(skipped(topo, dc, up)) <= gone and skipped(topo, dc, up)
                               for dc, up in temporary)


def test_the_lab_cascade_re_rooted_at_its_far_end_turns_around() -> None:
    topo = load_topology(TOPOLOGIES / "three-dc.yaml")
    assert reroot(topo, "dc3") == {"dc1": "dc2", "dc2": "dc3", "dc3": None}
    with_dc2_lost = reroot(topo, "dc3", frozenset({"dc2"}))
    assert with_dc2_lost == {"dc1": "dc3", "dc2": "dc3", "dc3": None}
    assert temporary_links(topo, with_dc2_lost) == [("dc1", "dc3")]
    assert skipped(topo, "dc1", "dc3") == ["dc2"]
    assert describe(with_dc2_lost) == ["dc1 ← dc3", "dc2 ← dc3", "dc3 (primary)"]
    with pytest.raises(ValueError, match="cannot be gone"):
        reroot(topo, "dc3", frozenset({"dc3"}))
