"""Is the federation's promotion gate installed in a member's local Patroni configuration?

`postgresql.pre_promote` lives in each member's own patroni.yml, which fedctl cannot change remotely, so the
member's agent reads it and says: installed (it runs the gate for this DC), missing (no pre_promote, or
another command), wrong_dc (the gate of another DC), or unknown (no file given, or it cannot be read; the
reason says which). The config is read as Patroni reads it: one YAML file, or every *.yml/*.yaml of a
directory in name order, later files overriding earlier ones (a null value removes a key).

`GateCheck.to_json_dict()` is what the agent serves at GET /gate and `fedctl status` shows per member.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

from federation.gate_command import parse_pre_promote


class GateState(StrEnum):
    INSTALLED = "installed"
    MISSING = "missing"
    WRONG_DC = "wrong_dc"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class GateCheck:
    """One member's verdict. `line` is the pre_promote setting to put into its patroni.yml (when not installed)."""

    state: GateState
    reason: str
    config_path: str | None = None
    pre_promote: str | None = None
    line: str | None = None

    @property
    def installed(self) -> bool:
        return self.state is GateState.INSTALLED

    def to_json_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "reason": self.reason, "config_path": self.config_path,
                "pre_promote": self.pre_promote, "line": self.line}

    @classmethod
    def from_json_dict(cls, data: Any) -> GateCheck:
        """Lenient, as an agent's answer may come from another version: anything unexpected is unknown."""
        if not isinstance(data, dict):
            return cls(GateState.UNKNOWN, "the agent's answer has no gate verdict")
        try:
            state = GateState(str(data.get("state")))
        except ValueError:
            return cls(GateState.UNKNOWN, f"the agent answered an unknown gate state {data.get('state')!r}")

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        return cls(state, text("reason") or "", text("config_path"), text("pre_promote"), text("line"))


class ConfigUnreadable(Exception):
    """The Patroni config could not be read or parsed; the message says why."""


def suggested_line(fedctl: str, topology: str, dc: str) -> str:
    """`pre_promote: /opt/fedctl/bin/fedctl gate pre-promote -t /etc/fedctl/topology.yaml --dc dc2`, YAML-quoted
    only where YAML needs it."""
    import shlex

    command = shlex.join([fedctl, "gate", "pre-promote", "-t", topology, "--dc", dc])
    return yaml.safe_dump({"pre_promote": command}, width=10_000, default_flow_style=False).strip()


def check_patroni_config(path: str | None, dc: str, line: str,
                         read_gate_file: Callable[[str], Any] | None = None) -> GateCheck:
    """The verdict for a member of `dc` whose Patroni reads `path` (None: the agent was not told)."""
    if path is None:
        return GateCheck(GateState.UNKNOWN, "the agent was not given its Patroni configuration: start it with "
                                            "--patroni-config PATH (the patroni.yml Patroni runs with)", line=line)
    try:
        config = read_patroni_config(path)
    except ConfigUnreadable as exc:
        return GateCheck(GateState.UNKNOWN, str(exc), path, line=line)
    section = config.get("postgresql")
    command = section.get("pre_promote") if isinstance(section, dict) else None
    return decide(command, dc, path, line, read_gate_file or _read_json)


def decide(command: Any, dc: str, path: str, line: str, read_gate_file: Callable[[str], Any]) -> GateCheck:
    """The verdict for one pre_promote value (None when absent). Pure, given `read_gate_file`."""
    if command is None or command == "":
        return GateCheck(GateState.MISSING, f"{path} has no postgresql.pre_promote", path, line=line)
    if not isinstance(command, str):
        return GateCheck(GateState.MISSING, f"postgresql.pre_promote in {path} is a {type(command).__name__}, not "
                                            "a command", path, line=line)
    parsed = parse_pre_promote(command)

    def verdict(state: GateState, reason: str) -> GateCheck:
        return GateCheck(state, reason, path, command, None if state is GateState.INSTALLED else line)

    if not parsed.gate:
        return verdict(GateState.MISSING, f"postgresql.pre_promote in {path} {parsed.problem}")
    if parsed.problem is not None:
        return verdict(GateState.MISSING, f"postgresql.pre_promote in {path} {parsed.problem}")
    gate_dc = parsed.dc
    if parsed.gate_file is not None:
        if not os.path.isabs(parsed.gate_file):
            return verdict(GateState.UNKNOWN, f"postgresql.pre_promote in {path} names the gate file "
                                              f"{parsed.gate_file} by a relative path: it depends on Patroni's "
                                              "working directory; give an absolute path")
        try:
            rendered = read_gate_file(parsed.gate_file)
        except (OSError, ValueError) as exc:
            return verdict(GateState.UNKNOWN, f"cannot read the gate file {parsed.gate_file} that pre_promote "
                                              f"runs: {getattr(exc, 'strerror', None) or exc}")
        gate_dc = rendered.get("dc") if isinstance(rendered, dict) else None
        if not isinstance(gate_dc, str):
            return verdict(GateState.UNKNOWN, f"the gate file {parsed.gate_file} names no DC: render it with "
                                              f"`fedctl gate render --dc {dc}`")
    if gate_dc != dc:
        return verdict(GateState.WRONG_DC, f"postgresql.pre_promote in {path} runs the gate of {gate_dc}, but this "
                                           f"member is in {dc}: it would allow promotions the record gives {gate_dc}")
    return verdict(GateState.INSTALLED, f"postgresql.pre_promote in {path} runs the gate for {dc}")


def read_patroni_config(path: str) -> dict[str, Any]:
    """Patroni's local configuration as Patroni merges it; ConfigUnreadable says why it cannot be read."""
    if os.path.isdir(path):
        try:
            names = sorted(n for n in os.listdir(path) if n.endswith((".yml", ".yaml"))
                           and os.path.isfile(os.path.join(path, n)))
        except OSError as exc:
            raise ConfigUnreadable(f"cannot list {path}: {exc.strerror or exc}") from None
        if not names:
            raise ConfigUnreadable(f"{path} is a directory without *.yml or *.yaml files")
        files = [os.path.join(path, n) for n in names]
    else:
        files = [path]
    merged: dict[str, Any] = {}
    for name in files:
        _patch(merged, _load_yaml(name))
    return merged


def _load_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigUnreadable(f"{path} does not exist") from None
    except OSError as exc:
        raise ConfigUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigUnreadable(f"{path} is not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigUnreadable(f"{path} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigUnreadable(f"{path} does not hold a mapping, so Patroni would not start with it")
    return data


def _patch(config: dict[str, Any], data: dict[str, Any]) -> None:
    """Patroni's patch_config: nested mappings merge, a null removes the key, anything else replaces."""
    for key, value in data.items():
        if value is None:
            config.pop(key, None)
        elif isinstance(value, dict) and isinstance(config.get(key), dict):
            _patch(config[key], value)
        else:
            config[key] = value


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
