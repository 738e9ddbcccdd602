"""Structured (logfmt) log lines for the agent: `time=... level=INFO dc=dc2 member=n3 logger=agent msg="..."`.

One line per record, so journald and log shippers keep each event whole; tracebacks go into `exc=`.
Messages never carry secrets: the agent logs names, LSNs and addresses, never passwords or DSNs.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\t'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    def __init__(self, **static: str) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        fields = {"time": stamp, "level": record.levelname, **self.static, "logger": record.name,
                  "msg": record.getMessage()}
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{k}={_quote(str(v))}" for k, v in fields.items())


def configure(level: str = "INFO", **static: str) -> None:
    """Send every log record to stderr as logfmt, with `static` fields (dc, member) on each line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(**static))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # urllib3 and kazoo are chatty at INFO about retries the agent already reports itself.
    for noisy in ("urllib3", "kazoo", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kazoo warns at every reconnect attempt (about once a second); the agent reports the outage itself.
    logging.getLogger("federation.dcs.kazoo").setLevel(logging.ERROR)
