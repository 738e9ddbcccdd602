"""The federation_store section: defaults, file:line:field errors, and the partition-safety warnings."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import federation.cli  # noqa: F401  (registers the commands on the group)
from federation.cli.app import cli
from federation.store_config import store_warnings
from federation.topology import load_topology
from tests.unit.test_topology import GOOD, edit, expect_error, write

STORE = """\
federation_store:
  etcd3:
    hosts:
      - {address: "10.1.0.9:2379", site: dc1}
      - {address: "10.2.0.9:2379", site: dc2}
      - {address: "10.3.0.9:2379", site: dc3}
"""

TWO_DC = GOOD.split("  - name: dc3\n")[0]


def test_store_section_is_optional_and_has_defaults(tmp_path: Path) -> None:
    assert load_topology(write(tmp_path, GOOD)).federation_store is None
    store = load_topology(write(tmp_path, GOOD + STORE)).federation_store
    assert store is not None
    assert store.kind == "etcd3" and store.namespace == "/fedctl/"
    assert (store.lease_ttl, store.fencing_margin, store.majority) == (10, 3.0, 2)
    first = store.hosts[0]
    assert (first.host, first.port, first.site) == ("10.1.0.9", 2379, "dc1")


def test_margin_must_be_below_the_ttl(tmp_path: Path) -> None:
    text = GOOD + STORE.replace("federation_store:", "federation_store:  # HERE") + "  lease_ttl: 4\n" \
        "  fencing_margin: 4\n"
    expect_error(tmp_path, text, "federation_store", "must be smaller than lease_ttl")


def test_bad_host_address_is_reported_at_its_line(tmp_path: Path) -> None:
    text = edit('      - {address: "10.2.0.9:2379", site: dc2}',
                '      - {address: "10.2.0.9", site: dc2}  # HERE', GOOD + STORE)
    expect_error(tmp_path, text, "federation_store.etcd3.hosts[1].address", "is not host:port")


def test_site_needs_a_valid_name(tmp_path: Path) -> None:
    text = edit("site: dc3}", "site: Witness-1}  # HERE", GOOD + STORE)
    expect_error(tmp_path, text, "federation_store.etcd3.hosts[2].site", "should match pattern")


def test_one_kind_exactly(tmp_path: Path) -> None:
    text = GOOD + STORE.replace("federation_store:", "federation_store:  # HERE") + \
        "  zookeeper:\n    hosts:\n      - {address: \"10.9.0.9:2181\", site: witness}\n"
    expect_error(tmp_path, text, "federation_store", "exactly one store kind")


def test_store_members_need_addresses_of_their_own(tmp_path: Path) -> None:
    text = edit('      - {address: "10.2.0.9:2379", site: dc2}',
                '      - {address: "10.2.0.5:2379", site: dc2}  # HERE', GOOD + STORE)
    expect_error(tmp_path, text, "federation_store.etcd3.hosts[1].address", "also the DCS of datacenter dc2")
    text = edit('      - {address: "10.2.0.9:2379", site: dc2}',
                '      - {address: "10.1.0.9:2379", site: dc2}  # HERE', GOOD + STORE)
    expect_error(tmp_path, text, "federation_store.etcd3.hosts[1].address", "used twice")


def test_unknown_store_field_is_refused(tmp_path: Path) -> None:
    text = GOOD + STORE + "  lease_tll: 5  # HERE\n"
    expect_error(tmp_path, text, "federation_store.lease_tll", "unknown field")


def test_two_dcs_without_a_witness_warn_and_validate_prints_it(tmp_path: Path) -> None:
    two_dc_store = STORE.replace('      - {address: "10.3.0.9:2379", site: dc3}\n',
                                 '      - {address: "10.1.0.8:2379", site: dc1}\n')
    path = write(tmp_path, TWO_DC + two_dc_store)
    warnings = store_warnings(load_topology(path))
    assert len(warnings) == 1 and "cannot be partition-safe" in warnings[0] and "fence_command" in warnings[0]
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0
    assert "Warning: a two-DC federation" in result.stderr
    assert "Federation store: etcd3 10.1.0.9:2379 (dc1)" in result.stdout


def test_two_dcs_with_a_witness_and_three_dcs_do_not_warn(tmp_path: Path) -> None:
    witness = STORE.replace("site: dc3}", "site: witness}")
    assert store_warnings(load_topology(write(tmp_path, TWO_DC + witness))) == []
    assert store_warnings(load_topology(write(tmp_path, GOOD + STORE))) == []


def test_a_site_holding_the_majority_warns(tmp_path: Path) -> None:
    text = STORE.replace("site: dc2}", "site: dc1}")
    warnings = store_warnings(load_topology(write(tmp_path, GOOD + text)))
    assert any("site dc1 holds 2 of the store's 3 members" in w for w in warnings)


def test_no_store_warns_that_the_commit_is_not_consensus(tmp_path: Path) -> None:
    assert "not consensus" in store_warnings(load_topology(write(tmp_path, GOOD)))[0]
