"""fedctl command line. Each module registers its commands on the shared group (federation.cli.app), which
imports a module only when one of its commands runs."""

from federation.cli.app import cli, register_all_commands

__all__ = ["cli", "main", "register_all_commands"]


def main() -> None:
    cli()
