"""GET /controldata: what pg_controldata says of the agent's member, and where its WAL ends after a clean
shutdown (the demotion token switchover-dc reads while Patroni restarts the demoted leader).

The data directory and the PostgreSQL programs are the member's Patroni configuration's
(postgresql.data_dir and bin_dir), read afresh on every request like pg_control itself: the answer is only
worth anything if it is current.
"""

from __future__ import annotations

from typing import Any

from agent.settings import AgentSettings
from federation.control_data import ControlDataError, read_control_data
from federation.gate_install import ConfigUnreadable, read_patroni_config
from federation.lsn import format_lsn

TIMEOUT = 2.0


class ControlUnknown(Exception):
    """The agent cannot read its member's pg_control: why, and what to do."""


def postgres_paths(patroni_config: str | None) -> tuple[str, str | None]:
    """(data_dir, bin_dir or None) from the member's Patroni configuration."""
    if patroni_config is None:
        raise ControlUnknown("the agent was not given its Patroni configuration: start it with --patroni-config "
                             "PATH to serve /controldata")
    try:
        section = read_patroni_config(patroni_config).get("postgresql")
    except ConfigUnreadable as exc:
        raise ControlUnknown(str(exc)) from None
    if not isinstance(section, dict):
        section = {}
    data_dir, bin_dir = section.get("data_dir"), section.get("bin_dir")
    if not isinstance(data_dir, str) or not data_dir:
        raise ControlUnknown(f"{patroni_config} has no postgresql.data_dir")
    return data_dir, bin_dir if isinstance(bin_dir, str) and bin_dir else None


def control_answer(settings: AgentSettings) -> dict[str, Any]:
    """The member's pg_control: state, checkpoint, timeline, system identifier, and `wal_end` (the end of its
    WAL) when it is a primary shut down cleanly, else null. ControlUnknown when it cannot be read."""
    data_dir, bin_dir = postgres_paths(settings.patroni_config)
    try:
        data = read_control_data(data_dir, bin_dir, timeout=TIMEOUT)
    except ControlDataError as exc:
        raise ControlUnknown(str(exc)) from None
    end = data.wal_end()
    return {"dc": settings.dc.name, "member": settings.member.name, "state": data.state,
            "checkpoint": format_lsn(data.checkpoint), "timeline": data.timeline,
            "system_identifier": data.system_identifier, "wal_end": None if end is None else format_lsn(end)}
