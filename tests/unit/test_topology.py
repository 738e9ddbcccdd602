"""Topology validation: every broken file is refused with file:line: field: message and exit code 2.

Each case edits a known-good topology; the line the error must point at carries a `# HERE` comment.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import federation.cli  # noqa: F401  (registers the commands on the group)
from federation.cli.app import cli
from federation.errors import EXIT_BAD_INPUT, BadInput, TopologyError
from federation.topology import SyncMode, Topology, load_topology

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
federation: unit
fencing: permissive
credentials:
  superuser:
    username: postgres
    password: {env: FEDCTL_TEST_SUPERUSER}
  replication:
    username: replicator
    password: {file: /etc/fedctl/secrets/replication}
  rewind:
    username: rewinder
    password: {file: /etc/fedctl/secrets/rewind}
pgbackrest:
  repo_path: /var/lib/pgbackrest
datacenters:
  - name: dc1
    role: primary
    dcs:
      etcd3:
        hosts: ["10.1.0.5:2379"]
    members:
      - name: n1
        host: 10.1.0.11
        api: "10.1.0.11:8008"
      - name: n2
        host: 10.1.0.12
        api: "10.1.0.12:8008"
  - name: dc2
    role: standby
    upstream: dc1
    dcs:
      etcd3:
        hosts: ["10.2.0.5:2379"]
    members:
      - name: n3
        host: 10.2.0.11
        api: "10.2.0.11:8008"
  - name: dc3
    role: standby
    upstream: dc2
    dcs:
      zookeeper:
        hosts: ["10.3.0.5:2181"]
    members:
      - name: n5
        host: 10.3.0.11
        api: "10.3.0.11:8008"
"""


def edit(old: str, new: str, text: str = GOOD) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def marked_line(text: str) -> int:
    marked = [n for n, line in enumerate(text.splitlines(), start=1) if "# HERE" in line]
    assert len(marked) == 1, "mark exactly one line with # HERE"
    return marked[0]


def write(tmp_path: Path, text: str | bytes, name: str = "topology.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    path.chmod(0o600)  # a secret file must be; a topology file may be
    return path


def validate_cli(path: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["validate", str(path)])
    return result.exit_code, result.stdout, result.stderr


def expect_error(tmp_path: Path, text: str, field: str, fragment: str, line: int | None = None) -> str:
    """The file is refused with `<file>:<line>: <field>: ...fragment...`, by the library and by the CLI."""
    path = write(tmp_path, text)
    line = line if line is not None else marked_line(text)
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    prefix = f"{path}:{line}: {field}: "
    found = [p for p in caught.value.problems if p.startswith(prefix)]
    assert found, f"no problem starting with {prefix!r} in {caught.value.problems}"
    assert fragment in found[0]
    code, out, err = validate_cli(path)
    assert code == EXIT_BAD_INPUT
    assert found[0] in err
    assert out == ""
    return found[0]


# --- the good files ---------------------------------------------------------------------------------------


SHIPPED = sorted([*(REPO / "topologies").glob("*.yaml"), *(REPO / "tests/integration/topologies").glob("*.yaml")])


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_topologies_validate(path: Path) -> None:
    topo = load_topology(path)
    code, out, err = validate_cli(path)
    assert code == 0, err
    assert f"Federation {topo.federation} ({path}): valid" in out
    for dc in topo.datacenters:
        assert dc.name in out
        for member in dc.members:
            assert f"{member.name}@{member.host}:{member.port}" in out


def test_validate_says_how_each_standby_dc_follows_its_upstream(tmp_path: Path) -> None:
    code, out, err = validate_cli(write(tmp_path, GOOD))
    assert code == 0, err
    assert "dc2 follows dc1 through every member (multi-host, port 5432)" in out
    assert ("dc3 follows dc2's standby leader host:port, re-pointed by the agents when it changes (dc2 is itself "
            "a standby DC)") in out
    mixed = edit("        host: 10.1.0.12\n", "        host: 10.1.0.12\n        port: 5433\n")
    code, out, err = validate_cli(write(tmp_path, mixed))
    assert code == 0, err
    assert ("dc2 follows dc1's leader host:port, re-pointed by the agents when it changes (dc1's members use "
            "different ports)") in out
    assert "n2@10.1.0.12:5433" in out


def test_good_file_has_defaults_filled_in(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, GOOD))
    assert topo.source == str(tmp_path / "topology.yaml")
    dc1, dc2, dc3 = topo.datacenters
    assert topo.initial_primary is dc1
    assert (dc2.upstream, dc3.upstream) == ("dc1", "dc2")
    assert dc1.dcs.kind == "etcd3" and dc3.dcs.kind == "zookeeper"
    assert dc1.dcs.namespace == "/service/"
    assert [m.port for m in dc1.members] == [5432, 5432] and dc1.synchronous is SyncMode.OFF
    assert dc2.slot_name == "fed_dc2"
    assert dc1.patroni_scope == "dc1"
    assert topo.pgbackrest is not None and topo.pgbackrest_for(dc3) is topo.pgbackrest
    assert topo.pgbackrest.stanza == "fed"


