"""`fedctl validate`: check a topology file and print a summary."""

from __future__ import annotations

import click

from federation.cli.app import cli, load, reports_errors
from federation.render import render_table


@cli.command()
@click.argument("topology_file", required=False, metavar="[FILE]")
@click.option("-t", "--topology", "topology_opt", default=None, hidden=True)
@reports_errors
def validate(topology_file: str | None, topology_opt: str | None) -> None:
    """Validate a topology file (default: $FEDCTL_TOPOLOGY or the lab default)."""
    from federation.cli.app import default_topology_path
    from federation.follow_mode import describe_follow, follow_mode
    from federation.state import initial_state
    from federation.store_config import store_warnings

    topo = load(topology_file or topology_opt or default_topology_path(), network=False)
    if topo.lab.network == "namespaces":
        from federation.errors import BadInput
        from federation.lab_network import site_conflicts

        if conflicts := site_conflicts(topo):
            raise BadInput(f"{topo.source}: lab.sites: " + "; ".join(conflicts),
                           hint="the namespace lab would take over that traffic: choose subnets this host does not use")
    rows = []
    for dc in topo.datacenters:
        rows.append([dc.name, dc.role.value, dc.upstream or "-", dc.patroni_scope,
                     f"{dc.dcs.kind} {', '.join(str(h) for h in dc.dcs.hosts)}",
                     ", ".join(f"{m.name}@{m.host}:{m.port}" for m in dc.members), dc.synchronous.value])
    click.echo(render_table(["DC", "Role", "Upstream", "Scope", "DCS", "Members", "Sync"], rows,
                            title=f"Federation {topo.federation} ({topo.source}): valid"))
    upstreams = initial_state(topo).upstreams
    for dc in topo.datacenters:
        if (upstream_name := upstreams.get(dc.name)) is not None:
            upstream = topo.dc(upstream_name)
            click.echo(f"{dc.name} {describe_follow(upstream, follow_mode(upstream, upstreams))}")
    store = topo.federation_store
    if store is not None:
        click.echo(f"Federation store: {store.kind} " + ", ".join(f"{h.address} ({h.site})" for h in store.hosts)
                   + f"; lease_ttl {store.lease_ttl} s, fencing_margin {store.fencing_margin:g} s")
    for warning in store_warnings(topo):
        click.secho(f"Warning: {warning}", fg="yellow", err=True)
