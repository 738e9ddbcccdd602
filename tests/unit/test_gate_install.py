"""Whether a member's patroni.yml runs the federation's promotion gate for its DC (federation.gate_install)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation import gate_install
from federation.gate_command import parse_pre_promote
from federation.gate_install import (
    GateCheck,
    GateState,
    check_patroni_config,
    read_patroni_config,
    suggested_line,
)

LINE = suggested_line("/opt/fedctl/bin/fedctl", "/etc/fedctl/topology.yaml", "dc2")


def patroni_yml(tmp_path: Path, pre_promote: Any = None, *, name: str = "patroni.yml", **postgresql: Any) -> str:
    section: dict[str, Any] = {"listen": "127.0.2.11:5432", **postgresql}
    if pre_promote is not None:
        section["pre_promote"] = pre_promote
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"scope": "dc2", "name": "n3", "postgresql": section}))
    return str(path)


def check(tmp_path: Path, pre_promote: Any, dc: str = "dc2") -> GateCheck:
    return check_patroni_config(patroni_yml(tmp_path, pre_promote), dc, LINE)


@pytest.mark.parametrize("command", [
    "fedctl gate pre-promote -t /etc/fedctl/topology.yaml --dc dc2",
    "/opt/pg-federation/.venv/bin/fedctl gate pre-promote -t /etc/fedctl/topology.yaml --dc dc2",
    "fedctl gate pre-promote --dc dc2 --topology /etc/fedctl/topology.yaml",
    "fedctl gate pre-promote --topology=/etc/fedctl/topology.yaml --dc=dc2",
    "fedctl gate pre-promote -t/etc/fedctl/topology.yaml --dc dc2",
    "'/opt/my venv/bin/fedctl' gate pre-promote -t '/etc/fed ctl/topology.yaml' --dc dc2",
    '"/opt/fedctl/bin/fedctl" gate pre-promote -t "/etc/fedctl/topology.yaml" --dc "dc2"',
    "python -m federation gate pre-promote -t /etc/fedctl/topology.yaml --dc dc2",
    "/usr/bin/python3.11 -u -m federation gate pre-promote -t /etc/fedctl/topology.yaml --dc dc2",
    "python3 -m federation.cli gate pre-promote -t /etc/fedctl/topology.yaml --dc dc2",
    "env FEDCTL_X=1 fedctl gate pre-promote -t /etc/fedctl/topology.yaml --dc dc2",
    "/bin/sh -c 'exec fedctl gate pre-promote -t /etc/fedctl/topology.yaml --dc dc2'",
])
def test_the_gate_for_this_dc_in_any_of_its_forms_is_installed(tmp_path: Path, command: str) -> None:
    verdict = check(tmp_path, command)
    assert verdict.state is GateState.INSTALLED, verdict.reason
    assert verdict.pre_promote == command and verdict.line is None
    assert "dc2" in verdict.reason


@pytest.mark.parametrize(("command", "words"), [
    ("/usr/local/bin/my-fence.sh", "my-fence.sh"),
    ("fedctl gate render -t /etc/fedctl/topology.yaml --dc dc2", "not `fedctl gate pre-promote`"),
    ("fedctl status", "not `fedctl gate pre-promote`"),
    ("python3 -m http.server", "not the federation's gate"),
    ("fedctl gate pre-promote -t /etc/fedctl/topology.yaml", "without --dc"),
    ("fedctl gate pre-promote --dc dc2", "without -t FILE"),
    ("fedctl gate pre-promote -t /etc/fedctl/topology.yaml --dc", "no value"),
    ("fedctl gate pre-promote -t '/etc/fedctl/topology.yaml --dc dc2", "cannot be split"),
    ("fedctl-gate", "exactly one GATE.json"),
])
def test_no_gate_or_an_unusable_one_is_missing_and_says_why(tmp_path: Path, command: str, words: str) -> None:
    verdict = check(tmp_path, command)
    assert verdict.state is GateState.MISSING
    assert words in verdict.reason and verdict.config_path in verdict.reason
    assert verdict.line == LINE


def test_no_pre_promote_at_all_is_missing_and_gives_the_line_to_add(tmp_path: Path) -> None:
    verdict = check(tmp_path, None)
    assert verdict.state is GateState.MISSING and "has no postgresql.pre_promote" in verdict.reason
    assert verdict.line == LINE
    # The line is what to paste: YAML that gives back a command the gate check accepts.
    command = yaml.safe_load(LINE)["pre_promote"]
    assert shlex.split(command)[0] == "/opt/fedctl/bin/fedctl"
    assert parse_pre_promote(command).dc == "dc2"


def test_a_non_string_pre_promote_is_missing(tmp_path: Path) -> None:
    verdict = check(tmp_path, ["fedctl", "gate"])
    assert verdict.state is GateState.MISSING and "list" in verdict.reason


@pytest.mark.parametrize("command", ["fedctl gate pre-promote -t /etc/fedctl/topology.yaml --dc dc1",
                                     "python -m federation gate pre-promote --dc=dc1 -t x.yaml"])
def test_the_gate_of_another_dc_is_wrong_dc(tmp_path: Path, command: str) -> None:
    verdict = check(tmp_path, command)
    assert verdict.state is GateState.WRONG_DC
    assert "dc1" in verdict.reason and "dc2" in verdict.reason and verdict.line == LINE


def test_fedctl_gate_reads_the_dc_from_its_gate_file(tmp_path: Path) -> None:
    gate_file = tmp_path / "gate.json"
    gate_file.write_text(json.dumps({"federation": "f", "dc": "dc2"}))
    for form in ("/venv/bin/fedctl-gate {}", "python3 -m federation.gate_core {}"):
        assert check(tmp_path, form.format(gate_file)).state is GateState.INSTALLED
    gate_file.write_text(json.dumps({"federation": "f", "dc": "dc1"}))
    assert check(tmp_path, f"fedctl-gate {gate_file}").state is GateState.WRONG_DC


@pytest.mark.parametrize(("content", "words"), [(None, "No such file"), ("{not json", "cannot read the gate file"),
                                                ('{"federation": "f"}', "names no DC")])
def test_a_gate_file_that_cannot_be_read_is_unknown(tmp_path: Path, content: str | None, words: str) -> None:
    gate_file = tmp_path / "gate.json"
    if content is not None:
        gate_file.write_text(content)
    verdict = check(tmp_path, f"fedctl-gate {gate_file}")
    assert verdict.state is GateState.UNKNOWN and words in verdict.reason


def test_a_relative_gate_file_is_unknown(tmp_path: Path) -> None:
    verdict = check(tmp_path, "fedctl-gate gate.json")
    assert verdict.state is GateState.UNKNOWN and "relative path" in verdict.reason


def test_no_path_given_is_unknown_and_says_how_to_tell_the_agent() -> None:
    verdict = check_patroni_config(None, "dc2", LINE)
    assert verdict.state is GateState.UNKNOWN and "--patroni-config" in verdict.reason


def test_a_missing_file_is_unknown(tmp_path: Path) -> None:
    verdict = check_patroni_config(str(tmp_path / "nope.yml"), "dc2", LINE)
    assert verdict.state is GateState.UNKNOWN and "does not exist" in verdict.reason


def test_an_unreadable_file_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = patroni_yml(tmp_path, "fedctl gate pre-promote -t t.yaml --dc dc2")
    os.chmod(path, 0)
    if os.geteuid() == 0:  # root reads any file: the agent's user would not, so refuse as the kernel would
        def refused(*_args: object, **_kwargs: object) -> None:
            raise PermissionError(13, "Permission denied", str(path))
        monkeypatch.setattr(gate_install, "open", refused, raising=False)
    verdict = check_patroni_config(path, "dc2", LINE)
    assert verdict.state is GateState.UNKNOWN and "cannot read" in verdict.reason


@pytest.mark.parametrize(("text", "words"), [("postgresql: [unclosed\n", "not valid YAML at line"),
                                             ("- just\n- a list\n", "does not hold a mapping"),
                                             ("", "does not hold a mapping"),
                                             ("postgresql:\n  pre_promote: a\n\tbad: tab\n", "not valid YAML")])
def test_yaml_errors_are_unknown_with_where(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "patroni.yml"
    path.write_text(text)
    verdict = check_patroni_config(str(path), "dc2", LINE)
    assert verdict.state is GateState.UNKNOWN and words in verdict.reason and str(path) in verdict.reason


def test_a_config_directory_is_merged_as_patroni_does(tmp_path: Path) -> None:
    (tmp_path / "00-base.yml").write_text(yaml.safe_dump({"postgresql": {
        "listen": "x", "pre_promote": "fedctl gate pre-promote -t t.yaml --dc dc2"}}))
    (tmp_path / "notes.txt").write_text("postgresql: {pre_promote: null}")
    assert check_patroni_config(str(tmp_path), "dc2", LINE).state is GateState.INSTALLED
    (tmp_path / "50-override.yaml").write_text(yaml.safe_dump({"postgresql": {"pre_promote": None}}))
    verdict = check_patroni_config(str(tmp_path), "dc2", LINE)
    assert verdict.state is GateState.MISSING
    assert read_patroni_config(str(tmp_path))["postgresql"] == {"listen": "x"}


def test_an_empty_directory_is_unknown(tmp_path: Path) -> None:
    verdict = check_patroni_config(str(tmp_path), "dc2", LINE)
    assert verdict.state is GateState.UNKNOWN and "without *.yml" in verdict.reason


def test_json_round_trip_and_lenient_reading(tmp_path: Path) -> None:
    verdict = check(tmp_path, None)
    assert GateCheck.from_json_dict(json.loads(json.dumps(verdict.to_json_dict()))) == verdict
    assert GateCheck.from_json_dict({"state": "half"}).state is GateState.UNKNOWN
    assert GateCheck.from_json_dict(None).state is GateState.UNKNOWN
