"""`fedctl gate pre-promote`: the command Patroni runs before promoting any member."""

from __future__ import annotations

import sys

import click

from federation.cli.app import cli, load, reports_errors, topology_option


@cli.group()
def gate() -> None:
    """Hooks Patroni calls (configured by the lab, or by you in patroni.yml)."""


@gate.command("render")
@topology_option
@click.option("--dc", "dc_name", required=True, help="The DC whose members will run the gate.")
@reports_errors
def render(topology_path: str, dc_name: str) -> None:
    """Print the JSON file `fedctl-gate FILE` reads (set pre_promote: fedctl-gate FILE in patroni.yml)."""
    import json

    from federation.gate import gate_config

    click.echo(json.dumps(gate_config(load(topology_path), dc_name), indent=2))


@gate.command("pre-promote")
@topology_option
@click.option("--dc", "dc_name", required=True, help="The DC this Patroni member belongs to.")
def pre_promote(topology_path: str, dc_name: str) -> None:
    """Exit 0 to allow a promotion, 1 to refuse it (Patroni then releases the leader key).

    Same decision as the faster `fedctl-gate FILE` (see `fedctl gate render`), from the topology directly."""
    from federation.gate import GATE_REFUSE, decide_promotion, gate_config
    from federation.gate_store import read_store
    from federation.state import read_copies

    try:
        topo = load(topology_path)
        store = gate_config(topo, dc_name).get("store")
        tls = topo.etcd_tls.client() if topo.etcd_tls is not None else None
        decision = decide_promotion(topo, dc_name, read_copies(topo), read_store(store, tls=tls) if store else None)
    except Exception as exc:
        click.echo(f"fedctl gate: refusing promotion, the gate could not decide: {exc}", err=True)
        sys.exit(GATE_REFUSE)
    click.echo(f"fedctl gate: {decision.reason}", err=True)
    sys.exit(decision.exit_code)
