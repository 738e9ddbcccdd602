"""GET /controldata when the agent cannot read its member's pg_control: 503 with the reason and what to do
(agent/control_report.py; the real read: tests/integration/test_control_data.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.api import route
from agent.control_report import ControlUnknown, control_answer, postgres_paths
from agent.settings import agent_settings
from federation.topology import load_topology

TOPOLOGY = Path(__file__).parents[1] / "integration" / "topologies" / "two-dc.yaml"


class View:
    def __init__(self, settings: object) -> None:
        self.settings = settings

    def control_data(self) -> dict[str, object]:
        return control_answer(self.settings)  # type: ignore[arg-type]


def answer(patroni_config: str | None) -> tuple[int, dict[str, object]]:
    settings = agent_settings(load_topology(TOPOLOGY), "dc1", "n1", patroni_config=patroni_config)
    got = route(View(settings), None, "GET", "/controldata")  # type: ignore[arg-type]
    return got.code, json.loads(got.body)


def test_without_patroni_config_it_answers_503_naming_the_option() -> None:
    code, body = answer(None)
    assert code == 503 and "--patroni-config" in str(body["error"])


def test_a_patroni_config_without_data_dir_is_named(tmp_path: Path) -> None:
    config = tmp_path / "patroni.yml"
    config.write_text("postgresql:\n  bin_dir: /usr/lib/postgresql/15/bin\n")
    code, body = answer(str(config))
    assert code == 503 and body["error"] == f"{config} has no postgresql.data_dir"


def test_a_data_dir_that_is_no_cluster_answers_pg_controldatas_own_message(tmp_path: Path) -> None:
    config = tmp_path / "patroni.yml"
    config.write_text(f"postgresql:\n  data_dir: {tmp_path / 'nothing'}\n  bin_dir: /usr/lib/postgresql/15/bin\n")
    code, body = answer(str(config))
    assert code == 503 and "pg_controldata -D" in str(body["error"]) and "exited 1" in str(body["error"])


def test_a_missing_program_is_named(tmp_path: Path) -> None:
    config = tmp_path / "patroni.yml"
    config.write_text(f"postgresql:\n  data_dir: {tmp_path}\n  bin_dir: {tmp_path / 'bin'}\n")
    with pytest.raises(ControlUnknown, match=r"cannot run .*bin/pg_controldata"):
        control_answer(agent_settings(load_topology(TOPOLOGY), "dc1", "n1", patroni_config=str(config)))
    assert postgres_paths(str(config)) == (str(tmp_path), str(tmp_path / "bin"))
