"""`fedctl entrypoint haproxy|libpq|pgbouncer`: print client configuration that follows the primary DC."""

from __future__ import annotations

import click

from federation.cli.app import cli, load, reports_errors, topology_option


@cli.group()
def entrypoint() -> None:
    """Print configuration for clients to reach the primary DC (and replicas) whichever DC holds it."""


@entrypoint.command("haproxy")
@topology_option
@click.option("--dc", "local_dc", default=None, metavar="DC", help="Read-only backend: only this DC's replicas.")
@click.option("--read-write-bind", default=None, metavar="HOST:PORT",
              help="Default: 127.0.0.1:P, P derived from the federation name (docs/entrypoints.md).")
@click.option("--read-only-bind", default=None, metavar="HOST:PORT", help="Default: 127.0.0.1:P+1.")
@click.option("--max-replica-lag", default=None, metavar="SIZE", help="Patroni /replica?lag=SIZE, e.g. 16MB.")
@reports_errors
def haproxy(topology_path: str, local_dc: str | None, read_write_bind: str | None, read_only_bind: str | None,
            max_replica_lag: str | None) -> None:
    """An haproxy.cfg: read-write checked on each agent's GET /primary, read-only on Patroni's /replica."""
    from federation.entrypoints import default_binds, render_haproxy

    topo = load(topology_path)
    binds = default_binds(topo)
    click.echo(render_haproxy(topo, read_write_bind=read_write_bind or binds.read_write,
                              read_only_bind=read_only_bind or binds.read_only, local_dc=local_dc,
                              replica_lag=max_replica_lag), nl=False)


@entrypoint.command("libpq")
@topology_option
@click.option("--dbname", default="postgres", show_default=True)
@reports_errors
def libpq(topology_path: str, dbname: str) -> None:
    """A multi-host connection URI over every member with target_session_attrs=read-write.

    It holds no password: export PGPASSWORD or use a PGPASSFILE with one line per host."""
    from federation.entrypoints import render_libpq

    click.echo(render_libpq(load(topology_path), dbname))


@entrypoint.command("pgbouncer")
@topology_option
@click.option("--dbname", default="*", show_default=True, help="The [databases] entry name.")
@reports_errors
def pgbouncer(topology_path: str, dbname: str) -> None:
    """A PgBouncer [databases] section pointing at the current primary DC's leader (re-render after failover)."""
    from federation.entrypoints import render_pgbouncer
    from federation.operations.common import look_at, require_leader
    from federation.state import current_state

    topo = load(topology_path)
    record, _copies = current_state(topo)
    leader = require_leader(look_at(topo.dc(record.primary_dc)), "cannot point PgBouncer at it")
    click.echo(render_pgbouncer(topo, record, leader, dbname), nl=False)


@entrypoint.command("follow")
@topology_option
@click.option("--pgbouncer-databases", metavar="FILE",
              help="The [databases] file PgBouncer %include-s; rewritten when the primary DC's leader changes.")
@click.option("--pgbouncer-admin", metavar="CONNINFO",
              help="PgBouncer's admin console, e.g. 'host=127.0.0.1 port=6432 user=postgres' (RELOAD is sent "
                   "there); without a password in it, the topology's superuser password is used.")
@click.option("--dbname", "dbnames", multiple=True, default=("*",), show_default=True,
              help="Database entries to write (repeat the option for several).")
@click.option("--haproxy-config", metavar="FILE", help="haproxy.cfg to re-render when the topology file changes.")
@click.option("--haproxy-pidfile", metavar="FILE", help="Pid file of HAProxy's master process (SIGUSR2 reloads).")
@click.option("--haproxy-stats-socket", metavar="PATH", help="Admin stats socket line to keep in the configuration.")
@click.option("--read-write-bind", default=None, metavar="HOST:PORT", help="HAProxy read-write bind (default: P).")
@click.option("--read-only-bind", default=None, metavar="HOST:PORT", help="HAProxy read-only bind (default: P+1).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=0.5, show_default=True,
              help="Seconds between two looks at the federation record and the primary DC.")
@click.option("--id", "follower_id", metavar="NAME", default=None,
              help="This follower's name in the federation store (default: HOSTNAME:ADMIN-HOST:PORT); "
                   "switchover-dc pauses every registered PgBouncer.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING"]), default="INFO", show_default=True)
@reports_errors
def follow(topology_path: str, pgbouncer_databases: str | None, pgbouncer_admin: str | None, dbnames: tuple[str, ...],
           haproxy_config: str | None, haproxy_pidfile: str | None, haproxy_stats_socket: str | None,
           read_write_bind: str | None, read_only_bind: str | None, interval: float, follower_id: str | None,
           log_level: str) -> None:
    """Keep PgBouncer pointed at the primary DC's leader and HAProxy's configuration in step with the topology.

    With a federation store, the follower registers there and PAUSEs PgBouncer while switchover-dc changes
    the primary DC (clients wait instead of failing), RESUMEing once it points at the new leader.

    Runs in the foreground until SIGTERM or Ctrl-C (systemd Type=simple); logs on stderr, one line per change."""
    from agent.entrypoint_follower import build_follower
    from agent.logs import configure

    follower = build_follower(topology_path, pgbouncer_databases=pgbouncer_databases,
                              pgbouncer_admin=pgbouncer_admin, dbnames=dbnames, haproxy_config=haproxy_config,
                              haproxy_pidfile=haproxy_pidfile, haproxy_stats_socket=haproxy_stats_socket,
                              read_write_bind=read_write_bind, read_only_bind=read_only_bind, interval=interval,
                              follower_id=follower_id)
    configure(log_level, federation=follower.topo.federation)
    follower.run()
