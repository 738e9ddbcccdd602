"""The HTML view on hand-built statuses: structure (boxes, markers, arrows, sparklines, lists), never exact HTML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from html.parser import HTMLParser

from federation.status_html import render_html, tiers
from federation.status_model import FederationStatus
from federation.status_view_inputs import LagHistory, PastOperation, RecentJobs, past_operations
from tests.unit.status_views import (
    HISTORY,
    JOBS,
    PENDING_RECORD,
    STORE_WITH_LEASE,
    dc,
    federation,
    three_dc_cascade,
    two_dc,
)


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Element | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element] = []
        self.text: list[str] = []

    def all_text(self) -> str:
        return "".join(self.text) + "".join(c.all_text() for c in self.children)

    def find(self, tag: str | None = None, **attrs: str) -> list[Element]:
        found = [self] if self.matches(tag, attrs) else []
        for child in self.children:
            found.extend(child.find(tag, **attrs))
        return found

    def matches(self, tag: str | None, attrs: dict[str, str]) -> bool:
        if tag is not None and self.tag != tag:
            return False
        return all(self.attrs.get(k.replace("_", "-")) == v if v != "*" else k.replace("_", "-") in self.attrs
                   for k, v in attrs.items())


VOID = {"meta", "br", "img", "input", "link", "hr", "circle", "path", "polyline"}


class Tree(HTMLParser):
    """A tolerant DOM of the page; the test fails on an unbalanced tag (the page must be well formed)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {}, None)
        self.open = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs), self.open)
        self.open.children.append(element)
        if tag not in VOID:
            self.open = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open.children.append(Element(tag, dict(attrs), self.open))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.open.tag == tag, f"</{tag}> closes <{self.open.tag}>"
        assert self.open.parent is not None
        self.open = self.open.parent

    def handle_data(self, data: str) -> None:
        self.open.text.append(data)


NO_JOBS = RecentJobs()


def page(status: FederationStatus, history: Sequence[PastOperation] = (), jobs: RecentJobs = NO_JOBS,
         lag: Mapping[str, Sequence[int | None]] | None = None) -> Element:
    tree = Tree()
    tree.feed(render_html(status, list(history), jobs, lag or {}))
    tree.close()
    assert tree.open is tree.root, f"<{tree.open.tag}> left open"
    return tree.root


def test_two_dcs_one_box_each_the_primary_marked_and_one_arrow() -> None:
    root = page(two_dc())
    boxes = root.find("article", data_dc="*")
    assert [b.attrs["data-dc"] for b in boxes] == ["dc1", "dc2"]
    assert [b.attrs["data-dc"] for b in root.find(data_role="primary")] == ["dc1"]
    arrows = root.find("svg", **{"class": "arrow"})
    assert [(a.attrs["data-from"], a.attrs["data-to"]) for a in arrows] == [("dc1", "dc2")]


def test_after_a_switchover_the_marker_moves_and_the_primary_comes_first() -> None:
    root = page(two_dc(primary="dc2", standby="dc1"))
    assert [b.attrs["data-dc"] for b in root.find(data_role="primary")] == ["dc2"]
    assert [b.attrs["data-dc"] for b in root.find("article", data_dc="*")] == ["dc2", "dc1"]
    assert root.find("body")[0].attrs["data-primary-dc"] == "dc2"


def test_a_cascade_is_one_tier_below_its_upstream_with_an_arrow_per_standby_dc() -> None:
    status = three_dc_cascade()
    assert [(depth, [d.name for d in dcs]) for depth, dcs in tiers(status)] == [
        ("0", ["dc1"]), ("1", ["dc2"]), ("2", ["dc3"])]
    root = page(status)
    assert [t.attrs["data-depth"] for t in root.find("div", **{"class": "tier"})] == ["0", "1", "2"]
    arrows = root.find("svg", **{"class": "arrow"})
    standby_dcs = [d for d in status.datacenters if d.role == "standby"]
    assert len(arrows) == len(standby_dcs) == 2
    assert {(a.attrs["data-from"], a.attrs["data-to"]) for a in arrows} == {("dc1", "dc2"), ("dc2", "dc3")}
    for article in root.find("article", data_dc="*"):
        assert len(article.find("tr", data_member="*")) == 2, "each DC's members are listed in its box"