def test_missing_file_exits_2(tmp_path: Path) -> None:
    code, _, err = validate_cli(tmp_path / "nope.yaml")
    assert code == EXIT_BAD_INPUT
    assert f"topology file {tmp_path / 'nope.yaml'} does not exist" in err


def test_file_that_is_not_utf8_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, b"federation: caf\xe9\n")
    code, _, err = validate_cli(path)
    assert code == EXIT_BAD_INPUT
    assert f"topology file {path} is not UTF-8 text" in err


# --- YAML itself ----------------------------------------------------------------------------------------------


def test_tab_indentation(tmp_path: Path) -> None:
    text = edit("  repo_path: /var/lib/pgbackrest\n", "\trepo_path: /var/lib/pgbackrest  # HERE\n")
    expect_error(tmp_path, text, "not valid YAML", "found character '\\t' that cannot start any token")


def test_unclosed_bracket_names_where_it_opened(tmp_path: Path) -> None:
    text = edit('hosts: ["10.2.0.5:2379"]', 'hosts: ["10.2.0.5:2379"  # HERE')
    opened = marked_line(text)
    problem = expect_error(tmp_path, text, "not valid YAML", "expected ',' or ']'", line=opened + 1)
    assert problem.endswith(f"(while parsing a flow sequence that starts at line {opened})")


def test_unclosed_quote(tmp_path: Path) -> None:
    text = edit('api: "10.3.0.11:8008"', 'api: "10.3.0.11:8008')
    expect_error(tmp_path, text, "not valid YAML", "end of stream", line=len(GOOD.splitlines()) + 1)


