"""The namespace lab's pure parts: site validation, the site plan, the nftables rules of a cut, the cut record."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from federation.errors import LabError, TopologyError
from federation.lab import cuts, netns
from federation.lab.cuts import root_ruleset, site_ruleset, table_name
from federation.lab.processes import LabUser, as_user_argv
from federation.lab_network import Cut, read_cuts, subnet_conflicts, write_cuts
from federation.topology import Topology, load_topology, parse_topology

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "topologies" / "lab-partition.yaml"


def _topology(edit: dict[str, object] | None = None, **lab: object) -> Topology:
    import yaml

    data = yaml.safe_load(LAB.read_text())
    data["lab"] = {**data["lab"], **lab}
    for path, value in (edit or {}).items():
        node = data
        *parents, last = path.split(".")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
    return parse_topology(data, "lab.yaml")


def _problems(**kwargs: object) -> str:
    with pytest.raises(TopologyError) as err:
        _topology(**kwargs)  # type: ignore[arg-type]
    return "\n".join(err.value.problems)


def test_shipped_partition_lab_has_a_site_per_dc_and_a_witness() -> None:
    topo = load_topology(LAB)
    plan = {s.name: s for s in netns.sites(topo)}
    assert list(plan) == ["dc1", "dc2", "witness"]
    assert plan["dc1"].gateway == "10.250.1.1" and plan["dc1"].own_address == "10.250.1.2"
    assert {"10.250.1.5", "10.250.1.9", "10.250.1.11", "10.250.1.12"} <= set(plan["dc1"].addresses)
    assert plan["witness"].addresses == ("10.250.3.2", "10.250.3.9", "10.250.3.20"), \
        "the witness holds a store member and the repository host"
    assert all(len(s.wan_link) <= 15 for s in plan.values()), "Linux interface names hold 15 characters"
    assert len({s.wan_link for s in plan.values()}) == 3
    assert netns.netns_of(topo, "dc2") == plan["dc2"].netns and netns.netns_of(topo, "witness") == plan["witness"].netns


def test_a_loopback_lab_has_no_sites() -> None:
    topo = load_topology(REPO / "topologies" / "lab-two-dc.yaml")
    assert netns.sites(topo) == [] and netns.netns_of(topo, "dc1") is None
    with pytest.raises(LabError, match="loopback lab"):
        netns.site(topo, "dc1")


def test_a_dc_without_a_site_is_refused() -> None:
    assert "datacenter dc2 needs a site" in _problems(sites={"dc1": "10.250.1.0/24"})


def test_an_address_outside_its_site_is_refused_with_its_file_line_and_field(tmp_path: Path) -> None:
    text = _problems(edit={"datacenters.1.members.0.host": "10.250.1.40"})
    assert "datacenters[1].members[0].host: 10.250.1.40 is not a host address of dc2's site subnet 10.250.2.0/24" \
        in text
    broken = tmp_path / "lab.yaml"
    source = LAB.read_text().replace("{name: n3, host: 10.250.2.11", "{name: n3, host: 10.250.9.11")
    broken.write_text(source)
    line = next(i for i, row in enumerate(source.splitlines(), start=1) if "10.250.9.11" in row)
    with pytest.raises(TopologyError) as err:
        load_topology(broken)
    assert f"{broken}:{line}: datacenters[1].members[0].host: 10.250.9.11 is not a host address" in str(err.value)


def test_a_repository_host_outside_every_site_is_refused() -> None:
    text = _problems(edit={"pgbackrest.repo_host.address": "10.99.0.20"})
    assert "pgbackrest.repo_host.address: the repository host 10.99.0.20 lies in no site's subnet" in text
    assert netns.netns_of_address(load_topology(LAB), "10.250.3.20") == "fedlab-lab-partition-witness"


def test_the_wan_side_address_of_a_site_is_refused() -> None:
    text = _problems(edit={"datacenters.0.dcs.etcd3.hosts": ["10.250.1.1:2379"]})
    assert "is the WAN side of dc1's link" in text


def test_overlapping_sites_and_bad_subnets_are_refused() -> None:
    assert "overlaps" in _problems(sites={"dc1": "10.250.0.0/16", "dc2": "10.250.2.0/24"})
    assert "is not a subnet" in _problems(sites={"dc1": "10.250.1.7/24", "dc2": "10.250.2.0/24"})
    assert "IPv4 subnet of /28 or larger" in _problems(sites={"dc1": "10.250.1.0/30", "dc2": "10.250.2.0/24"})


def test_sites_without_namespaces_are_refused() -> None:
    assert "only with 'network: namespaces'" in _problems(network="loopback")


def test_subnets_the_host_uses_are_reported_and_loopback_is_not() -> None:
    topo = load_topology(LAB)
    used = [("address on eth0", ipaddress.IPv4Network("10.250.2.0/23")),
            ("address on lo", ipaddress.IPv4Network("127.0.0.0/8")),
            ("route via eth0", ipaddress.IPv4Network("192.168.0.0/16"))]
    found = subnet_conflicts(topo, used)
    assert found == ["site dc2's subnet 10.250.2.0/24 overlaps 10.250.2.0/23 (address on eth0) on this host",
                     "site witness's subnet 10.250.3.0/24 overlaps 10.250.2.0/23 (address on eth0) on this host"]


def test_namespace_lab_refuses_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root") as err:
        netns.check_possible(load_topology(LAB))
    assert "loopback lab" in (err.value.hint or "")


def test_a_full_cut_drops_everything_of_the_site_on_its_way_in() -> None:
    topo = load_topology(LAB)
    rules = root_ruleset(topo, [Cut("dc1")])
    forward = rules.split("chain forward")[1].split("chain input")[0]
    inbound = rules.split("chain input")[1]
    assert "ip saddr 10.250.1.0/24 drop" in forward and "ip daddr 10.250.1.0/24 drop" in forward
    assert "ip saddr 10.250.1.0/24 drop" in inbound
    assert "hook output" not in rules, "a drop on the way out fails the sender at once (EPERM): not a WAN cut"
    assert f"delete table ip {table_name(topo)}" in rules, "each load replaces the whole table"
    assert 'iifname "wan0" drop' in site_ruleset(topo, isolated=True)
    assert "drop" not in site_ruleset(topo, isolated=False)


def test_a_cut_between_two_sites_touches_only_their_traffic() -> None:
    topo = load_topology(LAB)
    rules = root_ruleset(topo, [Cut("dc2", "dc1")])
    assert "ip saddr 10.250.2.0/24 ip daddr 10.250.1.0/24 drop" in rules
    assert "ip saddr 10.250.1.0/24 ip daddr 10.250.2.0/24 drop" in rules
    cut_rules = [r for r in rules.splitlines() if r.strip().endswith("drop")]
    assert len(cut_rules) == 2 and not any("10.250.3.0/24" in r for r in cut_rules)
    assert rules.split("chain input")[1].count("drop") == 0


def test_without_cuts_only_the_egress_guard_is_in_place() -> None:
    rules = root_ruleset(load_topology(LAB), [])
    assert "drop" not in rules
    sites = "{ 10.250.1.0/24, 10.250.2.0/24, 10.250.3.0/24 }"
    assert f"ip saddr {sites} ip daddr != {sites} reject" in rules, "no packet of a site may leave the lab"


def test_cut_record_round_trip_and_sentences(tmp_path: Path) -> None:
    path = tmp_path / "network" / "cuts.json"
    assert read_cuts(path) == []
    write_cuts(path, [Cut("dc1"), Cut("dc2", "dc1")])
    assert read_cuts(path) == [Cut("dc1"), Cut("dc2", "dc1")]
    assert Cut("dc1").describe() == "dc1 cut off from every site and the admin host"
    assert Cut("dc2", "dc1").describe() == "dc2 cut off from dc1"
    assert Cut("dc2", "dc1").involves("dc1") and not Cut("dc2", "dc1").involves("witness")
    path.write_text("{not json")
    assert read_cuts(path) == []


def test_a_timed_cut_heals_itself_even_when_interrupted_and_keeps_the_other_cuts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDCTL_LAB_DIR", str(tmp_path / "lab"))
    loaded: list[list[Cut]] = []
    monkeypatch.setattr(cuts, "_load", lambda in_place, _topo: loaded.append(list(in_place)))
    monkeypatch.setattr(cuts, "_require_up", lambda _site: None)
    monkeypatch.setattr(netns.Site, "netns_path", property(lambda _s: tmp_path))  # every namespace "exists"
    topo = load_topology(LAB)
    cuts.partition(topo, "dc2", "witness")
    waited: list[float] = []
    cut, lasted = cuts.timed_partition(topo, "dc1", 3.0, sleep=waited.append)
    assert cut == Cut("dc1") and waited == [3.0] and lasted >= 0
    assert loaded[-2] == [Cut("dc2", "witness"), Cut("dc1")], "the timed cut was never in place"
    assert loaded[-1] == cuts.current(topo) == [Cut("dc2", "witness")]

    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        cuts.timed_partition(topo, "dc1", 3.0, sleep=interrupted)
    assert cuts.current(topo) == [Cut("dc2", "witness")], "an interrupted timed cut stayed in place"
    with pytest.raises(LabError, match="positive number of seconds"):
        cuts.timed_partition(topo, "dc1", 0)


def test_processes_enter_the_namespace_before_dropping_privileges() -> None:
    user = LabUser("postgres", 70000, 70000, "/var/lib/postgresql")
    argv = as_user_argv(user, ["patroni", "x.yml"], "fedlab-x-dc1")
    assert argv[:2] == ["nsenter", "--net=/run/netns/fedlab-x-dc1"]
    assert argv[2] == "setpriv" and argv[-2:] == ["patroni", "x.yml"]
    assert as_user_argv(user, ["patroni"])[0] == "setpriv"


def test_commands_refuse_a_namespace_lab_that_is_not_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its addresses exist only inside the lab: without it, traffic to them would leave the machine."""
    from click.testing import CliRunner

    import federation.cli  # registers the commands
    import federation.lab_network
    from federation.cli.app import cli

    monkeypatch.setattr(federation.lab_network, "lab_network_is_up", lambda topo: False)
    done = CliRunner().invoke(cli, ["status", "-t", str(LAB)])
    assert done.exit_code == 2 and "namespace lab that is not up" in done.output, done.output
    assert CliRunner().invoke(cli, ["validate", str(LAB)]).exit_code == 0
