"""`fedctl jobs`: each DC's declared jobs (with their next fire time) and the result history in its DCS."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backup.jobs import JobResult, JobStore, claim_key
from federation.errors import DCSError
from federation.topology import Datacenter, Topology

JOB_COLUMNS = ["Job", "Kind", "Cron", "Next run (UTC)", "Last run", "Last status", "Running on"]
HISTORY_COLUMNS = ["Started", "Job", "Status", "Seconds", "Details"]


@dataclass
class DcJobs:
    """What one DC's DCS holds: results oldest first, and the run claims present (job -> claim JSON)."""

    history: list[JobResult] = field(default_factory=list)
    claims: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def read_dc(topo: Topology, dc: Datacenter, timeout: float | None = None) -> DcJobs:
    from federation.dcs import connect

    try:
        with connect(dc, timeout=timeout) as dcs:
            history = JobStore(dcs, dc.dcs.namespace, topo.federation).history(dc.name)
            claims = {}
            for job in dc.jobs:
                found = dcs.get(claim_key(dc.dcs.namespace, topo.federation, dc.name, job.name))
                if found is not None:
                    claims[job.name] = found.value
            return DcJobs(history, claims)
    except DCSError as exc:
        return DcJobs(error=exc.message)


def _claim_text(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return f"{data['identity']} since {data['started']}"
    except (ValueError, KeyError, TypeError):
        return "an unreadable claim"


def dc_report(dc: Datacenter, found: DcJobs, now: datetime) -> dict[str, Any]:
    last = {r.job: r for r in found.history}  # oldest first: the newest of each job wins
    jobs = []
    for job in dc.jobs:
        result = last.get(job.name)
        next_run = job.next_run(now)
        jobs.append({
            "name": job.name, "kind": job.kind.value, "cron": job.cron, "timeout": job.timeout_seconds,
            "next_run": next_run.isoformat(timespec="seconds") if next_run else None,
            "last_run": result.started if result else None, "last_status": result.status if result else None,
            "last_summary": result.summary if result else None, "running": _claim_text(found.claims.get(job.name)),
        })
    failing = [j["name"] for j in jobs if j["last_status"] not in (None, "ok", "skipped")]
    return {"name": dc.name, "jobs": jobs, "history": [r.model_dump(mode="json") for r in reversed(found.history)],
            "failing": failing, "error": found.error}


def jobs_report(topo: Topology, dc_name: str | None, now: datetime,
                read: Callable[[Topology, Datacenter], DcJobs] | None = None) -> dict[str, Any]:
    """`ok` is False when the last run of a declared job did not succeed, or a DC's history cannot be read."""
    dcs = [topo.dc(dc_name)] if dc_name else list(topo.datacenters)
    reader = read or read_dc
    reports = [dc_report(dc, reader(topo, dc), now) for dc in dcs]
    return {"datacenters": reports, "ok": not any(r["failing"] or r["error"] for r in reports)}


def job_rows(report: dict[str, Any]) -> list[list[Any]]:
    return [[j["name"], j["kind"], j["cron"], j["next_run"], j["last_run"], j["last_status"] or "never run",
             j["running"]] for j in report["jobs"]]


def history_rows(report: dict[str, Any]) -> list[list[Any]]:
    return [[h["started"], h["job"], h["status"], h["seconds"], h["summary"]] for h in report["history"]]