@pytest.mark.parametrize("text", ["- dc1\n- dc2\n", "just a string\n", "", "# only a comment\n"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert caught.value.problems == [f"{path}:1: the file must hold a mapping with 'federation' and 'datacenters'"]
    code, _, err = validate_cli(path)
    assert code == EXIT_BAD_INPUT and caught.value.problems[0] in err


def test_duplicate_key_is_refused_not_silently_merged(tmp_path: Path) -> None:
    text = edit("    upstream: dc1\n", "    upstream: dc1\n    upstream: dc3  # HERE\n")
    expect_error(tmp_path, text, "datacenters[1].upstream", "duplicate key")


def test_key_that_yaml_reads_as_a_boolean(tmp_path: Path) -> None:
    text = edit("fencing: permissive\n", "fencing: permissive\non: true  # HERE\n")
    expect_error(tmp_path, text, "on", "quote it")


# --- missing and unknown fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["federation", "credentials", "datacenters"])
def test_missing_top_level_section(tmp_path: Path, section: str) -> None:
    lines = GOOD.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{section}:"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    text = "".join(lines[:start] + lines[end:])
    expect_error(tmp_path, text, section, "required field is missing", line=1)


def test_missing_credential_points_at_its_section(tmp_path: Path) -> None:
    text = edit("credentials:\n", "credentials:  # HERE\n",
                edit("  rewind:\n    username: rewinder\n    password: {file: /etc/fedctl/secrets/rewind}\n", ""))
    expect_error(tmp_path, text, "credentials.rewind", "required field is missing")


def test_missing_member_field_points_at_the_member(tmp_path: Path) -> None:
    text = edit('      - name: n3\n        host: 10.2.0.11\n', '      - name: n3  # HERE\n')
    expect_error(tmp_path, text, "datacenters[1].members[0].host", "required field is missing")


@pytest.mark.parametrize(("old", "new", "field"), [
    ("fencing: permissive\n", "fencing: permissive\nfenceing: strict  # HERE\n", "fenceing"),
    ("    upstream: dc2\n", "    upstream: dc2\n    fence_comand: /bin/true  # HERE\n", "datacenters[2].fence_comand"),
    ("        host: 10.1.0.12\n", "        host: 10.1.0.12\n        hostname: db2  # HERE\n",
     "datacenters[0].members[1].hostname"),
    ("    password: {env: FEDCTL_TEST_SUPERUSER}", "    password: {environment: X}  # HERE",
     "credentials.superuser.password.environment"),
])
def test_unknown_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    expect_error(tmp_path, edit(old, new), field, "unknown field (check the spelling; see docs/topology.md)")


# --- names ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "field", "fragment"), [
    ("  - name: dc2\n", "  - name: DC-2  # HERE\n", "datacenters[1].name", "'DC-2' is not a valid name"),
    ("  - name: dc1\n", "  - name: 1dc  # HERE\n", "datacenters[0].name", "'1dc' is not a valid name"),
    ("      - name: n3\n", "      - name: node-3  # HERE\n", "datacenters[1].members[0].name",
     "'node-3' is not a valid name: lowercase letters"),
    ("      - name: n1\n", f"      - name: n{'x' * 31}  # HERE\n", "datacenters[0].members[0].name",
     "at most 31 characters"),
    ("federation: unit\n", "federation: my federation  # HERE\n", "federation", "is not a federation name"),
    ("    upstream: dc1\n", "    upstream: dc1\n    scope: 'a/b'  # HERE\n", "datacenters[1].scope",
     "should match pattern"),
])
def test_bad_name(tmp_path: Path, old: str, new: str, field: str, fragment: str) -> None:
    expect_error(tmp_path, edit(old, new), field, fragment)


def test_duplicate_datacenter_name(tmp_path: Path) -> None:
    text = edit("  - name: dc3\n    role: standby\n    upstream: dc2\n",
                "  - name: dc2  # HERE\n    role: standby\n    upstream: dc1\n")
    expect_error(tmp_path, text, "datacenters[2].name",
                 "datacenter name dc2 is used twice (also at datacenters[1].name)")


def test_duplicate_member_name_across_datacenters(tmp_path: Path) -> None:
    text = edit("      - name: n5\n", "      - name: n1  # HERE\n")
    expect_error(tmp_path, text, "datacenters[2].members[0].name",
                 "member name n1 is used twice (also at datacenters[0].members[0].name)")


def test_duplicate_scope_on_a_shared_dcs(tmp_path: Path) -> None:
    text = edit('        hosts: ["10.2.0.5:2379"]\n', '        hosts: ["10.1.0.5:2379"]\n',
                edit("    upstream: dc1\n", "    upstream: dc1\n    scope: dc1  # HERE\n"))
    expect_error(tmp_path, text, "datacenters[1].scope",
                 "Patroni scope /service/dc1 on DCS 10.1.0.5:2379 is used twice")


def test_same_scope_on_separate_dcs_is_fine(tmp_path: Path) -> None:
    text = edit("    upstream: dc1\n", "    upstream: dc1\n    scope: dc1\n")
    assert load_topology(write(tmp_path, text)).datacenters[1].patroni_scope == "dc1"


# --- addresses ----------------------------------------------------------------------------------------------


def test_duplicate_postgres_address(tmp_path: Path) -> None:
    text = edit("        host: 10.2.0.11\n", "        host: 10.1.0.11  # HERE\n")
    expect_error(tmp_path, text, "datacenters[1].members[0].host",
                 "PostgreSQL address 10.1.0.11:5432 is used twice (also at datacenters[0].members[0].host)")


