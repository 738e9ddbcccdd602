"""The integration suite's ordering: each unparametrised session lab's tests side by side."""

from __future__ import annotations

from typing import Any, cast

import pytest

from tests.integration.conftest import group_lab_users


class FakeItem:
    def __init__(self, name: str, *fixtures: str) -> None:
        self.name, self.fixturenames = name, list(fixtures)

    def __repr__(self) -> str:
        return self.name


def names(items: list[Any]) -> list[str]:
    return [i.name for i in items]


def test_a_later_user_of_a_lab_moves_up_behind_its_first_user_and_others_keep_their_order() -> None:
    items = [FakeItem("a"), FakeItem("b1", "backup_lab"), FakeItem("b2", "backup_lab"), FakeItem("t1", "two_dc_lab"),
             FakeItem("c"), FakeItem("j", "backup_lab", "tmp_path"), FakeItem("d")]
    grouped = group_lab_users(cast(list[pytest.Item], items), ("backup_lab",))
    assert names(grouped) == ["a", "b1", "b2", "j", "t1", "c", "d"]
    assert sorted(map(id, grouped)) == sorted(map(id, items)), "no test lost or doubled"


def test_a_test_that_also_takes_the_two_dc_lab_stays_and_a_single_user_changes_nothing() -> None:
    items = [FakeItem("b1", "backup_lab"), FakeItem("t1", "two_dc_lab"), FakeItem("bt", "backup_lab", "two_dc_lab"),
             FakeItem("p", "partition_lab")]
    assert names(group_lab_users(cast(list[pytest.Item], items), ("backup_lab", "partition_lab"))) == [
        "b1", "t1", "bt", "p"]
