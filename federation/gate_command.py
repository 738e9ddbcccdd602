"""Does a `postgresql.pre_promote` command run the federation's promotion gate, and for which DC? Pure.

Patroni runs pre_promote as `shlex.split(command)`, without a shell, so the command is read the same way.
The gate's forms (any path to the program):

    fedctl gate pre-promote -t FILE --dc DC       (also --topology FILE, --topology=FILE, -tFILE, --dc=DC)
    python3 -m federation gate pre-promote -t FILE --dc DC       (any python, also -m federation.cli)
    fedctl-gate GATE.json                         (the DC is GATE.json's "dc", see `fedctl gate render`)
    python3 -m federation.gate_core GATE.json

each may stand behind `env [-i] [NAME=VALUE ...]`, or be the one command of `sh -c '[exec] ...'`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

PYTHON = re.compile(r"python(\d+(\.\d+)?)?")
SHELLS = frozenset({"sh", "bash", "dash"})
GATE_MODULES = frozenset({"federation", "federation.cli"})


@dataclass(frozen=True)
class GateCommand:
    """What a pre_promote command is. `gate` False: it is not the federation's gate at all, and `problem`
    says what it is instead. Otherwise `dc` (pre-promote form) or `gate_file` (fedctl-gate form) tells
    which DC it guards; `problem` names what makes it unusable (no --dc, no topology)."""

    gate: bool
    dc: str | None = None
    topology: str | None = None
    gate_file: str | None = None
    problem: str | None = None


def parse_pre_promote(command: str) -> GateCommand:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return GateCommand(False, problem=f"cannot be split into arguments ({exc}): Patroni could not run it")
    return _parse_argv(argv, command)


def _parse_argv(argv: Sequence[str], command: str) -> GateCommand:
    argv = _without_env(argv)
    if not argv:
        return GateCommand(False, problem=f"`{command}` runs no program")
    program = PurePosixPath(argv[0]).name
    if program in SHELLS and len(argv) >= 3 and argv[1] == "-c":
        inner = argv[2].strip()
        return parse_pre_promote(inner.removeprefix("exec ") if inner.startswith("exec ") else inner)
    rest = list(argv[1:])
    if PYTHON.fullmatch(program):
        module, rest = _module_of(rest)
        if module in GATE_MODULES:
            return _pre_promote_form(rest, command)
        if module == "federation.gate_core":
            return _gate_file_form(rest, command)
    elif program == "fedctl":
        return _pre_promote_form(rest, command)
    elif program == "fedctl-gate":
        return _gate_file_form(rest, command)
    return GateCommand(False, problem=f"runs `{command}`, not the federation's gate")


def _without_env(argv: Sequence[str]) -> list[str]:
    """`env -i A=1 B=2 prog ...` -> `prog ...`."""
    args = list(argv)
    if args and PurePosixPath(args[0]).name == "env":
        args = args[1:]
        while args and (args[0] in ("-i", "-", "--ignore-environment") or ("=" in args[0]
                                                                           and not args[0].startswith("-"))):
            args = args[1:]
    return args


def _module_of(args: list[str]) -> tuple[str | None, list[str]]:
    """`-u -m federation gate ...` -> ("federation", ["gate", ...]); interpreter flags before -m are skipped."""
    while args and args[0].startswith("-") and args[0] != "-m" and not args[0].startswith("-m"):
        args = args[1:]
    if not args:
        return None, []
    if args[0] == "-m" and len(args) > 1:
        return args[1], args[2:]
    if args[0].startswith("-m") and len(args[0]) > 2:
        return args[0][2:], args[1:]
    return None, args


def _pre_promote_form(args: list[str], command: str) -> GateCommand:
    if args[:2] != ["gate", "pre-promote"]:
        return GateCommand(False, problem=f"runs `{command}`, not `fedctl gate pre-promote`")
    dc = topology = None
    options = args[2:]
    i = 0
    while i < len(options):
        arg = options[i]
        value = options[i + 1] if i + 1 < len(options) else None
        if arg in ("--dc", "-t", "--topology"):
            if value is None:
                return GateCommand(True, problem=f"`{command}` gives {arg} no value: the gate exits with a usage "
                                                 "error and Patroni never promotes")
            dc, topology = (value, topology) if arg == "--dc" else (dc, value)
            i += 2
            continue
        if arg.startswith("--dc="):
            dc = arg.removeprefix("--dc=")
        elif arg.startswith("--topology="):
            topology = arg.removeprefix("--topology=")
        elif arg.startswith("-t") and len(arg) > 2:
            topology = arg[2:]
        i += 1
    if dc is None:
        return GateCommand(True, topology=topology, problem="runs the gate without --dc: it exits with a usage "
                                                            "error and Patroni never promotes")
    if topology is None:
        return GateCommand(True, dc=dc, problem="runs the gate without -t FILE: it reads $FEDCTL_TOPOLOGY or a "
                                                "path relative to Patroni's working directory")
    return GateCommand(True, dc=dc, topology=topology)


def _gate_file_form(args: list[str], command: str) -> GateCommand:
    if len(args) != 1:
        return GateCommand(True, problem=f"`{command}` does not give fedctl-gate exactly one GATE.json: it refuses "
                                         "every promotion")
    return GateCommand(True, gate_file=args[0])