def test_duplicate_rest_api_address(tmp_path: Path) -> None:
    text = edit('        api: "10.2.0.11:8008"\n', '        api: "10.1.0.12:8008"  # HERE\n')
    expect_error(tmp_path, text, "datacenters[1].members[0].api",
                 "REST API address 10.1.0.12:8008 is used twice (also at datacenters[0].members[1].api)")


def test_api_on_a_postgres_address(tmp_path: Path) -> None:
    text = edit('        api: "10.1.0.12:8008"\n', '        api: "10.1.0.11:5432"  # HERE\n')
    expect_error(tmp_path, text, "datacenters[0].members[1].api", "REST API address 10.1.0.11:5432 is used twice")


def test_dcs_on_a_member_address(tmp_path: Path) -> None:
    text = edit('        hosts: ["10.3.0.5:2181"]\n', '        hosts: ["10.3.0.11:8008"]  # HERE\n')
    expect_error(tmp_path, text, "datacenters[2].dcs.zookeeper.hosts[0]",
                 "DCS address 10.3.0.11:8008 is also used by datacenters[2].members[0].api")


def test_members_of_one_dc_may_use_different_postgres_ports(tmp_path: Path) -> None:
    text = edit("        host: 10.1.0.12\n", "        host: 10.1.0.12\n        port: 5433\n")
    dc1 = load_topology(write(tmp_path, text)).datacenters[0]
    assert [(m.name, m.port) for m in dc1.members] == [("n1", 5432), ("n2", 5433)]


def test_other_dcs_may_use_another_port(tmp_path: Path) -> None:
    text = edit("        host: 10.2.0.11\n", "        host: 10.2.0.11\n        port: 6432\n")
    assert load_topology(write(tmp_path, text)).datacenters[1].members[0].port == 6432


@pytest.mark.parametrize(("host", "fragment"), [
    ("10.1.0.300", "'10.1.0.300' is not a valid IP address"),
    ("db_1.example.com", "is neither an IP address nor a DNS name"),
    ("-db1", "is neither an IP address nor a DNS name"),
    ("db1..example.com", "is neither an IP address nor a DNS name"),
    ("'10.1.0.11:5432'", "is neither an IP address nor a DNS name"),
    ("''", "host must be an IP address or a DNS name"),
])
def test_bad_member_host(tmp_path: Path, host: str, fragment: str) -> None:
    text = edit("        host: 10.1.0.11\n", f"        host: {host}  # HERE\n")
    expect_error(tmp_path, text, "datacenters[0].members[0].host", fragment)


@pytest.mark.parametrize("host", ["db1.dc1.example.com", "db1", "fd00::11", "db1.example.com."])
def test_good_member_host(tmp_path: Path, host: str) -> None:
    text = edit("        host: 10.1.0.11\n", f"        host: '{host}'\n")
    assert load_topology(write(tmp_path, text)).datacenters[0].members[0].host == host


@pytest.mark.parametrize(("port", "fragment"), [
    ("0", "greater than or equal to 1"),
    ("70000", "less than or equal to 65535"),
    ("abc", "valid integer"),
    ("5432.5", "valid integer"),
    ("yes", "expected a number, not the YAML boolean true"),
])
def test_bad_member_port(tmp_path: Path, port: str, fragment: str) -> None:
    text = edit("        host: 10.1.0.11\n", f"        host: 10.1.0.11\n        port: {port}  # HERE\n")
    expect_error(tmp_path, text, "datacenters[0].members[0].port", fragment)


