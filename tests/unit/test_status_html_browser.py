"""The HTML view in a real browser: headless Chromium renders a page built from a hand-made status.

It needs no lab, only Debian's chromium (`make install`); missing, the test fails and says so. The screenshot is
kept under pytest's basetemp (its path is printed) for a human to look at.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from federation.status_html import render_html
from federation.status_view_inputs import past_operations
from tests.headless_chromium import WINDOW, chromium_binary, dump_dom, primary_dcs, read_png, screenshot, tags
from tests.unit.status_views import JOBS, PENDING_RECORD, STORE_WITH_LEASE, dc, federation


def _page(directory: Path) -> Path:
    status = federation(dc("dc1", upstream="dc2"), dc("dc2"), dc("dc3", upstream="dc1"),
                        problems=("a problem the operator must see",),
                        extra={"federation_record": {**PENDING_RECORD, "primary_dc": "dc2"},
                               "federation_store": {**STORE_WITH_LEASE, "lease": {**STORE_WITH_LEASE["lease"],
                                                                                   "holder": "dc2"}}})
    status = replace(status, primary_dc="dc2")
    path = directory / "federation-view.html"
    path.write_text(render_html(status, past_operations(status), JOBS, {"dc1": [0, 4096, 1024, 2048, 0],
                                                                         "dc3": [512, 512, 8192]}))
    return path


@pytest.mark.timeout(240)
def test_chromium_renders_the_view_and_its_script_marks_the_primary_dc(tmp_path_factory: pytest.TempPathFactory
                                                                      ) -> None:
    chromium_binary()  # fails first, and plainly, when chromium is missing
    directory = tmp_path_factory.mktemp("html-view")
    page = _page(directory)

    shot = screenshot(page, directory / "federation-view.png", directory / "profile-shot")
    print(f"screenshot of the HTML view: {shot}")
    png = read_png(shot.read_bytes())
    assert (png.width, png.height) == WINDOW
    assert len(png.sample()) >= 4, "the screenshot is (nearly) one colour: nothing was drawn"

    dom = dump_dom(page.resolve().as_uri(), directory / "profile-dom")
    (directory / "federation-view.dom.html").write_text(dom)
    body = next(t for t in tags(dom) if t.name == "body")
    assert body.attrs.get("data-view-ready") == "yes", "the page's own script ran (the CSP let it)"
    assert primary_dcs(dom) == ["dc2"]
    boxes = [t.attrs.get("data-dc") for t in tags(dom) if t.name == "article"]
    assert boxes == ["dc2", "dc1", "dc3"], "the primary DC first, then its standby DCs"
    assert len([t for t in tags(dom) if "arrow" in (t.attrs.get("class") or "")]) == 2
