"""`fedctl store init|status`: the federation store (see federation/store.py)."""

from __future__ import annotations

import sys

import click

from federation.cli.app import cli, format_option, load, reports_errors, topology_option
from federation.errors import EXIT_FAILED, BadInput
from federation.render import render_data, render_table
from federation.topology import Topology


@cli.group("store")
def store_group() -> None:
    """The federation store: the consensus cluster that holds the record and the primary-DC lease."""


def _needs_store(topo: Topology) -> None:
    if topo.federation_store is None:
        raise BadInput(f"{topo.source} has no federation_store section",
                       hint="add one (see docs/topology.md) before using `fedctl store`")


@store_group.command("init")
@topology_option
@click.option("--allow-unreachable", is_flag=True,
              help="Copy the newest record found even when some DC's copy cannot be read.")
@reports_errors
def store_init(topology_path: str, allow_unreachable: bool) -> None:
    """Copy the newest per-DC record into the empty federation store, once."""
    from federation.record_store import init_store

    topo = load(topology_path)
    _needs_store(topo)
    record, copies = init_store(topo, allow_unreachable=allow_unreachable)
    holders = [c.dc for c in copies if c.state is not None and c.state == record] or ["the topology (epoch 0)"]
    click.echo(f"The federation store now holds epoch {record.epoch} (primary DC {record.primary_dc}), copied "
               f"from {', '.join(holders)}; commits go through the store from now on.")


@store_group.command("status")
@topology_option
@format_option
@reports_errors
def store_status(topology_path: str, fmt: str) -> None:
    """Each store member as probed from here, the record's epoch and the primary-DC lease. Exit 1 without
    a quorum."""
    from federation.store import FederationStore, StoreError

    topo = load(topology_path)
    _needs_store(topo)
    assert topo.federation_store is not None
    store = FederationStore(topo.federation_store, topo.federation)
    view = store.quorum()
    members = [{"address": p.host.address, "site": p.host.site, "serving": p.serving, "state": p.reason}
               for p in view.probes]
    epoch: int | None = None
    lease = None
    error: str | None = None
    try:
        from federation.state import _parse

        found = store.read_record()
        parsed = _parse(found.value) if found else None
        epoch = parsed.epoch if parsed else None
        lease = store.read_lease()
    except StoreError as exc:
        error = exc.message
    lease_data = None if lease is None else {"holder": lease.holder, "agent": lease.agent,
                                             "remaining": lease.remaining}
    if fmt != "table":
        click.echo(render_data({"members": members, "quorum": view.has_majority, "record_epoch": epoch,
                                "lease": lease_data, "error": error}, fmt))
    else:
        rows = [[m["address"], m["site"], "yes" if m["serving"] else "no", m["state"]] for m in members]
        click.echo(render_table(["Member", "Site", "Serving", "State"], rows,
                                title=f"Federation store of {topo.federation}: {len(view.serving)} of {view.total} "
                                      "members serve"))
        if error:
            click.echo(f"error: {error}")
        else:
            held = "nobody holds it" if lease is None or not lease.held else (
                f"held by {lease.holder} (agent {lease.agent})"
                + (f", {lease.remaining:g} s left" if lease.remaining is not None else ""))
            click.echo(f"record: {'epoch ' + str(epoch) if epoch is not None else 'none (run fedctl store init)'}; "
                       f"primary-DC lease: {held}")
    if not view.has_majority or error:
        sys.exit(EXIT_FAILED)