@pytest.mark.parametrize(("api", "field", "fragment"), [
    ('"10.1.0.11"', "api", "'10.1.0.11' is not host:port"),
    ('"10.1.0.11:"', "api", "'10.1.0.11:' is not host:port"),
    ('"10.1.0.11:http"', "api", "'10.1.0.11:http' is not host:port"),
    ('"10.1.0.11:-1"', "api", "is not host:port"),
    ('":8008"', "api.host", "host must be an IP address or a DNS name"),
    ('"10.1.0.11:0"', "api.port", "greater than or equal to 1"),
    ('"10.1.0.11:99999"', "api.port", "less than or equal to 65535"),
    ('"a:b:8008"', "api", "an IPv6 address needs brackets"),
    ('"fd00::11:8008"', "api", "an IPv6 address needs brackets, as in [fd00::11]:8008"),
    ('"[10.1.0.11]:8008"', "api", "brackets are for IPv6 addresses only"),
    ("8008", "api", "expected 'host:port' as a string, got 8008"),
])
def test_bad_host_port_string(tmp_path: Path, api: str, field: str, fragment: str) -> None:
    text = edit('        api: "10.1.0.11:8008"\n', f"        api: {api}  # HERE\n")
    expect_error(tmp_path, text, f"datacenters[0].members[0].{field}", fragment)


def test_ipv6_host_port_in_brackets(tmp_path: Path) -> None:
    text = edit('        api: "10.1.0.11:8008"\n', '        api: "[fd00::11]:8008"\n')
    api = load_topology(write(tmp_path, text)).datacenters[0].members[0].api
    assert (api.host, api.port) == ("fd00::11", 8008)


# --- DCS -------------------------------------------------------------------------------------------------------


def test_both_etcd3_and_zookeeper(tmp_path: Path) -> None:
    text = edit('      etcd3:\n        hosts: ["10.2.0.5:2379"]\n',
                '      etcd3:\n        hosts: ["10.2.0.5:2379"]\n      zookeeper:\n        hosts: ["10.2.0.6:2181"]\n')
    text = edit("    upstream: dc1\n    dcs:\n", "    upstream: dc1\n    dcs:  # HERE\n", text)
    expect_error(tmp_path, text, "datacenters[1].dcs", "declare exactly one DCS kind: 'etcd3' or 'zookeeper'")


def test_neither_etcd3_nor_zookeeper(tmp_path: Path) -> None:
    text = edit('    dcs:\n      zookeeper:\n        hosts: ["10.3.0.5:2181"]\n',
                "    dcs:  # HERE\n      namespace: /fed/\n")
    expect_error(tmp_path, text, "datacenters[2].dcs", "declare exactly one DCS kind")


def test_dcs_without_hosts(tmp_path: Path) -> None:
    text = edit('        hosts: ["10.2.0.5:2379"]\n', "        hosts: []  # HERE\n")
    expect_error(tmp_path, text, "datacenters[1].dcs.etcd3.hosts", "at least 1 item")


@pytest.mark.parametrize("namespace", ["fed", "/fed space/", "/fed//x/", "/fé/"])
def test_bad_namespace(tmp_path: Path, namespace: str) -> None:
    text = edit('        hosts: ["10.1.0.5:2379"]\n',
                f'        hosts: ["10.1.0.5:2379"]\n      namespace: "{namespace}"  # HERE\n')
    expect_error(tmp_path, text, "datacenters[0].dcs.namespace", "namespace must look like /name/")


def test_namespace_gets_its_trailing_slash(tmp_path: Path) -> None:
    text = edit('        hosts: ["10.1.0.5:2379"]\n', '        hosts: ["10.1.0.5:2379"]\n      namespace: /fed\n')
    assert load_topology(write(tmp_path, text)).datacenters[0].dcs.namespace == "/fed/"


# --- roles and upstreams ---------------------------------------------------------------------------------------


def test_two_primaries(tmp_path: Path) -> None:
    text = edit("datacenters:\n", "datacenters:  # HERE\n",
                edit("    role: standby\n    upstream: dc2\n", "    role: primary\n"))
    expect_error(tmp_path, text, "datacenters", "exactly one datacenter must have role: primary (found: dc1, dc3)")


def test_no_primary(tmp_path: Path) -> None:
    text = edit("datacenters:\n", "datacenters:  # HERE\n",
                edit("    role: primary\n", "    role: standby\n    upstream: dc3\n"))
    expect_error(tmp_path, text, "datacenters", "(found: none)")


