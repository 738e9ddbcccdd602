"""`fedctl events`: what every agent changed, and the operations, merged by time (federation/events_read.py)."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

import click

from federation.cli.app import cli, load, reports_errors, topology_option
from federation.errors import EXIT_FAILED, EXIT_OK

FOLLOW_SECONDS = 2.0


@cli.command("events")
@topology_option
@click.option("--since", "since_text", metavar="DURATION|ISO", default="1h", show_default=True,
              help="Only events from then on: a duration back from now (30s, 5m, 2h, 1d) or an ISO 8601 time.")
@click.option("--follow", "-f", is_flag=True, help=f"Keep asking every {FOLLOW_SECONDS:g} s and print only new "
              "events, until Ctrl-C.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: one line per event; json: a list (with --follow, one JSON object per line).")
@reports_errors
def events_cmd(topology_path: str, since_text: str, follow: bool, fmt: str) -> None:
    """Every agent's events (fence, lease, re-point, job, ...) and the federation's operations, oldest first.

    An agent that does not answer is named once on stderr. Exit 0 when every source answered (on every poll
    with --follow), 1 when one did not, 2 for bad input."""
    from federation.events_read import TABLE_HEADER, EventFollower, event_sources, parse_since

    topo = load(topology_path)
    follower = EventFollower(event_sources(topo), parse_since(since_text, datetime.now(UTC)))
    reported: set[str] = set()
    every_answered = True
    if fmt == "table":
        click.echo(TABLE_HEADER)
    try:
        while True:
            poll = follower.poll()
            for answer in poll.silent:
                if answer.source not in reported:
                    click.echo(f"{answer.source}: not read: {answer.error}", err=True)
                    reported.add(answer.source)
            every_answered = every_answered and not poll.silent
            if fmt == "json" and not follow:
                click.echo(json.dumps([e.to_json_dict() for e in poll.events], indent=2, default=str))
            for event in poll.events if (follow or fmt == "table") else []:
                click.echo(json.dumps(event.to_json_dict(), default=str) if fmt == "json" else event.line())
            if not follow:
                break
            time.sleep(FOLLOW_SECONDS)  # the pace of a follow, not a wait for a condition
    except KeyboardInterrupt:
        pass
    sys.exit(EXIT_OK if every_answered else EXIT_FAILED)
