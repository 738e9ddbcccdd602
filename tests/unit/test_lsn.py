from __future__ import annotations

import pytest

from federation.lsn import format_lsn, lsn_or_none, parse_lsn


@pytest.mark.parametrize(("text", "value"), [("0/0", 0), ("0/D0000A0", 0xD0000A0), ("1/0", 1 << 32),
                                             ("16/B374D848", (0x16 << 32) | 0xB374D848)])
def test_lsn_text_and_integer_round_trip(text: str, value: int) -> None:
    assert parse_lsn(text) == value
    assert format_lsn(value) == text


@pytest.mark.parametrize("bad", ["", "0", "/1", "1/", "x/1", "0/zz"])
def test_parse_lsn_rejects_what_is_not_an_lsn(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_lsn(bad)


def test_lsn_or_none_reads_what_patroni_writes_and_ignores_the_rest() -> None:
    assert lsn_or_none(100663736) == 100663736
    assert lsn_or_none("0/6000000") == 0x6000000
    assert lsn_or_none("100") == 100
    assert lsn_or_none(None) is None
    assert lsn_or_none(True) is None
    assert lsn_or_none(-5) is None
    assert lsn_or_none("garbage") is None
