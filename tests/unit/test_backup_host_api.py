"""The backup-host agent's API, served for real on 127.0.x and read by fedctl's client (federation.agent_gates):
/metrics after a job run (every series with its DC), /health as the schedulers and the DCSs go, /events and
`fedctl events` reading them (and the DCS-recorded results standing in when the agent does not answer), https
with the repository host's certificate. In-memory DCSs stand in for etcd and a runner function for run_job."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from agent.backup_host import BackupHostAgent
from agent.backup_host_settings import backup_host_settings
from backup.jobs import Job, JobResult
from federation import events_read
from federation.agent_gates import backup_host_get, backup_host_url
from federation.cli import cli
from federation.dcs.base import DCS
from federation.errors import BadInput, DCSError, TopologyError
from federation.events_read import Event, Source, SourceAnswer, backup_host_source, read_backup_host_events
from federation.topology import Datacenter, Topology, parse_topology
from tests.unit.test_agent_backup_host import TOPOLOGY
from tests.unit.test_backup_jobs import MemoryDCS
from tests.unit.test_etcd_tls import issue
from tests.unit.test_patroni_api_security import make_ca

HOST = "127.0.31.246"
IDENTITY = "backup-host@test"
PROBE_EVERY = 0.05  # /health says a DCS is silent after 3 probes: 0.15 s
pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def topology(port: int, agent_tls: dict[str, str] | None = None) -> Topology:
    """The backup lab's topology with its repository host on HOST:port and a job named `archive` in both DCs."""
    data: dict[str, Any] = yaml.safe_load(TOPOLOGY.read_text())
    data["pgbackrest"]["repo_host"].update(address=HOST, agent_port=port)
    data["datacenters"][0]["jobs"] = [{"name": "archive", "kind": "check_archive", "cron": "*/10 * * * *"},
                                      {"name": "verify", "kind": "verify_restore", "cron": "0 5 * * *"}]
    data["datacenters"][1]["jobs"] = [{"name": "archive", "kind": "check_archive", "cron": "*/10 * * * *"}]
    if agent_tls is None:
        del data["agent_api"]
    else:
        data["agent_api"]["tls"] = agent_tls
    return parse_topology(data, str(TOPOLOGY))


class DCSs:
    """One in-memory DCS per DC; a DC named in `down` does not answer."""

    def __init__(self) -> None:
        self.stores: dict[str, MemoryDCS] = {}
        self.down: set[str] = set()

    @contextmanager
    def __call__(self, dc: Datacenter) -> Iterator[DCS]:
        if dc.name in self.down:
            raise DCSError(f"etcd of {dc.name} does not answer")
        yield self.stores.setdefault(dc.name, MemoryDCS())


def runner(statuses: dict[str, str]) -> Callable[..., JobResult]:
    """A run_job substitute: each DC's runs end with its status in `statuses`."""

    def run(topo: Topology, dc: Datacenter, job: Job, *, clock: Callable[[], datetime]) -> JobResult:
        status = statuses[dc.name]
        return JobResult(job=job.name, kind=job.kind, dc=dc.name, started=clock().isoformat(), seconds=1.5,
                         status=status, summary=f"{status} run")  # type: ignore[arg-type]

    return run


