"""The HTML view on the real two-DC lab: after `fedctl switchover-dc dc2`, the agents' `GET /` and
`fedctl status --format html -o FILE` both put the primary marker on dc2, as headless Chromium sees the page.

The screenshots stay under pytest's basetemp (their paths are printed) for a human to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.headless_chromium import chromium_binary, dump_dom, primary_dcs, read_png, screenshot
from tests.integration.labkit import LabHandle, agent_get, eventually, fedctl

pytestmark = pytest.mark.integration


def _agent_page(lab: LabHandle) -> bytes | None:
    """dc1's first agent's page once it shows dc2 as the primary DC (the page is a scan at most 2 s old)."""
    member = lab.dc("dc1").members[0]
    code, body = agent_get(member, "/")
    if code != 200 or b"<!DOCTYPE html>" not in body:
        return None
    return body if primary_dcs(body.decode()) == ["dc2"] else None


def _check_in_chromium(page: Path, directory: Path, what: str) -> None:
    dom = dump_dom(page.resolve().as_uri(), directory / f"profile-{what}-dom")
    assert 'data-view-ready="yes"' in dom, f"{what}: the page's script ran"
    assert primary_dcs(dom) == ["dc2"], f"{what}: the primary marker is on dc2"
    shot = screenshot(page, directory / f"{what}.png", directory / f"profile-{what}-shot")
    print(f"screenshot of {what}: {shot}")
    assert len(read_png(shot.read_bytes()).sample()) >= 4, f"{what}: the screenshot shows something"


@pytest.mark.timeout(420)
def test_after_a_switchover_the_view_marks_dc2_primary(fresh_two_dc: LabHandle,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    chromium_binary()
    lab = fresh_two_dc
    directory = tmp_path_factory.mktemp("html-view-lab")
    done = fedctl(lab, "switchover-dc", "dc2", "--yes")
    assert done.returncode == 0, f"switchover-dc dc2 failed:\n{done.stdout}\n{done.stderr}"

    agent_page = directory / "agent-view.html"
    agent_page.write_bytes(eventually("dc1's agent's page to show dc2 as the primary DC", lambda: _agent_page(lab),
                                      timeout=60, interval=1.0))
    _check_in_chromium(agent_page, directory, "agent-view")

    cli_page = directory / "status-view.html"
    status = fedctl(lab, "status", "--format", "html", "-o", str(cli_page), timeout=60)
    assert "Traceback" not in status.stderr, status.stderr
    assert cli_page.read_text().startswith("<!DOCTYPE html>"), status.stderr
    _check_in_chromium(cli_page, directory, "status-view")
    assert "switchover-dc" in cli_page.read_text(), "the last operations list the switchover"