def test_primary_with_upstream(tmp_path: Path) -> None:
    text = edit("    role: primary\n", "    role: primary\n    upstream: dc2  # HERE\n")
    expect_error(tmp_path, text, "datacenters[0].upstream", "primary datacenter dc1 cannot have an upstream")


def test_standby_without_upstream(tmp_path: Path) -> None:
    text = edit("    role: standby\n    upstream: dc1\n", "    role: standby  # HERE\n")
    expect_error(tmp_path, text, "datacenters[1].role",
                 "standby datacenter dc2 needs 'upstream: <dc>' (one of: dc1, dc2, dc3)")


def test_unknown_upstream(tmp_path: Path) -> None:
    text = edit("    upstream: dc1\n", "    upstream: dc9  # HERE\n")
    expect_error(tmp_path, text, "datacenters[1].upstream", "upstream 'dc9' is not a datacenter of this federation")


def test_upstream_to_itself(tmp_path: Path) -> None:
    text = edit("    upstream: dc1\n", "    upstream: dc2  # HERE\n")
    expect_error(tmp_path, text, "datacenters[1].upstream", "datacenter dc2 cannot be its own upstream")


def test_upstream_cycle_is_reported_once(tmp_path: Path) -> None:
    text = edit("    upstream: dc1\n", "    upstream: dc3  # HERE\n")
    problem = expect_error(tmp_path, text, "datacenters[1].upstream", "upstream cycle: dc2 -> dc3 -> dc2")
    with pytest.raises(TopologyError) as caught:
        load_topology(write(tmp_path, text))
    assert caught.value.problems == [problem]


@pytest.mark.parametrize("role", ["master", "replica", "''"])
def test_bad_role(tmp_path: Path, role: str) -> None:
    text = edit("    role: primary\n", f"    role: {role}  # HERE\n")
    expect_error(tmp_path, text, "datacenters[0].role", "Input should be 'primary' or 'standby'")


# --- secrets --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["{}", "{env: A, file: /b}", "{env: A, value: hunter2-not-shown}",
                                 "{file: /b, value: hunter2-not-shown, env: C}"])
def test_secret_ref_needs_exactly_one_source(tmp_path: Path, ref: str) -> None:
    text = edit("    password: {env: FEDCTL_TEST_SUPERUSER}", f"    password: {ref}  # HERE")
    problem = expect_error(tmp_path, text, "credentials.superuser.password",
                           "give exactly one of 'env', 'file' or 'value'")
    assert "hunter2" not in problem


@pytest.mark.parametrize("ref", ["{env: ''}", "{file: ''}"])
def test_secret_ref_with_an_empty_name(tmp_path: Path, ref: str) -> None:
    text = edit("    password: {env: FEDCTL_TEST_SUPERUSER}", f"    password: {ref}  # HERE")
    kind = ref[1:ref.index(":")]
    expect_error(tmp_path, text, f"credentials.superuser.password.{kind}", "at least 1 character")


def test_password_given_as_a_plain_string_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = edit("    password: {env: FEDCTL_TEST_SUPERUSER}", "    password: hunter2-not-shown  # HERE")
    problem = expect_error(tmp_path, text, "credentials.superuser.password", "valid dictionary")
    assert "hunter2" not in problem


def test_inline_secret_never_appears_in_errors_or_output(tmp_path: Path) -> None:
    secret = "hunter2-not-shown"
    inline = edit("    password: {env: FEDCTL_TEST_SUPERUSER}", f"    password: {{value: {secret}}}")
    broken = edit("    role: primary\n", "    role: boss\n", inline)
    for text in (inline, broken):
        path = write(tmp_path, text)
        result = CliRunner().invoke(cli, ["validate", str(path)])
        assert secret not in result.output
    topo = load_topology(write(tmp_path, inline))
    ref = topo.credentials.superuser.password
    assert secret not in repr(topo) and secret not in str(ref)
    assert secret not in topo.model_dump_json()
    assert ref.describe() == "inline value"
    assert ref.resolve() == secret


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, GOOD))
    ref = topo.credentials.superuser.password
    monkeypatch.setenv("FEDCTL_TEST_SUPERUSER", "s3cret env")
    assert ref.resolve() == "s3cret env"
    assert ref.describe() == "environment variable FEDCTL_TEST_SUPERUSER"