def eventually(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def health(topo: Topology) -> tuple[int, str]:
    code, body = backup_host_get(topo, "/health", timeout=2)
    return code, json.loads(body)["reason"]


@contextmanager
def running(topo: Topology, dcss: DCSs, statuses: dict[str, str] | None = None) -> Iterator[BackupHostAgent]:
    """The agent's run() in a thread, as `fedctl agent run --backup-host` runs it, until it answers 200."""
    host = BackupHostAgent(backup_host_settings(topo, identity=IDENTITY), runner=runner(statuses or {}),
                           open_dcs=dcss, probe_every=PROBE_EVERY)
    thread = threading.Thread(target=host.run, name="backup-host-under-test")
    thread.start()
    try:
        eventually("the backup-host agent answers /health with 200", lambda: _answers_200(topo))
        yield host
    finally:
        host.stop()
        thread.join(10)
    assert not thread.is_alive()


def _answers_200(topo: Topology) -> bool:
    try:
        return health(topo)[0] == 200
    except OSError:
        return False


def samples(topo: Topology) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    code, body = backup_host_get(topo, "/metrics", timeout=2)
    assert code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def series(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


# ---- /metrics ---------------------------------------------------------------------------------------------------

def test_metrics_after_a_job_run_carry_each_jobs_dc_and_who_the_backup_host_is() -> None:
    topo, dcss = topology(free_port()), DCSs()
    with running(topo, dcss, {"dc1": "ok", "dc2": "failed"}) as host:
        for scheduler in host.schedulers:
            scheduler.run_now("archive")  # the same job name in both DCs, told apart by `dc`
        got = samples(topo)
    dc1 = {"dc": "dc1", "job": "archive", "kind": "check_archive"}
    dc2 = {**dc1, "dc": "dc2"}
    assert got[series("fedctl_job_last_success", **dc1)] == 1
    assert got[series("fedctl_job_last_success", **dc2)] == 0
    assert got[series("fedctl_job_last_duration_seconds", **dc1)] == 1.5
    assert got[series("fedctl_job_last_run_timestamp_seconds", **dc2)] == pytest.approx(time.time(), abs=60)
    assert got[series("fedctl_job_runs_total", **dc1, status="ok")] == 1
    assert got[series("fedctl_job_runs_total", **dc2, status="failed")] == 1
    # A job that has not run has its counters at zero, and no last_* gauge yet.
    verify = {"dc": "dc1", "job": "verify", "kind": "verify_restore"}
    assert got[series("fedctl_job_runs_total", **verify, status="ok")] == 0
    assert series("fedctl_job_last_success", **verify) not in got
    assert got[series("fedctl_backup_host_info", federation="test-backup", member=IDENTITY)] == 1
    assert got[series("fedctl_backup_host_dcs_up", dc="dc1")] == 1
    assert got[series("fedctl_backup_host_dcs_up", dc="dc2")] == 1
    assert not [name for name, _labels in got if name == "fedctl_agent_info"]  # it is no DC's agent


# ---- /health ----------------------------------------------------------------------------------------------------

def test_health_follows_the_dcs_it_needs_and_its_schedulers() -> None:
    topo, dcss = topology(free_port()), DCSs()
    with running(topo, dcss) as host:
        assert health(topo) == (200, "running 3 job(s) of 2 DC(s); every DC's DCS answers")
        dcss.down.add("dc2")
        eventually("/health says dc2's DCS is silent", lambda: health(topo)[0] == 503)
        assert health(topo)[1] == "the DCS of dc2 does not answer: etcd of dc2 does not answer"
        assert samples(topo)[series("fedctl_backup_host_dcs_up", dc="dc2")] == 0
        dcss.down.clear()
        eventually("/health is 200 again", lambda: health(topo)[0] == 200)
        host.schedulers[0].shutdown()  # as if apscheduler's thread had died
        assert health(topo) == (503, "the job scheduler of dc1 is not running")


def test_health_is_503_until_the_agent_runs() -> None:
    from agent.api import serve

    port = free_port()
    topo = topology(port)
    host = BackupHostAgent(backup_host_settings(topo, identity=IDENTITY), open_dcs=DCSs())
    server = serve(host, HOST, port)
    try:
        assert health(topo) == (503, "the backup-host agent is not running")
    finally:
        server.shutdown()
        server.server_close()


def test_it_has_no_gate_no_primary_check_and_no_html_view() -> None:
    topo = topology(free_port())
    with running(topo, DCSs()):
        gate_code, gate_body = backup_host_get(topo, "/gate")
        primary_code, _ = backup_host_get(topo, "/primary")
        page_code, page_body = backup_host_get(topo, "/")
        status_code, status_body = backup_host_get(topo, "/status")
    assert gate_code == 404 and "no promotion gate" in json.loads(gate_body)["error"]
    assert primary_code == 404
    assert page_code == 404 and "no HTML view" in json.loads(page_body)["error"]
    status = json.loads(status_body)["backup_host"]
    assert status_code == 200 and status["healthy"] and [d["name"] for d in status["datacenters"]] == ["dc1", "dc2"]
    assert [j["name"] for j in status["datacenters"][0]["jobs"]] == ["archive", "verify"]
    assert status["datacenters"][0]["jobs"][0]["next_run"] is not None


# ---- /events and fedctl events ----------------------------------------------------------------------------------

def test_its_job_events_are_read_with_their_dc_through_the_agents_client() -> None:
    topo = topology(free_port())
    with running(topo, DCSs(), {"dc1": "ok", "dc2": "failed"}) as host:
        host.schedulers[1].run_now("archive")
        answer = read_backup_host_events(topo, None)
        source = backup_host_source(topo, fallbacks=[Source("jobs", _never_asked)]).read(None)
    assert answer.answered and [(e.dc, e.member, e.kind) for e in answer.events] == [("dc2", IDENTITY, "job")]
    assert answer.events[0].details["outcome"] == "failed" and "archive" in answer.events[0].sentence
    assert source.answered and source.events == answer.events


def _never_asked(_since: datetime | None) -> SourceAnswer:
    raise AssertionError("the stand-in was asked although the backup-host agent answered")


def stand_in_event() -> Event:
    """A job result as the DCS records it, from just now (the test filters with --since)."""
    return Event(datetime.now(UTC), "dc1", "backup-host", "job", "job archive (check_archive) ok after 1.0 s: ok")


def test_when_it_does_not_answer_the_dcs_recorded_results_stand_in_and_it_is_said() -> None:
    topo = topology(free_port())  # nobody listens there
    stand_in = stand_in_event()
    answer = backup_host_source(topo, fallbacks=[Source("jobs of dc1", lambda _s: SourceAnswer("jobs of dc1",
                                                                                                [stand_in]))]).read(None)
    assert not answer.answered and answer.events == [stand_in]
    assert f"its agent does not answer at http://{HOST}:" in (answer.error or "")
    assert "showing the job results recorded in each DC's DCS instead" in (answer.error or "")


def test_fedctl_events_says_on_stderr_that_the_dcs_stands_in(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["pgbackrest"]["repo_host"].update(address=HOST, agent_port=free_port())  # nobody listens there
    del data["agent_api"]
    path.write_text(yaml.safe_dump(data))
    recorded = stand_in_event()
    stand_in = Source("jobs of dc1", lambda _s: SourceAnswer("jobs of dc1", [recorded]))
    monkeypatch.setattr(events_read, "event_sources",
                        lambda t, *_a, **_k: [backup_host_source(t, fallbacks=[stand_in])])
    result = CliRunner().invoke(cli, ["events", "-t", str(path), "--since", "5m"])
    assert result.exit_code == 1
    assert "backup host: not read: its agent does not answer" in result.stderr
    assert "recorded in each DC's DCS instead" in result.stderr
    assert "dc1/backup-host" in result.stdout and "job archive (check_archive) ok" in result.stdout


def test_fedctl_events_asks_the_backup_host_only_with_a_repository_host() -> None:
    with_host = topology(free_port())
    names = [s.name for s in events_read.event_sources(with_host)]
    assert names.count("backup host") == 1 and not [n for n in names if n.startswith("jobs of")]
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["pgbackrest"] = {"stanza": "fed", "repo_path": "/var/lib/pgbackrest"}
    del data["agent_api"]
    plain = parse_topology(data, "plain")
    assert "backup host" not in [s.name for s in events_read.event_sources(plain)]
    assert backup_host_url(plain) is None
    with pytest.raises(BadInput, match=r"no pgbackrest\.repo_host"):
        backup_host_get(plain, "/health")


# ---- where it listens, and https --------------------------------------------------------------------------------

def test_it_listens_on_the_repository_hosts_address_and_agent_port_unless_told_otherwise() -> None:
    topo = topology(9108)
    assert str(backup_host_settings(topo).listen) == f"{HOST}:9108"
    assert str(backup_host_settings(topo, "127.0.0.1:7000").listen) == "127.0.0.1:7000"
    assert backup_host_settings(topo, allow=["10.1.0.0/24"]).api_allow[0].num_addresses == 256
    with pytest.raises(BadInput, match="--allow"):
        backup_host_settings(topo, allow=["not-a-network"])
    assert backup_host_url(topo) == f"http://{HOST}:9108"


def test_an_agent_port_on_the_tls_port_is_refused() -> None:
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["pgbackrest"]["repo_host"].update(agent_port=8432)
    with pytest.raises(TopologyError, match="agent_port 8432 is also the repository host's tls_port"):
        parse_topology(data, "clash")
    data["pgbackrest"]["repo_host"].pop("agent_port")
    repo = parse_topology(data, "default").pgbackrest
    assert repo is not None and repo.repo_host is not None and repo.repo_host.agent_port == 8108


def test_it_serves_https_with_the_repository_hosts_certificate(tmp_path: Path) -> None:
    ca, ca_key = make_ca(tmp_path, "ca")
    issue(tmp_path, ca, ca_key, "repo", HOST)  # repo_host.name is `repo`: its {host}
    client, client_key = issue(tmp_path, ca, ca_key, "fedctl", None)
    tls = {"ca_file": str(ca), "cert_file": str(tmp_path / "{host}.crt"), "key_file": str(tmp_path / "{host}.key"),
           "client_cert_file": str(client), "client_key_file": str(client_key)}
    topo = topology(free_port(), tls)
    assert (backup_host_url(topo) or "").startswith("https://")
    with running(topo, DCSs()):
        assert health(topo)[0] == 200


def test_the_labs_make_the_repository_host_an_agent_certificate() -> None:
    """The lab issues one certificate per host of pgbackrest.tls (federation/lab/tls_certs.py); the backup-host
    agent serves agent_api.tls's for repo_host.name, so in every lab topology the two must be one file."""
    from federation.lab.tls_certs import lab_hosts, tls_sections
    from federation.topology import load_topology

    root = Path(__file__).parents[2]
    checked = 0
    for path in [*sorted((root / "topologies").glob("lab-*.yaml")),
                 *sorted((root / "tests" / "integration" / "topologies").glob("*.yaml"))]:
        topo = load_topology(path)
        sections = tls_sections(topo)
        if topo.agent_tls is None or not sections:
            continue
        section = sections[0]
        assert section.repo_host is not None and section.tls is not None
        issued = {section.tls.cert(name) for name in lab_hosts(topo, section)}
        assert topo.agent_tls.server_cert(section.repo_host.name) in issued, path
        checked += 1
    assert checked >= 2
