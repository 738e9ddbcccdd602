"""A lab whose etcd data predates its etcd TLS is refused with the way out, not left unhealthy for 60 s
(its members keep their peers' http URLs in their data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from federation.errors import LabError
from federation.lab.lab import Lab, _refuse_plain_etcd_data
from federation.lab.layout import LabLayout
from federation.topology import parse_topology

BASE = Path(__file__).resolve().parents[1] / "integration" / "topologies" / "two-dc.yaml"


def test_etcd_data_made_before_the_lab_ca_is_refused_with_the_wipe_command(tmp_path: Path) -> None:
    data = yaml.safe_load(BASE.read_text())
    ca = tmp_path / "tls" / "ca.crt"
    data["lab"] = {**data.get("lab", {}), "dir": str(tmp_path / "lab")}
    data["pgbackrest"]["tls"]["ca_file"] = str(ca)
    data["etcd_tls"]["ca_file"] = str(ca)
    topo = parse_topology(data, "plain-etcd")
    lab = Lab(topo, LabLayout(topo), None)  # type: ignore[arg-type]  # the check needs no OS user
    _refuse_plain_etcd_data(lab)  # a new lab: nothing to refuse
    (tmp_path / "lab" / "dc1" / "etcd3" / "s1" / "data" / "member").mkdir(parents=True)
    with pytest.raises(LabError, match="before this lab served etcd over TLS") as refused:
        _refuse_plain_etcd_data(lab)
    assert "--wipe" in (refused.value.hint or "")
    ca.parent.mkdir()
    ca.write_text("a lab CA\n")  # the data was made with TLS: it starts as it is
    _refuse_plain_etcd_data(lab)