def test_secret_from_file_keeps_spaces_but_not_the_newline(tmp_path: Path) -> None:
    secret_file = write(tmp_path, " s3cret file \n", name="replication")
    text = edit("/etc/fedctl/secrets/replication", str(secret_file))
    ref = load_topology(write(tmp_path, text)).credentials.replication.password
    assert ref.resolve() == " s3cret file "
    assert ref.file_path == secret_file


def test_secret_file_path_expands_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write(tmp_path, "pw\n", name="rewind")
    monkeypatch.setenv("FEDCTL_TEST_SECRETS", str(tmp_path))
    text = edit("/etc/fedctl/secrets/rewind", "$FEDCTL_TEST_SECRETS/rewind")
    assert load_topology(write(tmp_path, text)).credentials.rewind.password.resolve() == "pw"


def test_secret_errors_name_the_reference_never_the_secret(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, GOOD))
    monkeypatch.delenv("FEDCTL_TEST_SUPERUSER", raising=False)
    with pytest.raises(BadInput, match="secret environment variable FEDCTL_TEST_SUPERUSER is not set"):
        topo.credentials.superuser.password.resolve()

    monkeypatch.setenv("FEDCTL_TEST_SUPERUSER", "")
    with pytest.raises(BadInput, match="secret environment variable FEDCTL_TEST_SUPERUSER is empty"):
        topo.credentials.superuser.password.resolve()

    with pytest.raises(BadInput, match="cannot read secret file /etc/fedctl/secrets/rewind"):
        topo.credentials.rewind.password.resolve()

    secret = "hunter2-\xff"
    write(tmp_path, secret.encode("latin-1"), name="latin1")
    ref = load_topology(write(tmp_path, edit("/etc/fedctl/secrets/rewind", str(tmp_path / "latin1"))))
    with pytest.raises(BadInput) as caught:
        ref.credentials.rewind.password.resolve()
    assert "is not UTF-8 text" in str(caught.value) and "hunter2" not in str(caught.value)


# --- synchronous replication and pgBackRest -----------------------------------------------------------------


@pytest.mark.parametrize(("value", "mode"), [
    ("on", SyncMode.ON), ("off", SyncMode.OFF), ("quorum", SyncMode.QUORUM),
    ("yes", SyncMode.ON), ("no", SyncMode.OFF), ("true", SyncMode.ON), ('"on"', SyncMode.ON),
])
def test_synchronous_accepts_yaml_booleans(tmp_path: Path, value: str, mode: SyncMode) -> None:
    text = edit("    role: primary\n", f"    role: primary\n    synchronous: {value}\n")
    assert load_topology(write(tmp_path, text)).datacenters[0].synchronous is mode


def test_bad_synchronous_value(tmp_path: Path) -> None:
    text = edit("    role: primary\n", "    role: primary\n    synchronous: always  # HERE\n")
    expect_error(tmp_path, text, "datacenters[0].synchronous", "Input should be 'off', 'on' or 'quorum'")


def test_synchronous_node_count_larger_than_the_standbys(tmp_path: Path) -> None:
    text = edit("    role: primary\n",
                "    role: primary\n    synchronous: quorum\n    synchronous_node_count: 2  # HERE\n")
    expect_error(tmp_path, text, "datacenters[0].synchronous_node_count",
                 "synchronous: quorum asks for 2 synchronous standby(s) but datacenter dc1 has only 1")


def test_synchronous_in_a_single_member_dc(tmp_path: Path) -> None:
    text = edit("    upstream: dc1\n", "    upstream: dc1\n    synchronous: on\n")
    text = edit("  - name: dc2\n", "  - name: dc2  # HERE\n", text)
    expect_error(tmp_path, text, "datacenters[1].synchronous_node_count", "has only 0 member(s)")


