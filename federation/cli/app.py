"""The click group and the options every command shares. Commands live in sibling modules, imported only when
run (or listed by `fedctl --help`): `fedctl status` then never loads what switchover-dc or the lab need."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from federation.errors import EXIT_BAD_INPUT, BadInput, FedError
from federation.topology import Topology, load_topology

F = TypeVar("F", bound=Callable[..., Any])

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOPOLOGY = PROJECT_ROOT / "topologies" / "lab-two-dc.yaml"


def default_topology_path() -> str:
    return os.environ.get("FEDCTL_TOPOLOGY") or str(DEFAULT_TOPOLOGY)


# The module of federation.cli that defines each top-level command (tests/unit/test_cli_lazy.py keeps it complete).
COMMAND_MODULES = {
    "adopt": "adopt", "agent": "agent", "backup": "backup", "backup-config": "backup", "backups": "backup",
    "check-archive": "backup", "entrypoint": "entrypoint", "events": "events", "gate": "gate",
    "history": "operations",
    "jobs": "jobs", "lab": "lab", "operation": "pending", "promote-dc": "operations", "rebuild": "backup",
    "rejoin-dc": "operations", "status": "status", "store": "store", "switchover-dc": "operations",
    "validate": "validate", "verify-restore": "backup",
}


class LazyGroup(click.Group):
    """A group that imports a command's module the first time the command is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(f"federation.cli.{COMMAND_MODULES[cmd_name]}")
        return super().get_command(ctx, cmd_name)


def register_all_commands() -> None:
    """Import every command module (what `fedctl --help` does): for callers that walk `cli.commands`."""
    for module in sorted(set(COMMAND_MODULES.values())):
        importlib.import_module(f"federation.cli.{module}")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli() -> None:
    """fedctl: federate Patroni clusters across datacenters."""


topology_option = click.option(
    "-t", "--topology", "topology_path", default=default_topology_path, show_default="$FEDCTL_TOPOLOGY or "
    "topologies/lab-two-dc.yaml", metavar="FILE", help="Topology YAML file.")
format_option = click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True,
    help="Output format.")
yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
dry_run_option = click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")


def load(topology_path: str, *, network: bool = True) -> Topology:
    """The topology; with `network` (every command that talks to the federation), refuse a namespace lab's
    topology while that lab is down: its addresses exist only inside the lab's namespaces, and traffic to
    them would otherwise leave this machine through its default route."""
    topo = load_topology(topology_path)
    if network and topo.lab.network == "namespaces":
        from federation.lab_network import lab_network_is_up

        if not lab_network_is_up(topo):
            raise BadInput(f"{topology_path} describes a namespace lab that is not up: its addresses exist only "
                           "inside the lab's network namespaces", hint=f"run `fedctl lab up -t {topology_path}`")
    return topo


def reports_errors(func: F) -> F:
    """Turn FedError into a message on stderr and its exit code; never a traceback for user errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FedError as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:
            # A PostgreSQL error no step translated (a member shutting down under us, say): say it plainly.
            if not type(exc).__module__.startswith("psycopg"):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            click.secho(f"Error: PostgreSQL: {first}\n  hint: nothing after the failing step ran; "
                        "`fedctl status` shows the members and `fedctl operation show` any operation left "
                        "pending (rerun the command to resume it)", fg="red", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.secho("Interrupted.", fg="red", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def bad_usage(message: str) -> None:
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(EXIT_BAD_INPUT)
