"""Integration fixtures: one real lab per topology, shared by the tests of a session.

Tests that change roles (switchover, promote, kill) take `fresh_two_dc`, which rebuilds the lab first
when an earlier test left it changed.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.integration.labkit import LabHandle, assert_nothing_left, bug_lines, keep_lab_evidence, start_lab, stop_lab

# Session labs without parameters: their tests run side by side, so that each lab is parked after its last
# test instead of idling under the tests of other labs (pytest's own order groups the two-DC lab's params).
GROUPED_LABS = ("backup_lab", "three_dc_lab", "partition_lab")


@pytest.hookimpl(trylast=True)  # after pytest's fixture-based reordering
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration (a conftest's `pytestmark` marks nothing): `-m "not
    integration"` then runs the unit tests alone. Then bring each grouped lab's tests together."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)
    items[:] = group_lab_users(items, GROUPED_LABS)


def group_lab_users(items: list[pytest.Item], fixtures: tuple[str, ...]) -> list[pytest.Item]:
    """Each fixture's users moved up behind its first user, in their order; a test that also takes the
    parametrised two-DC lab stays where pytest put it."""
    ordered = list(items)
    for fixture in fixtures:
        users = [i for i in ordered if fixture in getattr(i, "fixturenames", ())
                 and "two_dc_lab" not in getattr(i, "fixturenames", ())]
        if len(users) < 2:
            continue
        first = ordered.index(users[0])
        chosen = set(map(id, users))
        rest = [i for i in ordered if id(i) not in chosen]
        ordered = rest[:first] + users + rest[first:]
    return ordered


FAILED = pytest.StashKey[bool]()
# The session's labs that are up, by (fixture, param): an idle lab still costs about 0.4 of a core (Patroni
# loops, etcd, agents, health checks), so a lab no later test needs is stopped before the next test starts.
RUNNING: dict[tuple[str, str | None], LabHandle] = {}


def _needs(item: pytest.Item, fixture: str, param: str | None) -> bool:
    if fixture not in getattr(item, "fixturenames", ()):
        return False
    callspec = getattr(item, "callspec", None)
    return param is None or callspec is None or callspec.params.get(fixture, param) == param


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Stop every session lab that neither this test nor any later one uses (its Patroni BUG lines are kept
    for the fixture's own check at the end)."""
    if not RUNNING:
        return
    items = item.session.items
    later = items[items.index(item):]
    for (fixture, param), handle in list(RUNNING.items()):
        if not any(_needs(other, fixture, param) for other in later):
            park(fixture, param, handle)


def park(fixture: str, param: str | None, handle: LabHandle) -> None:
    handle.parked_bugs = bug_lines(handle)  # type: ignore[attr-defined]
    stop_lab(handle)
    RUNNING.pop((fixture, param), None)


def finish(fixture: str, param: str | None, handle: LabHandle) -> list[str]:
    """The fixture's teardown: stop the lab unless it was parked; the BUG lines Patroni logged either way."""
    if (fixture, param) in RUNNING:
        park(fixture, param, handle)
    return list(getattr(handle, "parked_bugs", []))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                            pytest.TestReport]:
    """A failed lab test keeps its lab's logs (the next lab up wipes them) and says where, with the lines that
    tell what Patroni and the agents did; the lab is marked dirty so the next test starts on a fresh one."""
    report = yield
    if report.failed and call.when == "call":
        item.stash[FAILED] = True
        for lab in {id(v): v for v in getattr(item, "funcargs", {}).values() if isinstance(v, LabHandle)}.values():
            lab.dirty = True  # type: ignore[attr-defined]
            report.sections.append(("lab evidence", keep_lab_evidence(lab, item.name)))
    return report


# Every two-DC test runs on etcd in both DCs and on the mixed lab (dc1 etcd, dc2 ZooKeeper).
@pytest.fixture(scope="session", params=["two-dc", "mixed"])
def two_dc_lab(request: pytest.FixtureRequest) -> Iterator[LabHandle]:
    handle = start_lab(request.param)
    handle.name = request.param  # type: ignore[attr-defined]
    handle.dirty = False  # type: ignore[attr-defined]
    RUNNING[("two_dc_lab", request.param)] = handle
    yield handle
    bugs = finish("two_dc_lab", request.param, handle)
    assert not bugs, "Patroni reported a BUG:\n" + "\n".join(bugs)


@pytest.fixture
def fresh_two_dc(two_dc_lab: LabHandle) -> Iterator[LabHandle]:
    """The shared two-DC lab in its initial state; the test may change roles, kill DCs, etc."""
    if getattr(two_dc_lab, "dirty", False):
        fresh = start_lab(two_dc_lab.name)  # type: ignore[attr-defined]
        two_dc_lab.topo = fresh.topo
    two_dc_lab.dirty = True  # type: ignore[attr-defined]
    yield two_dc_lab


@pytest.fixture
def clean_two_dc(two_dc_lab: LabHandle) -> Iterator[LabHandle]:
    """The shared two-DC lab in its initial state, for tests that change nothing."""
    if getattr(two_dc_lab, "dirty", False):
        two_dc_lab.topo = start_lab(two_dc_lab.name).topo  # type: ignore[attr-defined]
        two_dc_lab.dirty = False  # type: ignore[attr-defined]
    yield two_dc_lab


@pytest.fixture(scope="session")
def three_dc_lab() -> Iterator[LabHandle]:
    handle = start_lab("three-dc")
    RUNNING[("three_dc_lab", None)] = handle
    yield handle
    bugs = finish("three_dc_lab", None, handle)
    assert not bugs, "Patroni reported a BUG:\n" + "\n".join(bugs)


@pytest.fixture(scope="session")
def backup_lab() -> Iterator[LabHandle]:
    """The two-DC lab of the backup tests (127.0.21.x / 127.0.22.x, its own pgBackRest repository)."""
    handle = start_lab("backup-two-dc")
    RUNNING[("backup_lab", None)] = handle
    yield handle
    bugs = finish("backup_lab", None, handle)
    assert not bugs, "Patroni reported a BUG:\n" + "\n".join(bugs)


@pytest.fixture(scope="session")
def partition_lab() -> Iterator[LabHandle]:
    """The namespace lab of the partition drills: dc1, dc2 and a witness site, each in its own network."""
    handle = start_lab("partition")
    handle.name = "partition"  # type: ignore[attr-defined]
    handle.dirty = False  # type: ignore[attr-defined]
    RUNNING[("partition_lab", None)] = handle
    yield handle
    bugs = finish("partition_lab", None, handle)
    assert not bugs, "Patroni reported a BUG:\n" + "\n".join(bugs)
    assert_nothing_left(handle)


@pytest.fixture
def clean_partition(partition_lab: LabHandle) -> Iterator[LabHandle]:
    """The partition lab in its initial state, for drills that must change no role."""
    if getattr(partition_lab, "dirty", False):
        partition_lab.topo = start_lab("partition").topo
        partition_lab.dirty = False  # type: ignore[attr-defined]
    yield partition_lab


@pytest.fixture
def fresh_partition(partition_lab: LabHandle) -> Iterator[LabHandle]:
    """The partition lab in its initial state; the drill may promote, fence and rejoin."""
    if getattr(partition_lab, "dirty", False):
        partition_lab.topo = start_lab("partition").topo
    partition_lab.dirty = True  # type: ignore[attr-defined]
    yield partition_lab
