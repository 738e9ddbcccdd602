"""The hostile topology corpus (tests/unit/hostile_topologies): `fedctl validate` refuses each hostile file with
exit 2 and a `FILE:LINE: FIELD: ...` line, never a traceback, and accepts each correct one.

The first line of every file says what is expected; make_corpus.py there writes the files."""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from federation.cli import cli
from federation.errors import TopologyError
from federation.topology import load_topology

CORPUS = Path(__file__).resolve().parent / "hostile_topologies"
CASES = sorted(CORPUS.glob("*.yaml"))


def expectation(path: Path) -> tuple[str, str, str]:
    first = path.read_text().splitlines()[0]
    match = re.fullmatch(r"# expect: (accept|reject (\S+): (.*))", first)
    assert match, f"{path.name}: first line must be '# expect: accept' or '# expect: reject FIELD: FRAGMENT'"
    if match.group(1) == "accept":
        return "accept", "", ""
    return "reject", match.group(2), match.group(3)


def test_the_corpus_has_at_least_sixty_cases_of_both_kinds() -> None:
    kinds = [expectation(p)[0] for p in CASES]
    assert len(CASES) >= 60 and kinds.count("accept") >= 5 and kinds.count("reject") >= 55


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_validate_refuses_or_accepts_as_the_case_says(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kind, field, fragment = expectation(path)
    for role in ("SUPERUSER", "REPLICATION", "REWIND"):
        monkeypatch.setenv(f"FEDCTL_HOSTILE_{role}", "secret")
    started = time.monotonic()
    tracemalloc.start()
    result = CliRunner().invoke(cli, ["validate", str(path)])
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{path.name} raised {result.exception!r}"
    assert "Traceback" not in output
    assert time.monotonic() - started < 5 and peak < 200 * 1024**2, "validation must stay cheap"
    if kind == "accept":
        assert result.exit_code == 0, output
        assert "valid" in output
        return
    assert result.exit_code == 2, output
    where = re.escape(f"{path}:") + r"\d+: " + ("" if field == "-" else re.escape(field))
    lines = [line.strip() for line in output.splitlines() if re.match(where, line.strip())]
    assert lines, f"no line starting with {path}:LINE: {field} in:\n{output}"
    assert any(fragment in line for line in lines), f"{fragment!r} not in {lines}"


def test_a_file_bigger_than_any_topology_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("federation: x\n" + "# padding\n" * 120_000)
    with pytest.raises(TopologyError, match=r"big.yaml:1: the file is \d+ bytes, more than a topology needs"):
        load_topology(path)
