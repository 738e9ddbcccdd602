"""The federation as one self-contained HTML page: `fedctl status --format html` and the agent's `GET /`.

Pure: `render_html` takes what the caller observed and returns the page. DCs are boxes in tiers: the primary DC
on top, each standby DC one tier below its upstream (a cascade is a tier further down), each with an arrow
from its upstream, its cross-DC lag and a sparkline of the lag samples the caller passes. Every text is
HTML-escaped (DC and member names come from the user's YAML, errors from the network). Stable markers for
tests and scripts: `data-dc` and `data-role` on each DC's box (`data-role="primary"` on the primary DC's),
`data-from`/`data-to` on each arrow, `data-points` on each sparkline.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from federation.status_html_assets import CONTENT_SECURITY_POLICY, REFRESH_SECONDS, SCRIPT, STYLE
from federation.status_model import DCStatus, FederationStatus, MemberStatus
from federation.status_text import host_text, human_bytes, role_text, state_text
from federation.status_view_inputs import PastOperation, RecentJobs

SPARK_WIDTH, SPARK_HEIGHT = 140, 28
OPERATIONS_SHOWN = 10
JOB_RUNS_SHOWN = 10


def e(value: object) -> str:
    """Escaped text (quotes too: the same helper fills attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def render_html(status: FederationStatus, history: Sequence[PastOperation], jobs: RecentJobs,
                lag_history: Mapping[str, Sequence[int | None]]) -> str:
    """The whole page. `history` oldest first (the record's); `lag_history`: standby DC -> lag bytes, oldest first."""
    problems = status.all_problems()
    verdict = "healthy" if status.healthy else f"{len(problems)} problem{'s' * (len(problems) != 1)}"
    title = f"Federation {status.federation}: primary DC {status.primary_dc or 'none'} ({verdict})"
    observed = status.observed_at.isoformat() if status.observed_at else ""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(CONTENT_SECURITY_POLICY)}">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head>",
        f'<body data-federation="{e(status.federation)}" data-primary-dc="{e(status.primary_dc or "")}" '
        f'data-healthy="{str(status.healthy).lower()}" data-observed-at="{e(observed)}">',
        "<header>", f"<h1>Federation {e(status.federation)}</h1>",
        f'<p class="verdict {"ok" if status.healthy else "bad"}">{e(_headline(status, verdict))}</p>',
        f'<p class="muted">Observed {e(observed or "at an unknown time")} <span id="age"></span>'
        f"{_duration(status)}; this page reloads every {REFRESH_SECONDS} s.</p>", "</header>",
        "<main>", _problems(problems), _topology(status, lag_history),
        '<div class="columns">', _control(status), _history(history), _jobs(jobs), "</div>",
        _followers(status), _entrypoints(status), "</main>", f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(p for p in parts if p) + "\n"


def _headline(status: FederationStatus, verdict: str) -> str:
    record = status.extra.get("federation_record")
    epoch = f"epoch {record['epoch']}, " if record else ""
    return f"Primary DC {status.primary_dc or 'none'} ({epoch}{verdict})"


def _duration(status: FederationStatus) -> str:
    return f", in {status.duration_s:.2f} s" if status.duration_s is not None else ""


def _problems(problems: list[str]) -> str:
    if not problems:
        return '<section class="no-problems" aria-label="Problems"><p>No problems.</p></section>'
    items = "".join(f"<li>{e(p)}</li>" for p in problems)
    return (f'<section class="problems" role="alert" aria-labelledby="problems-title">'
            f'<h2 id="problems-title">Problems ({len(problems)})</h2><ul>{items}</ul></section>')


