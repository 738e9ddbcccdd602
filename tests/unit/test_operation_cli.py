"""The operation commands refuse to run unattended without --yes, before touching anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from federation.cli import cli

TOPOLOGY = Path(__file__).parents[1] / "integration" / "topologies" / "two-dc.yaml"


@pytest.mark.parametrize("argv", [["switchover-dc", "dc2"], ["rejoin-dc", "dc1"], ["operation", "abort"]])
def test_without_yes_and_without_a_terminal_nothing_runs(argv: list[str]) -> None:
    out = CliRunner().invoke(cli, [*argv, "-t", str(TOPOLOGY)])
    assert out.exit_code == 2, out.output
    assert "add --yes to run it unattended" in out.output
    assert "Traceback" not in out.output
