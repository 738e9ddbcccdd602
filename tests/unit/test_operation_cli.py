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


def test_a_postgresql_error_no_step_translated_is_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from federation.cli import validate as validate_module

    def shutting_down(*_args: object, **_kwargs: object) -> None:
        raise psycopg.OperationalError('connection to server at "10.0.0.1", port 5432 failed: FATAL:  the '
                                       "database system is shutting down")

    monkeypatch.setattr(validate_module, "load", shutting_down)
    result = CliRunner().invoke(cli, ["validate", str(TOPOLOGY)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: PostgreSQL: connection to server" in result.output and "fedctl operation show" in result.output