# ---- the DCs, in tiers
def tiers(status: FederationStatus) -> list[tuple[str, list[DCStatus]]]:
    """(depth label, DCs): primary DCs at depth 0, each standby DC one deeper than its upstream; DCs whose
    chain reaches no primary DC (unknown role or upstream, a loop) last, as `unplaced`."""
    by_name = {dc.name: dc for dc in status.datacenters}

    def depth(dc: DCStatus, seen: frozenset[str]) -> int | None:
        if dc.role == "primary":
            return 0
        upstream = by_name.get(dc.upstream or "")
        if dc.role != "standby" or upstream is None or dc.name in seen:
            return None
        above = depth(upstream, seen | {dc.name})
        return None if above is None else above + 1

    placed: dict[int, list[DCStatus]] = {}
    unplaced: list[DCStatus] = []
    for dc in status.datacenters:
        level = depth(dc, frozenset())
        if level is None:
            unplaced.append(dc)
        else:
            placed.setdefault(level, []).append(dc)
    result = [(str(level), placed[level]) for level in sorted(placed)]
    return [*result, ("unplaced", unplaced)] if unplaced else result


def _topology(status: FederationStatus, lag_history: Mapping[str, Sequence[int | None]]) -> str:
    rows = []
    for label, dcs in tiers(status):
        boxes = "".join(_dc_box(dc, lag_history.get(dc.name, ())) for dc in dcs)
        rows.append(f'<div class="tier" data-depth="{label}">{boxes}</div>')
    return f'<section aria-labelledby="dcs-title"><h2 id="dcs-title">Datacenters</h2>{"".join(rows)}</section>'


def _dc_box(dc: DCStatus, samples: Sequence[int | None]) -> str:
    flags = [dc.role]
    if dc.maintenance:
        flags.append("maintenance (Patroni paused: no automatic failover)")
    if not dc.reachable:
        flags.append(f"DCS unreachable: {dc.error or 'no answer'}")
    timeline = f", timeline {dc.timeline}" if dc.timeline is not None else ""
    return (f'<article class="dc" data-dc="{e(dc.name)}" data-role="{e(dc.role)}" '
            f'data-upstream="{e(dc.upstream or "")}" data-healthy="{str(dc.healthy).lower()}" '
            f'aria-label="DC {e(dc.name)}, {e(dc.role)}">'
            f'<h3>{e(dc.name)} <span class="dc-role">{e(", ".join(flags))}</span></h3>'
            f'<p class="muted">Patroni scope {e(dc.scope)}, leader {e(dc.leader or "none")}{e(timeline)}</p>'
            f"{_upstream_link(dc, samples)}{_members(dc)}</article>")


def _upstream_link(dc: DCStatus, samples: Sequence[int | None]) -> str:
    if dc.role != "standby" or not dc.upstream:
        return ""
    if dc.lag_bytes is None:
        lag = "lag unknown (a leader's position is missing)"
    else:
        seconds = "unknown" if dc.lag_seconds is None else f"{dc.lag_seconds:.1f} s"
        lag = f"{human_bytes(dc.lag_bytes)} / {seconds} behind"
    source = f", from {dc.standby_cluster}" if dc.standby_cluster else ""
    sentence = f"{dc.name} replicates from {dc.upstream}"
    arrow = (f'<svg class="arrow" data-from="{e(dc.upstream)}" data-to="{e(dc.name)}" width="28" height="28" '
             f'viewBox="0 0 28 28" role="img" aria-label="{e(sentence)}"><title>{e(sentence)}</title>'
             '<path d="M14 2 V22 M6 15 L14 25 L22 15" fill="none" stroke="#2a5db0" stroke-width="3" '
             'stroke-linecap="round" stroke-linejoin="round"/></svg>')
    return (f'<div class="link">{arrow}<span>from <strong>{e(dc.upstream)}</strong>: {e(lag)}{e(source)}</span>'
            f"{sparkline(samples)}</div>")


