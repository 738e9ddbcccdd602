"""Topologies for unit tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from federation.topology import Topology, parse_topology


def without_store(path: Path) -> Topology:
    """The topology in `path` with its federation_store section removed: today's per-DC record copies only."""
    data = yaml.safe_load(path.read_text())
    data.pop("federation_store", None)
    return parse_topology(data, str(path))
