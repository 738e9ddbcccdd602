"""What the agent says about its member's promotion gate: GET /gate and `fedctl_agent_gate_installed`.

The verdict (federation.gate_install) is read from the member's Patroni config at most once a second, so a
burst of status calls and scrapes costs one read, and an edit of patroni.yml shows within a second.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.settings import AgentSettings
from federation.gate_install import GateCheck, GateState, check_patroni_config, suggested_line

log = logging.getLogger("agent.gate")
MAX_AGE = 1.0


def fedctl_program() -> str:
    """The fedctl this agent runs as (Patroni's PATH rarely holds a virtualenv's bin), else plain `fedctl`."""
    if os.path.basename(sys.argv[0]) == "fedctl":
        return os.path.abspath(sys.argv[0])
    return shutil.which("fedctl") or "fedctl"


class GateReport:
    def __init__(self, settings: AgentSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        source = settings.topo.source
        topology = os.path.abspath(source) if source != "<memory>" else "/etc/fedctl/topology.yaml"
        self.line = suggested_line(fedctl_program(), topology, settings.dc.name)
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, GateCheck] | None = None
        self._logged: GateState | None = None

    def check(self) -> GateCheck:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._cached[0] >= MAX_AGE:
                verdict = check_patroni_config(self.settings.patroni_config, self.settings.dc.name, self.line)
                self._cached = (now, verdict)
                self._log_change(verdict)
            return self._cached[1]

    def _log_change(self, verdict: GateCheck) -> None:
        if verdict.state is self._logged:
            return
        self._logged = verdict.state
        if verdict.installed:
            log.info("promotion gate installed: %s", verdict.reason)
        else:
            log.warning("promotion gate %s: %s%s", verdict.state.value, verdict.reason,
                        f"; set in its postgresql section: {verdict.line}" if verdict.line else "")

    def answer(self) -> dict[str, Any]:
        """GET /gate: who answers (so a caller can tell a misplaced agent) and its member's verdict."""
        return {"dc": self.settings.dc.name, "member": self.settings.member.name,
                "gate": self.check().to_json_dict()}

    def metric(self) -> float:
        """1 installed, 0 missing or for another DC, NaN unknown."""
        verdict = self.check()
        if verdict.state is GateState.UNKNOWN:
            return math.nan
        return 1.0 if verdict.installed else 0.0
