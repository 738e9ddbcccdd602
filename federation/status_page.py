"""The HTML view's data, gathered within one deadline: the status observation and every DC's job results.

`fedctl status --format html` and the agent's `GET /` both call `observe_for_page`; the job history is read
from each DC's DCS (as `fedctl jobs` reads it) in parallel with the observation, so the page costs what the
status costs. The record's history comes with the observation (the federation record it already reads).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from federation.status_html import render_html
from federation.status_view_inputs import JobRun, LagHistory, RecentJobs, past_operations

if TYPE_CHECKING:
    from collections.abc import Mapping

    from backup.job_report import DcJobs
    from federation.status_model import FederationStatus
    from federation.topology import Datacenter, Topology

JOB_RUNS_KEPT = 20


@dataclass(frozen=True)
class PageData:
    status: FederationStatus
    jobs: RecentJobs


def observe_for_page(topo: Topology, *, timeout: float, upstream_of: Mapping[str, str] | None = None) -> PageData:
    """The status (`observe_federation`) and the job results of every DC, read at once within `timeout`."""
    from federation.observe import observe_federation

    with ThreadPoolExecutor(max_workers=1 + len(topo.datacenters), thread_name_prefix="page") as pool:
        observed = pool.submit(observe_federation, topo, upstream_of=upstream_of, timeout=timeout)
        job_reads = {dc.name: pool.submit(_read_jobs_of, topo, dc, timeout) for dc in topo.datacenters}
        jobs = recent_jobs(job_reads)
        return PageData(observed.result(), jobs)


def _read_jobs_of(topo: Topology, dc: Datacenter, timeout: float) -> DcJobs:
    from backup.job_report import DcJobs, read_dc

    try:
        return read_dc(topo, dc, timeout=timeout)
    except Exception as exc:  # the page must survive anything; say it is a bug
        return DcJobs(error=f"unexpected {type(exc).__name__}: {exc} (please report this as a bug)")


def recent_jobs(reads: Mapping[str, Future[DcJobs]]) -> RecentJobs:
    """The newest results of all DCs, newest first, and a sentence for each DC whose history was not read."""
    runs: list[JobRun] = []
    unread: list[str] = []
    for dc, future in reads.items():
        found = future.result()
        if found.error is not None:
            unread.append(f"{dc}: {found.error}")
        runs.extend(JobRun.from_json(r.model_dump(mode="json")) for r in found.history)
    runs.sort(key=lambda r: r.started, reverse=True)
    return RecentJobs(tuple(runs[:JOB_RUNS_KEPT]), tuple(unread))


def page_html(data: PageData, lag: LagHistory) -> str:
    return render_html(data.status, past_operations(data.status), data.jobs, lag.samples())
