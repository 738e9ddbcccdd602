"""GET /primary's status codes: 200 passes, 404 drains (HAProxy's disable-on-404: out at the next check), 503 fails
(out after `fall` checks). The verdicts themselves: tests/unit/test_entrypoints.py; HAProxy's reaction to
each code: tests/integration/test_haproxy_checks.py."""

from __future__ import annotations

import json

import pytest

from agent.api import route
from agent.primary_check import Verdict


class Check:
    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict

    def answer(self) -> Verdict:
        return self.verdict


@pytest.mark.parametrize(("verdict", "code"), [
    (Verdict(True, "n1 is the primary of dc1", 3), 200),
    (Verdict(False, "n1 is Patroni's primary but its PostgreSQL is stopping: draining", 3, draining=True), 404),
    (Verdict(False, "n1 is not Patroni's primary (role demoted)", 3), 503),
])
def test_each_verdict_gets_the_code_haproxy_acts_on(verdict: Verdict, code: int) -> None:
    got = route(object(), Check(verdict), "GET", "/primary")  # type: ignore[arg-type]
    body = json.loads(got.body)
    assert got.code == code
    assert body == {"primary": verdict.ok, "reason": verdict.reason, "epoch": 3, "draining": verdict.draining}
