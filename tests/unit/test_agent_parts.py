"""The agent's settings, log format, metrics, HTTP API and phase isolation, without a lab."""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent import daemon
from agent.api import serve
from agent.daemon import Agent
from agent.decide import Observation
from agent.logs import LogfmtFormatter
from agent.metrics import AgentMetrics
from agent.settings import agent_settings, lease_key
from federation.errors import BadInput
from federation.topology import Topology, load_topology

TOPOLOGY = Path(__file__).parents[1] / "integration" / "topologies" / "agent-two-dc.yaml"


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load_topology(TOPOLOGY)


def test_the_listen_address_defaults_to_the_patroni_port_plus_100(topo: Topology) -> None:
    s = agent_settings(topo, "dc2", "n4")
    assert str(s.listen) == "127.0.32.12:8108"
    assert s.identity == "dc2/n4"
    assert s.lease_key == "/fed/_fedctl/test-agent/agent/dc2/leader" == lease_key(topo, topo.dc("dc2"))
    assert str(agent_settings(topo, "dc2", "n4", "0.0.0.0:9000").listen) == "0.0.0.0:9000"


def test_without_member_an_ambiguous_host_is_refused(topo: Topology) -> None:
    # Every 127.x address is local here, so both members of dc1 match: the agent must be told which.
    with pytest.raises(BadInput, match="pass --member"):
        agent_settings(topo, "dc1")


def test_a_bad_listen_address_is_bad_input(topo: Topology) -> None:
    with pytest.raises(BadInput, match="HOST:PORT"):
        agent_settings(topo, "dc1", "n1", "nowhere")


def test_log_lines_are_logfmt_with_static_fields() -> None:
    record = logging.LogRecord("agent", logging.INFO, __file__, 1, 'no action: dc2 is a "standby"', None, None)
    line = LogfmtFormatter(dc="dc2", member="n3").format(record)
    assert " level=INFO dc=dc2 member=n3 logger=agent msg=\"no action: dc2 is a \\\"standby\\\"\"" in line
    assert line.startswith("time=")


def test_metrics_parse_and_start_unknown() -> None:
    m = AgentMetrics("test-agent", "dc2", "n3")
    families = {f.name: f for f in text_string_to_metric_families(m.text().decode())}
    assert math.isnan(families["fedctl_cross_dc_lag_bytes"].samples[0].value)
    assert math.isnan(families["fedctl_upstream_lsn_sample_age_seconds"].samples[0].value)
    phases = {s.labels["phase"] for s in families["fedctl_agent_loop_errors"].samples if s.name.endswith("_total")}
    assert {"observe", "decide", "act", "sample"} <= phases
    m.set_lag(2048, 1.5)
    m.sampled()
    families = {f.name: f for f in text_string_to_metric_families(m.text().decode())}
    assert families["fedctl_cross_dc_lag_bytes"].samples[0].value == 2048
    assert families["fedctl_upstream_lsn_sample_age_seconds"].samples[0].value < 1


class FakeView:
    def __init__(self, healthy: bool) -> None:
        self.healthy = healthy

    def health(self) -> tuple[bool, str]:
        return self.healthy, "own DCS answers" if self.healthy else "own DCS does not answer"

    def status(self) -> dict[str, Any]:
        raise RuntimeError("boom")

    def metrics_text(self) -> bytes:
        return b"# nothing\n"


def _get(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("healthy", [True, False])
def test_the_api_answers_health_by_status_code_and_survives_a_failing_handler(healthy: bool) -> None:
    server = serve(FakeView(healthy), "127.0.31.250", 0)
    base = f"http://127.0.31.250:{server.server_address[1]}"
    try:
        code, body = _get(f"{base}/health")
        assert code == (200 if healthy else 503)
        assert json.loads(body)["healthy"] is healthy
        assert _get(f"{base}/status")[0] == 500
        assert _get(f"{base}/metrics") == (200, b"# nothing\n")
        assert _get(f"{base}/nope")[0] == 404
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(urllib.request.Request(f"{base}/health", data=b"{}", method="POST"), timeout=5)
        assert refused.value.code == 501  # nothing that changes state is exposed
    finally:
        server.shutdown()
        server.server_close()


def test_a_crashing_phase_is_counted_and_the_cycle_goes_on(topo: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent(agent_settings(topo, "dc2", "n3"))

    def broken_observe(*_: Any) -> Any:
        raise RuntimeError("observe exploded")

    monkeypatch.setattr(daemon, "observe", broken_observe)
    assert agent.cycle() == "observation failed (see above): changing nothing this cycle"
    obs = Observation(dc="dc2", record=None, own_dcs_error="unreachable")
    monkeypatch.setattr(daemon, "observe", lambda *_: (obs, None))

    def broken_decide(*_: Any) -> Any:
        raise KeyError("decide exploded")

    monkeypatch.setattr(daemon, "decide", broken_decide)
    assert agent.cycle().startswith("no decision")
    families = {f.name: f for f in text_string_to_metric_families(agent.metrics.text().decode())}
    errors = {s.labels["phase"]: s.value for s in families["fedctl_agent_loop_errors"].samples
              if s.name.endswith("_total")}
    assert errors["observe"] == 1 and errors["decide"] == 1 and errors["sample"] == 0
    assert families["fedctl_agent_cycles"].samples[0].value == 2