def test_synchronous_node_count_is_a_number(tmp_path: Path) -> None:
    text = edit("    role: primary\n", "    role: primary\n    synchronous_node_count: 0  # HERE\n")
    expect_error(tmp_path, text, "datacenters[0].synchronous_node_count", "greater than or equal to 1")


def test_missing_pgbackrest_section(tmp_path: Path) -> None:
    text = edit("pgbackrest:\n  repo_path: /var/lib/pgbackrest\n", "")
    text = edit("  - name: dc2\n", "  - name: dc2  # HERE\n", text)
    expect_error(tmp_path, text, "datacenters[1]",
                 "datacenter dc2 has no pgbackrest section and the federation has no default one")


def test_pgbackrest_per_dc_replaces_the_default(tmp_path: Path) -> None:
    text = edit("pgbackrest:\n  repo_path: /var/lib/pgbackrest\n", "")
    for dc in ("dc1", "dc2", "dc3"):
        text = edit(f"  - name: {dc}\n", f"  - name: {dc}\n    pgbackrest: {{repo_path: /b/{dc}}}\n", text)
    topo = load_topology(write(tmp_path, text))
    sections = [topo.pgbackrest_for(dc) for dc in topo.datacenters]
    assert [s.repo_path if s else None for s in sections] == ["/b/dc1", "/b/dc2", "/b/dc3"]


def test_pgbackrest_options_take_yaml_numbers_and_booleans(tmp_path: Path) -> None:
    text = edit("  repo_path: /var/lib/pgbackrest\n", "  repo_path: /var/lib/pgbackrest\n  options:\n"
                "    repo1-retention-full: 2\n    compress-level: 3\n    archive-async: true\n"
                "    log-level-file: info\n")
    section = load_topology(write(tmp_path, text)).pgbackrest
    assert section is not None
    options = section.options
    assert options == {"repo1-retention-full": "2", "compress-level": "3", "archive-async": "y",
                       "log-level-file": "info"}


def test_bad_pgbackrest_stanza(tmp_path: Path) -> None:
    text = edit("  repo_path: /var/lib/pgbackrest\n", "  repo_path: /var/lib/pgbackrest\n  stanza: 'a b'  # HERE\n")
    expect_error(tmp_path, text, "pgbackrest.stanza", "should match pattern")


def test_bad_fencing_policy(tmp_path: Path) -> None:
    text = edit("fencing: permissive\n", "fencing: off  # HERE\n")
    expect_error(tmp_path, text, "fencing", "Input should be 'permissive' or 'strict'")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = edit("        host: 10.1.0.12\n", "        host: 10.1.0.12\n        port: 0\n")
    text = edit("    role: standby\n    upstream: dc2\n", "    role: spare\n    upstream: dc2\n", text)
    with pytest.raises(TopologyError) as caught:
        load_topology(write(tmp_path, text))
    fields = [p.split(": ")[1] for p in caught.value.problems]
    assert fields == ["datacenters[0].members[1].port", "datacenters[2].role"]


def test_parsed_topology_is_frozen(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, GOOD))
    with pytest.raises(ValueError, match="frozen"):
        setattr(topo.datacenters[0], "name", "x")  # noqa: B010 (setattr keeps mypy from refusing the line)
    assert isinstance(topo, Topology)


def test_production_example_has_the_documented_shape() -> None:
    topo = load_topology(REPO / "topologies" / "production-example.yaml")
    assert [(dc.name, dc.role.value, dc.upstream) for dc in topo.datacenters] == [
        ("dc1", "primary", None), ("dc2", "standby", "dc1"), ("dc3", "standby", "dc2")]
    assert topo.fencing.value == "strict"
    dc1 = topo.initial_primary
    assert (dc1.synchronous, dc1.synchronous_node_count) == (SyncMode.QUORUM, 1)
    for dc in topo.datacenters:
        assert len(dc.members) == 3 and len(dc.dcs.hosts) == 3 and dc.fence_command
    refs = [c.password for c in (topo.credentials.superuser, topo.credentials.replication, topo.credentials.rewind)]
    assert all(ref.value is None for ref in refs)
    assert all(ref.env or (ref.file or "").startswith("/etc/fedctl/secrets/") for ref in refs)
