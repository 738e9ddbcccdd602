"""Writes the hostile topology corpus next to this file: `python -m tests.unit.hostile_topologies.make_corpus`.

Each case is one file whose first line says what `fedctl validate` must do with it:
`# expect: reject FIELD: FRAGMENT` (exit 2, a line `FILE:LINE: FIELD: ...FRAGMENT...`, no traceback;
FIELD is `-` for a problem of the whole document) or `# expect: accept`. The files are committed; this
script only makes adding a case easy (it rewrites every file it knows).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent

BASE: dict[str, Any] = {
    "federation": "hostile",
    "credentials": {
        "superuser": {"username": "postgres", "password": {"env": "FEDCTL_HOSTILE_SUPERUSER"}},
        "replication": {"username": "replicator", "password": {"env": "FEDCTL_HOSTILE_REPLICATION"}},
        "rewind": {"username": "rewinder", "password": {"env": "FEDCTL_HOSTILE_REWIND"}},
    },
    "pgbackrest": {"stanza": "fed", "repo_path": "/var/lib/pgbackrest"},
    "datacenters": [
        {"name": "dc1", "role": "primary", "dcs": {"etcd3": {"hosts": ["10.1.0.5:2379"]}, "namespace": "/fed/"},
         "members": [{"name": "n1", "host": "10.1.0.11", "port": 5432, "api": "10.1.0.11:8008"},
                     {"name": "n2", "host": "10.1.0.12", "port": 5432, "api": "10.1.0.12:8008"}]},
        {"name": "dc2", "role": "standby", "upstream": "dc1",
         "dcs": {"etcd3": {"hosts": ["10.2.0.5:2379"]}, "namespace": "/fed/"},
         "members": [{"name": "n3", "host": "10.2.0.11", "port": 5432, "api": "10.2.0.11:8008"}]},
    ],
}
TLS = {"ca_file": "/etc/pgbackrest/tls/ca.crt", "cert_file": "/etc/pgbackrest/tls/{host}.crt",
       "key_file": "/etc/pgbackrest/tls/{host}.key"}

Edit = Callable[[dict[str, Any]], None]


def setter(path: str, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        node: Any = data
        *parents, last = path.split(".")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        if value is DELETE:
            del node[int(last) if last.isdigit() else last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return edit


DELETE = object()
M0 = "datacenters.0.members.0"
F0 = "datacenters[0].members[0]"

# (file name, edits, expectation)
CASES: list[tuple[str, list[Edit], str]] = [
    # names that become directories, keys and file contents
    ("federation-dotdot", [setter("federation", "..")], "reject federation: is not a federation name"),
    ("federation-dot", [setter("federation", ".")], "reject federation: is not a federation name"),
    ("federation-slash", [setter("federation", "a/b")], "reject federation: is not a federation name"),
    ("federation-newline", [setter("federation", "a\nb")], "reject federation: is not a federation name"),
    ("federation-empty", [setter("federation", "")], "reject federation: is not a federation name"),
    ("federation-too-long", [setter("federation", "x" * 64)], "reject federation: is not a federation name"),
    ("federation-embedded-dotdot", [setter("federation", "a..b")], "reject federation: without '..'"),
    ("lab-dir-root", [setter("lab.dir", "/")], "reject lab.dir: is a system directory"),
    ("lab-dir-etc", [setter("lab.dir", "/etc")], "reject lab.dir: is a system directory"),
    ("lab-dir-var-tmp", [setter("lab.dir", "/var/tmp")], "reject lab.dir: is a system directory"),
    ("lab-dir-relative", [setter("lab.dir", "lab/here")], "reject lab.dir: must be an absolute path"),
    ("lab-dir-dotdot", [setter("lab.dir", "/var/tmp/pg-federation/../../etc")], "reject lab.dir: no '.', '..'"),
    ("lab-dir-dot", [setter("lab.dir", "/var/tmp/pg-federation/./x")], "reject lab.dir: no '.', '..'"),
    ("lab-dir-newline", [setter("lab.dir", "/var/tmp/a\nb")], "reject lab.dir: control character"),
    ("lab-dir-own", [setter("lab.dir", "/var/tmp/pg-federation/hostile")], "accept"),
    ("lab-user-root", [setter("lab.user", "root")], "reject lab.user: PostgreSQL refuses root"),
    ("lab-user-space", [setter("lab.user", "post gres")], "reject lab.user: should match pattern"),
    ("username-newline-hba", [setter("credentials.superuser.username", "postgres\nhost all all 0.0.0.0/0 trust")],
     "reject credentials.superuser.username: should match pattern"),
    ("username-space", [setter("credentials.replication.username", "repl user")],
     "reject credentials.replication.username: should match pattern"),
    ("username-quote", [setter("credentials.rewind.username", "a'b")],
     "reject credentials.rewind.username: should match pattern"),
    ("username-empty", [setter("credentials.superuser.username", "")],
     "reject credentials.superuser.username: should match pattern"),
    ("username-number", [setter("credentials.superuser.username", 123)],
     "reject credentials.superuser.username: valid string"),
    ("password-plain-string", [setter("credentials.superuser.password", "hunter2")],
     "reject credentials.superuser.password: "),
    ("password-none-given", [setter("credentials.superuser.password", {})],
     "reject credentials.superuser.password: give exactly one"),
    ("password-two-given", [setter("credentials.superuser.password", {"env": "A", "file": "/b"})],
     "reject credentials.superuser.password: give exactly one"),
    ("password-file-newline", [setter("credentials.superuser.password", {"file": "/etc/fedctl/a\nb"})],
     "reject credentials.superuser.password.file: control character"),
    # addresses and ports
    ("api-ipv6-unbracketed", [setter(f"{M0}.api", "fd00::11:8008")], f"reject {F0}.api: needs brackets"),
    ("api-ipv4-bracketed", [setter(f"{M0}.api", "[10.1.0.11]:8008")], f"reject {F0}.api: IPv6 addresses only"),
    ("api-ipv6-bracketed", [setter(f"{M0}.api", "[fd00::11]:8008"), setter(f"{M0}.host", "fd00::11")], "accept"),
    ("api-port-overflows-agent", [setter(f"{M0}.api", "10.1.0.11:65500")], f"reject {F0}.api: beyond 65535"),
    ("api-port-zero", [setter(f"{M0}.api", "10.1.0.11:0")], f"reject {F0}.api.port: greater than or equal to 1"),
    ("api-port-huge", [setter(f"{M0}.api", "10.1.0.11:99999")], f"reject {F0}.api.port: less than or equal"),
    ("api-space", [setter(f"{M0}.api", "host name:8008")], f"reject {F0}.api.host: neither an IP address"),
    ("api-not-string", [setter(f"{M0}.api", 8008)], f"reject {F0}.api: expected 'host:port'"),
    ("host-bad-ipv4", [setter(f"{M0}.host", "10.1.0.300")], f"reject {F0}.host: not a valid IP address"),
    ("host-leading-dash", [setter(f"{M0}.host", "-bad")], f"reject {F0}.host: neither an IP address"),
    ("host-empty", [setter(f"{M0}.host", "")], f"reject {F0}.host: IP address or a DNS name"),
    ("host-newline", [setter(f"{M0}.host", "a\nb")], f"reject {F0}.host: neither an IP address"),
    ("port-boolean", [setter(f"{M0}.port", True)], f"reject {F0}.port: YAML boolean"),
    ("port-text", [setter(f"{M0}.port", "5432x")], f"reject {F0}.port: valid integer"),
    ("dcs-ipv6-bracketed", [setter("datacenters.0.dcs.etcd3.hosts", ["[fd00::5]:2379"])], "accept"),
    ("dcs-no-hosts", [setter("datacenters.0.dcs.etcd3.hosts", [])], "reject datacenters[0].dcs.etcd3.hosts: "),
    ("dcs-two-kinds", [setter("datacenters.0.dcs.zookeeper", {"hosts": ["10.1.0.6:2181"]})],
     "reject datacenters[0].dcs: exactly one DCS kind"),
    ("namespace-dotdot", [setter("datacenters.0.dcs.namespace", "/fed/../x/")],
     "reject datacenters[0].dcs.namespace: no '.' or '..' part"),
    ("namespace-newline", [setter("datacenters.0.dcs.namespace", "/fed\n/")],
     "reject datacenters[0].dcs.namespace: namespace must look like"),
    # names and the federation's shape
    ("dc-name-upper", [setter("datacenters.0.name", "DC1")], "reject datacenters[0].name: is not a valid name"),
    ("dc-name-dash", [setter("datacenters.1.name", "dc-2")], "reject datacenters[1].name: is not a valid name"),
    ("member-name-space", [setter(f"{M0}.name", "n 1")], f"reject {F0}.name: is not a valid name"),
    ("member-name-twice", [setter("datacenters.0.members.1.name", "n1")],
     "reject datacenters[0].members[1].name: is used twice"),
    ("dc-name-twice", [setter("datacenters.1.name", "dc1")], "reject datacenters[1].name: is used twice"),
    ("two-primaries", [setter("datacenters.1.role", "primary"), setter("datacenters.1.upstream", DELETE)],
     "reject datacenters: exactly one datacenter must have role: primary (found: dc1, dc2)"),
    ("no-primary", [setter("datacenters.0.role", "standby"), setter("datacenters.0.upstream", "dc2")],
     "reject datacenters: exactly one datacenter must have role: primary (found: none)"),
    ("upstream-unknown", [setter("datacenters.1.upstream", "dc9")], "reject datacenters[1].upstream: "),
    ("standby-without-upstream", [setter("datacenters.1.upstream", DELETE)],
     "reject datacenters[1].role: needs 'upstream: <dc>'"),
    ("scope-slash", [setter("datacenters.0.scope", "a/b")], "reject datacenters[0].scope: should match pattern"),
    ("sync-count-zero", [setter("datacenters.0.synchronous_node_count", 0)],
     "reject datacenters[0].synchronous_node_count: greater than or equal to 1"),
    ("sync-mode-unknown", [setter("datacenters.0.synchronous", "maybe")], "reject datacenters[0].synchronous: "),
    ("unknown-field", [setter("datacenters.0.colour", "blue")], "reject datacenters[0].colour: unknown field"),
    # fence_command: one program and its arguments, never a shell line
    ("fence-empty", [setter("datacenters.0.fence_command", "")],
     "reject datacenters[0].fence_command: an empty fence_command fences nothing"),
    ("fence-unbalanced-quote", [setter("datacenters.0.fence_command", "fence 'dc1")],
     "reject datacenters[0].fence_command: check its quotes"),
    ("fence-pipe", [setter("datacenters.0.fence_command", "fence dc1 | logger")],
     "reject datacenters[0].fence_command: uses shell syntax"),
    ("fence-semicolon", [setter("datacenters.0.fence_command", "fence dc1; rm -rf /")],
     "reject datacenters[0].fence_command: uses shell syntax"),
    ("fence-substitution", [setter("datacenters.0.fence_command", "fence $(whoami)")],
     "reject datacenters[0].fence_command: uses shell syntax"),
    ("fence-newline", [setter("datacenters.0.fence_command", "fence dc1\nreboot")],
     "reject datacenters[0].fence_command: control character"),
    ("fence-argv", [setter("datacenters.0.fence_command", "/usr/local/sbin/fence-dc dc1")], "accept"),
    ("fence-explicit-shell", [setter("datacenters.0.fence_command", "sh -c 'fence-dc dc1 | logger'")], "accept"),
    # pgBackRest: values end up in pgbackrest.conf lines
    ("pgbackrest-option-newline", [setter("pgbackrest.options", {"log-path": "/x\nrepo1-path=/evil"})],
     "reject pgbackrest.options.log-path: control character"),
    ("pgbackrest-option-key", [setter("pgbackrest.options", {"Repo1-Path": "/x"})],
     "reject pgbackrest.options.Repo1-Path: 'Repo1-Path' is not a valid key"),
    ("pgbackrest-option-key-equals", [setter("pgbackrest.options", {"a=b": "c"})],
     "reject pgbackrest.options.a=b: 'a=b' is not a valid key"),
    ("pgbackrest-owned-option", [setter("pgbackrest.repo_host", {"address": "10.3.0.9"}),
                                  setter("pgbackrest.tls", TLS), setter("pgbackrest.options", {"repo1-host": "x"})],
     "reject pgbackrest.options: rendered by fedctl"),
    ("pgbackrest-repo-relative", [setter("pgbackrest.repo_path", "repo")],
     "reject pgbackrest.repo_path: must be an absolute path"),
    ("pgbackrest-repo-newline", [setter("pgbackrest.repo_path", "/repo\nrepo2-path=/x")],
     "reject pgbackrest.repo_path: control character"),
    ("pgbackrest-repo-host-without-tls", [setter("pgbackrest.repo_host", {"address": "10.3.0.9"})],
     "reject pgbackrest: a repo_host needs a tls section"),
    ("pgbackrest-tls-without-repo-host", [setter("pgbackrest.tls", TLS)],
     "reject pgbackrest: tls is used only with a repo_host"),
    ("pgbackrest-tls-relative", [setter("pgbackrest.repo_host", {"address": "10.3.0.9"}),
                                  setter("pgbackrest.tls", {**TLS, "ca_file": "ca.crt"})],
     "reject pgbackrest.tls.ca_file: must be an absolute path"),
    ("pgbackrest-repo-user-newline", [setter("pgbackrest.repo_host", {"address": "10.3.0.9", "user": "pg\nx"}),
                                       setter("pgbackrest.tls", TLS)],
     "reject pgbackrest.repo_host.user: should match pattern"),
    ("pgbackrest-stanza-space", [setter("pgbackrest.stanza", "a b")], "reject pgbackrest.stanza: should match"),
    ("pgbackrest-repo-host", [setter("pgbackrest.repo_host", {"address": "10.3.0.9"}), setter("pgbackrest.tls", TLS)],
     "accept"),
]

# Documents that YAML itself, or its shape, makes hostile: written as text.
RAW: list[tuple[str, str, str]] = [
    ("yaml-alias-bomb", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True)),
     "reject -: expands to more than"),
    ("yaml-recursive-anchor", "federation: &x\n  again: *x\n", "reject -: refers to itself"),
    ("yaml-deep-nesting", "federation: " + "[" * 60 + "]" * 60 + "\n", "reject -: nested more than"),
    ("yaml-duplicate-key", None, "reject federation: duplicate key"),  # type: ignore[list-item]
    ("yaml-bare-on-key", None, "reject datacenters[0].members[0].on: does not read this key as text"),  # type: ignore[list-item]
    ("yaml-tab-indent", "federation: x\n\tdatacenters: []\n", "reject -: not valid YAML"),
    ("yaml-a-list", "- federation: x\n", "reject -: must hold a mapping"),
    ("yaml-empty", "", "reject -: must hold a mapping"),
    ("yaml-unclosed-quote", "federation: 'x\n", "reject -: not valid YAML"),
]


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=False, width=1000)


def raw_text(name: str, text: str | None) -> str:
    if name == "yaml-duplicate-key":
        return "federation: a\n" + dump(BASE)
    if name == "yaml-bare-on-key":
        return dump(BASE).replace("  - name: n1\n", "  - name: n1\n    on: 1\n", 1)
    assert text is not None
    return text


def main() -> None:
    for old in HERE.glob("*.yaml"):
        old.unlink()
    for name, edits, expect in CASES:
        data = copy.deepcopy(BASE)
        for edit in edits:
            edit(data)
        (HERE / f"{name}.yaml").write_text(f"# expect: {expect}\n" + dump(data))
    for name, text, expect in RAW:
        (HERE / f"{name}.yaml").write_text(f"# expect: {expect}\n" + raw_text(name, text))
    print(f"{len(CASES) + len(RAW)} cases in {HERE}")


if __name__ == "__main__":
    main()