def test_members_show_name_address_role_state_timeline_lsn_and_lag() -> None:
    root = page(two_dc())
    row = root.find("tr", data_member="dc2-n2")[0]
    cells = [c.all_text() for c in row.children]
    assert cells == ["dc2-n2", "127.0.0.1:5433", "replica", "streaming", "3", "0/3000000", "96 B"]
    leader = [c.all_text() for c in root.find("tr", data_member="dc1-n1")[0].children]
    assert leader[2:7] == ["leader", "running", "3", "0/3000060", ""]


def test_the_sparkline_has_one_point_per_known_sample() -> None:
    lag = LagHistory(size=5)
    for value in (0, 512, 4096, None, 2048, 1024, 0):
        lag.add("dc2", value)
    assert lag.samples() == {"dc2": [4096, None, 2048, 1024, 0]}, "the ring keeps the last five"
    root = page(two_dc(), lag=lag.samples())
    (spark,) = root.find("svg", **{"class": "sparkline"})
    assert spark.attrs["data-points"] == "4"
    (polyline,) = spark.find("polyline")
    assert len((polyline.attrs["points"] or "").split()) == 4
    assert root.find("article", data_dc="dc2")[0].find("svg", **{"class": "sparkline"}), "in the standby's box"


def test_without_samples_there_is_no_sparkline() -> None:
    assert page(two_dc()).find("svg", **{"class": "sparkline"}) == []


def test_problems_are_listed_first_and_prominently() -> None:
    sick = dc("dc2", upstream="dc1", problems=("dc2-n2: REST API unreachable (connection refused)",))
    root = page(federation(dc("dc1"), sick, problems=("split brain: nobody",)))
    (section,) = root.find("section", role="alert")
    assert [li.all_text() for li in section.find("li")] == [
        "split brain: nobody", "dc2: dc2-n2: REST API unreachable (connection refused)"]
    main = root.find("main")[0]
    assert main.children[0] is section, "problems come before the DCs"
    assert root.find("body")[0].attrs["data-healthy"] == "false"


def test_a_healthy_federation_says_so() -> None:
    root = page(two_dc())
    assert "No problems." in root.all_text()
    assert root.find("body")[0].attrs["data-healthy"] == "true"


def test_pending_operation_its_step_the_lease_history_and_jobs() -> None:
    status = replace(two_dc(), extra={"federation_record": PENDING_RECORD, "federation_store": STORE_WITH_LEASE})
    root = page(status, history=past_operations(status), jobs=JOBS)
    (pending,) = root.find("div", **{"class": "pending"})
    assert (pending.attrs["data-operation"], pending.attrs["data-step"]) == ("switchover-dc", "demote-source")
    assert "(3 of 5)" in pending.all_text()
    assert [li.all_text() for li in pending.find("li", aria_current="step")] == ["demote-source"]
    assert root.find("strong", data_lease_holder="dc1")
    assert [r.attrs["data-operation"] for r in root.find("tr", data_operation="*")] == ["switchover-dc"]
    assert [r.attrs["data-job"] for r in root.find("tr", data_job="*")] == ["nightly-backup", "verify"]
    assert "Not read: dc3: no answer within 2 s" in root.all_text()


def test_past_operations_come_from_the_record_newest_first() -> None:
    older = PastOperation(epoch=5, time="t5", operation="promote-dc", source="dc1", target="dc2", outcome="done")
    root = page(two_dc(), history=[older, *HISTORY])
    assert [r.attrs["data-operation"] for r in root.find("tr", data_operation="*")] == ["switchover-dc", "promote-dc"]


def test_no_store_and_no_record_are_said_plainly() -> None:
    text = page(two_dc()).all_text()
    assert "no federation store" in text and "No federation record yet" in text and "No operation recorded" in text


EVIL = "<script>alert('x')</script>"


