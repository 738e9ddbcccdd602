"""`fedctl agent run`: the per-DC agent as a foreground daemon (systemd Type=simple, logs on stderr)."""

from __future__ import annotations

import click

from federation.cli.app import cli, load, reports_errors, topology_option


@cli.group()
def agent() -> None:
    """The per-DC agent: follows upstream leader changes, samples LSNs, fences a replaced DC."""


@agent.command("run")
@topology_option
@click.option("--dc", "dc_name", metavar="DC", help="The datacenter this agent belongs to.")
@click.option("--backup-host", is_flag=True, help="Run on the repository host instead: every DC's scheduled "
              "jobs, with the agent API's /health, /metrics and /events (pgBackRest's repository-host layout).")
@click.option("--member", "member_name", metavar="NAME",
              help="The member this agent runs next to (default: the one whose address is on this host).")
@click.option("--listen", metavar="HOST:PORT",
              help="Address of the agent's HTTP API (default: the member's host, its Patroni API port + 100; with "
                   "--backup-host, pgbackrest.repo_host's address and agent_port).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between reconcile cycles.")
@click.option("--lease-ttl", type=click.IntRange(min=2), default=5, show_default=True,
              help="Seconds after which a dead active agent's lease expires and another agent takes over.")
@click.option("--allow", "allow", metavar="CIDR", multiple=True,
              help="Serve the API only to these networks (repeat it; e.g. HAProxy's and Prometheus's addresses). "
                   "Default: every address that reaches --listen.")
@click.option("--patroni-config", "patroni_config", metavar="PATH",
              help="The patroni.yml (or config directory) this member's Patroni runs with: the agent reports whether "
                   "its postgresql.pre_promote runs the federation's promotion gate (GET /gate, fedctl status).")
@click.option("--events-file", "events_file", metavar="PATH",
              help="The agent's events log, one JSON line per change it made (fedctl events, GET /events); kept "
                   "between 4 and 8 MiB with PATH.1. Default: events.jsonl in $STATE_DIRECTORY (systemd's "
                   "StateDirectory=) or else in the working directory.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING"]), default="INFO", show_default=True)
@reports_errors
def run_cmd(topology_path: str, dc_name: str | None, backup_host: bool, member_name: str | None, listen: str | None,
            interval: float, lease_ttl: int, allow: tuple[str, ...], patroni_config: str | None,
            events_file: str | None, log_level: str) -> None:
    """Run the agent in the foreground until SIGTERM or Ctrl-C (which release its lease)."""
    from agent.daemon import Agent
    from agent.logs import configure
    from agent.settings import agent_settings, default_events_file

    events_file = events_file or default_events_file()
    if backup_host:
        _run_backup_host(topology_path, dc_name, listen, allow, log_level, events_file)
        return
    if dc_name is None:
        raise click.UsageError("--dc DC is required (or --backup-host on the repository host)")
    settings = agent_settings(load(topology_path), dc_name, member_name, listen, interval=interval,
                              lease_ttl=lease_ttl, allow=allow, patroni_config=patroni_config,
                              events_file=events_file)
    configure(log_level, dc=settings.dc.name, member=settings.member.name)
    Agent(settings).run()


def _run_backup_host(topology_path: str, dc_name: str | None, listen: str | None, allow: tuple[str, ...],
                     log_level: str, events_file: str) -> None:
    from agent.backup_host import BackupHostAgent, jobs_on_repo_host
    from agent.backup_host_settings import backup_host_settings
    from agent.logs import configure

    if dc_name is not None:
        raise click.UsageError("--backup-host runs the jobs of every DC: leave --dc out")
    topo = load(topology_path)
    if not jobs_on_repo_host(topo):
        raise click.UsageError("the topology has no pgbackrest.repo_host: the DC agents run the jobs there")
    settings = backup_host_settings(topo, listen, allow=allow, events_file=events_file)
    configure(log_level, dc="-", member=settings.identity)
    BackupHostAgent(settings).run()