def sparkline(samples: Sequence[int | None]) -> str:
    """An inline SVG of the known samples (oldest left); an unknown sample is a gap in time, not a point."""
    known = [(i, v) for i, v in enumerate(samples) if v is not None]
    if not known:
        return ""
    top = max(v for _, v in known) or 1
    span = max(1, len(samples) - 1)
    points = [(round(i * (SPARK_WIDTH - 4) / span + 2, 1), round(SPARK_HEIGHT - 3 - v * (SPARK_HEIGHT - 6) / top, 1))
              for i, v in known]
    label = f"lag history: {len(known)} samples, latest {human_bytes(known[-1][1])}, highest {human_bytes(top)}"
    drawn = " ".join(f"{x},{y}" for x, y in points)
    last_x, last_y = points[-1]
    return (f'<svg class="sparkline" data-points="{len(points)}" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" '
            f'viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" role="img" aria-label="{e(label)}"><title>{e(label)}</title>'
            f'<polyline points="{drawn}" fill="none" stroke="#2a5db0" stroke-width="1.5"/>'
            f'<circle cx="{last_x}" cy="{last_y}" r="2.5" fill="#2a5db0"/></svg>')


MEMBER_COLUMNS = ("Member", "Host", "Role", "State", "TL", "LSN", "Lag")


def _members(dc: DCStatus) -> str:
    if not dc.members:
        return '<p class="muted">No members known.</p>'
    head = "".join(f'<th scope="col">{c}</th>' for c in MEMBER_COLUMNS)
    rows = "".join(_member_row(m, m.name == dc.leader) for m in dc.members)
    return f"<table><caption class=\"muted\">Members of {e(dc.name)}</caption><thead><tr>{head}</tr></thead>" \
           f"<tbody>{rows}</tbody></table>"


def _member_row(m: MemberStatus, is_leader: bool) -> str:
    cells = [f'<th scope="row">{e(m.name)}</th>', f"<td>{e(host_text(m))}</td>", f"<td>{e(role_text(m))}</td>",
             f'<td title="{e(m.error or "")}">{e(state_text(m))}</td>', f'<td class="num">{e(m.timeline)}</td>',
             f'<td class="num">{e(m.lsn_text)}</td>',
             f'<td class="num">{"" if is_leader else e(human_bytes(m.lag_bytes))}</td>']
    css = "" if m.healthy else ' class="unhealthy"'
    return f'<tr data-member="{e(m.name)}"{css}>{"".join(cells)}</tr>'


# ---- the record, the store, operations and jobs
def _control(status: FederationStatus) -> str:
    record: Mapping[str, Any] | None = status.extra.get("federation_record")
    store: Mapping[str, Any] | None = status.extra.get("federation_store")
    lines = [f"<p>Federation store lease: {_lease_text(store)}</p>"]
    if record is None:
        lines.append("<p>No federation record yet (epoch 0: the topology's roles).</p>")
    else:
        lines.append(f"<p>Record epoch {e(record.get('epoch'))}, primary DC {e(record.get('primary_dc'))}.</p>")
        lines.append(_pending(record.get("operation")))
    return (f'<section class="panel" aria-labelledby="control-title"><h2 id="control-title">Lease and operation'
            f'</h2>{"".join(lines)}</section>')


def _lease_text(store: Mapping[str, Any] | None) -> str:
    if store is None:
        return "none (this topology has no federation store)"
    lease = store.get("lease")
    if store.get("error") or "members" not in store:
        return f'<span class="status-bad">store not readable: {e(store.get("error") or "no quorum")}</span>'
    if not isinstance(lease, Mapping):
        return '<span class="status-bad">nobody holds it</span>'
    left = lease.get("seconds_left")
    agent = f" (agent {e(lease['agent'])})" if lease.get("agent") else ""
    left_text = f", {left:g} s left" if isinstance(left, int | float) else ""
    return f'held by <strong data-lease-holder="{e(lease.get("holder"))}">{e(lease.get("holder"))}</strong>' \
           f"{agent}{e(left_text)}"


