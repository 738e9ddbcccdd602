"""`fedctl agent run`: the per-DC agent as a foreground daemon (systemd Type=simple, logs on stderr)."""

from __future__ import annotations

import click

from federation.cli.app import cli, load, reports_errors, topology_option


@cli.group()
def agent() -> None:
    """The per-DC agent: follows upstream leader changes, samples LSNs, fences a replaced DC."""


@agent.command("run")
@topology_option
@click.option("--dc", "dc_name", required=True, metavar="DC", help="The datacenter this agent belongs to.")
@click.option("--member", "member_name", metavar="NAME",
              help="The member this agent runs next to (default: the one whose address is on this host).")
@click.option("--listen", metavar="HOST:PORT",
              help="Address of the agent's HTTP API (default: the member's host, its Patroni API port + 100).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between reconcile cycles.")
@click.option("--lease-ttl", type=click.IntRange(min=2), default=5, show_default=True,
              help="Seconds after which a dead active agent's lease expires and another agent takes over.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING"]), default="INFO", show_default=True)
@reports_errors
def run_cmd(topology_path: str, dc_name: str, member_name: str | None, listen: str | None, interval: float,
            lease_ttl: int, log_level: str) -> None:
    """Run the agent in the foreground until SIGTERM or Ctrl-C (which release its lease)."""
    from agent.daemon import Agent
    from agent.logs import configure
    from agent.settings import agent_settings

    settings = agent_settings(load(topology_path), dc_name, member_name, listen, interval=interval,
                              lease_ttl=lease_ttl)
    configure(log_level, dc=settings.dc.name, member=settings.member.name)
    Agent(settings).run()
