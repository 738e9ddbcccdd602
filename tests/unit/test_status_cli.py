"""`fedctl status` output and exit codes, on fake observations (the observation itself is tested apart)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from federation.cli import status as status_cmd
from federation.cli.app import cli
from federation.status_model import DCStatus, FederationStatus, MemberStatus

TOPOLOGY = Path(__file__).resolve().parents[2] / "topologies" / "lab-two-dc.yaml"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def fake_status(*, dc2_member_down: bool = False) -> FederationStatus:
    dc1 = DCStatus(name="dc1", scope="dc1", role="primary", reachable=True, leader="n1", timeline=2, members=(
        MemberStatus(name="n1", host="127.0.1.11", port=5432, role="leader", state="running", timeline=2,
                     lsn=0x6000000, lag_bytes=0, reachable=True, source="api"),
        MemberStatus(name="n2", host="127.0.1.12", port=5432, role="replica", state="streaming", sync="sync",
                     timeline=2, lsn=0x5FFF000, lag_bytes=4096, reachable=True, source="api")))
    n4 = (MemberStatus(name="n4", host="127.0.2.12", port=5432, role="replica", state="streaming", timeline=2,
                       lsn=0x6000000, lag_bytes=0, reachable=False, source="dcs", error="connection refused")
          if dc2_member_down else
          MemberStatus(name="n4", host="127.0.2.12", port=5432, role="replica", state="streaming", timeline=2,
                       lsn=0x6000000, lag_bytes=0, reachable=True, source="api"))
    dc2 = DCStatus(name="dc2", scope="dc2", role="standby", upstream="dc1", reachable=True, leader="n3",
                   timeline=2, lag_bytes=2 * 1024 * 1024, lag_seconds=1.25, standby_cluster="127.0.1.11:5432",
                   members=(MemberStatus(name="n3", host="127.0.2.11", port=5432, role="standby_leader",
                                         state="streaming", timeline=2, lsn=0x6000000, lag_bytes=0, reachable=True,
                                         source="api"), n4),
                   problems=("n4: REST API unreachable (connection refused)",) if dc2_member_down else ())
    return FederationStatus(federation="lab-two-dc", primary_dc="dc1", datacenters=(dc1, dc2), observed_at=NOW,
                            duration_s=0.05)


@pytest.mark.parametrize(("value", "text"), [(None, ""), (0, "0 B"), (1023, "1023 B"), (1536, "1.5 kB"),
                                             (5 * 1024 ** 3, "5.0 GB")])
def test_human_bytes(value: int | None, text: str) -> None:
    assert status_cmd.human_bytes(value) == text


def test_table_has_one_row_per_member_and_a_footer_per_standby_dc() -> None:
    out = status_cmd.format_status(fake_status(), "table")
    lines = out.splitlines()
    assert lines[0] == "Federation lab-two-dc: primary DC dc1 (healthy)"
    header = next(line for line in lines if line.startswith("| DC "))
    assert [c.strip() for c in header.strip("|").split("|")] == status_cmd.COLUMNS
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| dc")]
    assert rows[0] == ["dc1", "primary", "", "n1", "127.0.1.11:5432", "leader", "running", "2", "0/6000000", "", ""]
    assert rows[1] == ["dc1", "primary", "", "n2", "127.0.1.12:5432", "sync replica", "streaming", "2",
                       "0/5FFF000", "4.0 kB", ""]
    assert rows[2][:7] == ["dc2", "standby", "dc1", "n3", "127.0.2.11:5432", "standby leader", "streaming"]
    assert "dc2 (standby of dc1): 2.0 MB / 1.2 s behind dc1, replicating from 127.0.1.11:5432" in lines
    assert "Problems:" not in out
    assert "maintenance" not in out


def test_maintenance_mode_gets_a_footer_line() -> None:
    from dataclasses import replace

    base = fake_status()
    paused = replace(base, datacenters=(base.datacenters[0], replace(base.datacenters[1], maintenance=True)))
    assert "dc2: maintenance mode (Patroni paused: no automatic failover)" in status_cmd.format_status(paused, "table")


def test_table_shows_unreachable_members_and_lists_problems() -> None:
    out = status_cmd.format_status(fake_status(dc2_member_down=True), "table")
    assert out.splitlines()[0] == "Federation lab-two-dc: primary DC dc1 (1 problem)"
    assert "unreachable (dcs: streaming)" in out
    assert out.rstrip().endswith("Problems:\n  - dc2: n4: REST API unreachable (connection refused)")


def test_json_and_yaml_carry_the_same_data() -> None:
    as_json = json.loads(status_cmd.format_status(fake_status(), "json"))
    as_yaml = yaml.safe_load(status_cmd.format_status(fake_status(), "yaml"))
    assert as_json == as_yaml
    assert as_json["datacenters"][1]["lag_seconds"] == 1.25


def _run(monkeypatch: pytest.MonkeyPatch, status: FederationStatus, *args: str) -> tuple[int, str]:
    import federation.observe

    monkeypatch.setattr(federation.observe, "observe_federation", lambda topo, **kw: status)
    result = CliRunner().invoke(cli, ["status", "-t", str(TOPOLOGY), *args])
    return result.exit_code, result.output


def test_exit_code_is_0_when_healthy_and_1_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _run(monkeypatch, fake_status(), "--format", "json")
    assert code == 0 and json.loads(out)["healthy"] is True
    code, out = _run(monkeypatch, fake_status(dc2_member_down=True))
    assert code == 1 and "Problems:" in out


def test_watch_refreshes_until_interrupted_and_exits_with_the_last_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr("federation.cli.status.time.sleep", sleep)
    monkeypatch.setattr("federation.cli.status.click.clear", lambda: None)
    code, out = _run(monkeypatch, fake_status(dc2_member_down=True), "--watch", "0.5")
    assert code == 1 and out.count("Federation lab-two-dc") == 3 and "every 0.5 s" in out
    assert all(0 <= s <= 0.5 for s in sleeps)


def test_watch_without_a_value_uses_two_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("federation.cli.status.time.sleep", interrupt)
    monkeypatch.setattr("federation.cli.status.click.clear", lambda: None)
    code, out = _run(monkeypatch, fake_status(), "--watch")
    assert code == 0 and "every 2 s" in out


def test_unknown_topology_file_is_bad_input() -> None:
    result = CliRunner().invoke(cli, ["status", "-t", "/nonexistent/topology.yaml"])
    assert result.exit_code == 2 and "does not exist" in result.output


def _no_job_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page reads each DC's job history; here no DCS is asked (a lab may be running at the topology's ports)."""
    from backup.job_report import DcJobs

    monkeypatch.setattr("federation.status_page._read_jobs_of", lambda topo, dc, timeout: DcJobs())