def test_names_and_errors_from_yaml_and_the_network_are_escaped() -> None:
    member = replace(two_dc().datacenters[0].members[0], name=f"n{EVIL}", error=f"refused {EVIL}",
                     reachable=False)
    evil_dc = dc(f"dc{EVIL}", members=(member,), problems=(f"{member.name}: REST API unreachable ({EVIL})",))
    status = federation(evil_dc, dc("dc2", upstream=f"dc{EVIL}"), name=f"fed{EVIL}",
                        problems=(f"the store says {EVIL}",))
    jobs = RecentJobs(runs=(replace(JOBS.runs[0], job=EVIL, summary=EVIL),), unread=(EVIL,))
    history = [replace(HISTORY[0], target=EVIL)]
    html = render_html(status, history, jobs, {"dc2": [1, 2]})
    assert "<script>" not in html.replace("<script>(function", ""), "only the page's own script tag"
    assert html.count("<script") == 1
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    root = page(status, history, jobs, {"dc2": [1, 2]})
    assert root.find("article", data_dc=f"dc{EVIL}"), "the attribute holds the real name, escaped in the markup"
    assert root.find(data_role="primary")[0].attrs["data-dc"] == f"dc{EVIL}"
    assert root.find("svg", data_to="dc2")[0].attrs["data-from"] == f"dc{EVIL}"


def test_the_page_is_self_contained_and_refreshes_itself() -> None:
    html = render_html(two_dc(), [], RecentJobs(), {})
    root = page(two_dc())
    metas = {m.attrs.get("http-equiv"): m.attrs.get("content") for m in root.find("meta")}
    assert metas["refresh"] == "5"
    assert "default-src 'none'" in (metas["Content-Security-Policy"] or "")
    assert root.find("html")[0].attrs["lang"] == "en"
    for external in ("http://", "https://", "src=", "<link", "@import"):
        assert external not in html.replace('xmlns="http://www.w3.org/2000/svg"', ""), external


def test_a_dc_whose_chain_reaches_no_primary_is_shown_apart() -> None:
    lost = dc("dc3", upstream="dc9")
    unknown = dc("dc4", role="unknown", leader=None, members=())
    status = federation(dc("dc1"), lost, unknown)
    assert [(depth, [d.name for d in dcs]) for depth, dcs in tiers(status)] == [
        ("0", ["dc1"]), ("unplaced", ["dc3", "dc4"])]
    root = page(status)
    assert len(root.find("article", data_dc="*")) == 3
    assert "No members known." in root.find("article", data_dc="dc4")[0].all_text()


def test_the_lag_ring_samples_standby_dcs_and_skips_those_sampled_elsewhere() -> None:
    lag = LagHistory()
    lag.add_status(three_dc_cascade(), skip=("dc3",))
    assert lag.samples() == {"dc2": [2048]}


def test_entrypoint_followers_each_get_a_line_and_a_stale_or_blocked_one_is_marked() -> None:
    from federation.entrypoint_registry import FollowerReport, FollowerState
    from federation.store_status import follower_json

    now = 1_800_000_000.0
    reports = [FollowerReport(id="pgb-a", pgbouncer="10.0.0.5:6432", target="dc1/n1", writable=True, heartbeat=now),
               FollowerReport(id="pgb-b", pgbouncer="10.0.0.6:6432", state=FollowerState.PAUSING, operation="op-1",
                              blocking=("app@10.0.0.9:41000",), paused_at=now - 3, heartbeat=now),
               FollowerReport(id=f"pgb-{EVIL}", pgbouncer="10.0.0.7:6432", heartbeat=now - 60)]
    store = {**STORE_WITH_LEASE, "entrypoint_followers": [follower_json(r, now) for r in reports]}
    root = page(replace(two_dc(), extra={"federation_store": store}))
    items = {li.attrs["data-follower"]: li for li in root.find("li", data_follower="*")}
    assert list(items) == ["pgb-a", "pgb-b", f"pgb-{EVIL}"]
    assert items["pgb-a"].attrs["class"] == "status-ok" and "pointing at dc1/n1" in items["pgb-a"].all_text()
    assert items["pgb-b"].attrs["data-state"] == "pausing" and items["pgb-b"].attrs["class"] == "status-bad"
    assert "PAUSE waits for app@10.0.0.9:41000" in items["pgb-b"].all_text()
    assert items[f"pgb-{EVIL}"].attrs["class"] == "status-bad" and "last heard 60 s ago" in items[
        f"pgb-{EVIL}"].all_text()


def test_without_followers_there_is_no_followers_panel() -> None:
    for store in (None, STORE_WITH_LEASE, {**STORE_WITH_LEASE, "entrypoint_followers": []}):
        root = page(replace(two_dc(), extra={"federation_store": store} if store else {}))
        assert root.find("h2"), "the page has its other panels"
        assert not root.find("h2", id="followers-title")