def _pending(op: object) -> str:
    if not isinstance(op, Mapping):
        return "<p>No operation pending.</p>"
    plan = [str(s) for s in op.get("plan") or []]
    step = str(op.get("step", "?"))
    where = f" ({plan.index(step) + 1} of {len(plan)})" if step in plan else ""
    route = f"{op.get('source') or '?'} → {op.get('target')}"
    rollback = ", rolling back" if op.get("rollback") else ""
    current = ' aria-current="step"'
    items = "".join(f"<li{current if s == step else ''}>{e(s)}</li>" for s in plan)
    return (f'<div class="pending" data-operation="{e(op.get("kind"))}" data-step="{e(step)}">'
            f'<p class="status-bad">Pending: {e(op.get("kind"))} {e(route)}{e(rollback)}, at step '
            f'<strong>{e(step)}</strong>{e(where)}, started {e(op.get("started"))}</p>'
            + (f'<ol class="plan">{items}</ol>' if items else "") + "</div>")


def _history(history: Sequence[PastOperation]) -> str:
    newest = list(reversed(history[-OPERATIONS_SHOWN:]))
    if not newest:
        body = "<p>No operation recorded yet.</p>"
    else:
        head = "".join(f'<th scope="col">{c}</th>' for c in ("Epoch", "Time", "Operation", "From", "To", "Outcome",
                                                             "Seconds"))
        rows = "".join(
            f'<tr data-operation="{e(h.operation)}"><td class="num">{e(h.epoch)}</td><td>{e(h.time)}</td>'
            f"<td>{e(h.operation)}</td><td>{e(h.source or '-')}</td><td>{e(h.target)}</td>"
            f"<td>{e(h.outcome)}</td><td class=\"num\">{'' if h.seconds is None else f'{h.seconds:.2f}'}</td></tr>"
            for h in newest)
        body = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return (f'<section class="panel" aria-labelledby="history-title"><h2 id="history-title">Last operations, newest '
            f"first</h2>{body}</section>")


def _jobs(jobs: RecentJobs) -> str:
    runs = jobs.runs[:JOB_RUNS_SHOWN]
    parts = [f'<p class="status-bad">Not read: {e(why)}</p>' for why in jobs.unread]
    if not runs:
        parts.append("<p>No job results recorded.</p>")
    else:
        head = "".join(f'<th scope="col">{c}</th>' for c in ("Started", "DC", "Job", "Status", "Seconds", "Summary"))
        rows = "".join(
            f'<tr data-job="{e(r.job)}"><td>{e(r.started)}</td><td>{e(r.dc)}</td><td>{e(r.job)}</td>'
            f'<td class="{"status-ok" if r.ok else "status-bad"}">{e(r.status)}</td>'
            f"<td class=\"num\">{'' if r.seconds is None else f'{r.seconds:.1f}'}</td><td>{e(r.summary)}</td></tr>"
            for r in runs)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return (f'<section class="panel" aria-labelledby="jobs-title"><h2 id="jobs-title">Last job results</h2>'
            f'{"".join(parts)}</section>')


def _entrypoints(status: FederationStatus) -> str:
    entry = status.extra.get("entrypoints")
    if not isinstance(entry, Mapping):
        return ""
    return (f'<footer class="muted"><p>Entrypoints: read-write <code>{e(entry.get("read_write"))}</code>, read-only '
            f'<code>{e(entry.get("read_only"))}</code>, PgBouncer <code>{e(entry.get("pgbouncer"))}</code></p>'
            "</footer>")


def _followers(status: FederationStatus) -> str:
    """The entrypoint followers registered in the federation store (their own one-line description each)."""
    store = status.extra.get("federation_store")
    followers = store.get("entrypoint_followers") if isinstance(store, Mapping) else None
    if not followers:
        return ""
    items = "".join(
        f'<li data-follower="{e(f.get("id"))}" data-state="{e(f.get("state"))}" '
        f'class="{"status-ok" if f.get("live") and f.get("state") == "following" else "status-bad"}">'
        f'{e(f.get("line"))}</li>' for f in followers if isinstance(f, Mapping))
    return (f'<section class="panel" aria-labelledby="followers-title"><h2 id="followers-title">Entrypoint '
            f"followers (switchover-dc pauses their PgBouncer)</h2><ul>{items}</ul></section>")