def test_format_html_writes_the_page_to_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_job_reads(monkeypatch)
    out_file = tmp_path / "view.html"
    code, out = _run(monkeypatch, fake_status(dc2_member_down=True), "--format", "html", "-o", str(out_file))
    page = out_file.read_text()
    assert code == 1 and out == ""
    assert page.startswith("<!DOCTYPE html>") and 'data-dc="dc1" data-role="primary"' in page
    assert "n4: REST API unreachable" in page
    assert [p.name for p in tmp_path.iterdir()] == ["view.html"], "no temporary file left beside it"


def test_format_html_without_a_file_prints_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_job_reads(monkeypatch)
    code, out = _run(monkeypatch, fake_status(), "--format", "html")
    assert code == 0 and out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")


def test_format_html_watch_needs_a_file_and_rewrites_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_job_reads(monkeypatch)
    code, out = _run(monkeypatch, fake_status(), "--format", "html", "--watch", "1")
    assert code == 2 and "needs --output FILE" in out
    rounds: list[str] = []

    def sleep(seconds: float) -> None:
        rounds.append((tmp_path / "view.html").read_text())
        if len(rounds) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr("federation.cli.status.time.sleep", sleep)
    code, _out = _run(monkeypatch, fake_status(), "--format", "html", "--watch", "1", "-o", str(tmp_path / "view.html"))
    assert code == 0 and len(rounds) == 3
    assert [r.count("<polyline") for r in rounds] == [1, 1, 1]
    assert 'data-points="3"' in rounds[-1], "the sparkline grows one sample a round"
