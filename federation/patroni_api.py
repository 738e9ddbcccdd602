"""The one client for Patroni's REST API: the standard library's http.client, one overall deadline per request.

`get_patroni` (one member's own view: role, state, WAL positions), `get_cluster`, `get_history`,
`get_config` read; `patch_config` changes the dynamic configuration the way `patronictl edit-config`
does, compare-and-set inside Patroni (HTTP 409 when someone else changed it first). Send config
patches to the DC's leader: on etcd only the member that receives the PATCH wakes at once.
HTTP proxies from the environment are ignored and no redirect is followed: the API is always reached
directly. Each request finishes within its `timeout` in all (federation.http_deadline), even against a
peer that trickles its answer.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from http.client import HTTPException
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from federation.errors import FedError
from federation.http_deadline import DeadlineExceeded, exchange
from federation.lsn import lsn_or_none

# Patroni >= 3 says "primary"; older members still say "master".
PRIMARY_ROLES = frozenset({"primary", "master"})
LEADER_ROLES = PRIMARY_ROLES | {"standby_leader"}

if TYPE_CHECKING:
    from federation.topology import Member, PatroniApi

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

DEFAULT_TIMEOUT = 2.0


class PatroniUnreachable(FedError):
    """The member's REST API did not answer (refused, timed out, or not HTTP)."""


class PatroniAPIError(FedError):
    """The REST API answered with an HTTP error."""

    def __init__(self, message: str, *, status: int, body: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.body = body


class ConfigConflict(PatroniAPIError):
    """PATCH /config lost a compare-and-set race (HTTP 409): the config changed between read and write."""


def base_url(member_or_url: Member | str) -> str:
    """'http://host:port' from a topology member, a member's `api_url` ('.../patroni') or 'host:port'."""
    url = member_or_url if isinstance(member_or_url, str) else member_or_url.api_url
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _who(member_or_url: Member | str) -> str:
    url = base_url(member_or_url)
    return url if isinstance(member_or_url, str) else f"{member_or_url.name} ({url})"


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifies the member's certificate and its address (against the CA of the topology's patroni_api.tls).
    Loaded once per version of the CA file: a CA replaced on disk is used from the next request on."""
    try:
        version = os.stat(ca_file).st_mtime_ns if ca_file else 0
        return _load_context(ca_file, version)
    except (OSError, ssl.SSLError) as exc:
        raise PatroniUnreachable(f"cannot load the Patroni REST API's CA file {ca_file}: {exc}",
                                 hint="fix patroni_api.tls.ca_file in the topology") from None


@functools.lru_cache(maxsize=16)
def _load_context(ca_file: str | None, _version: int) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def _security(member_or_url: Member | str, given: PatroniApi | None) -> PatroniApi | None:
    return given if given is not None or isinstance(member_or_url, str) else member_or_url.api_security


def _request(method: str, member_or_url: Member | str, path: str, body: Any, timeout: float,
             auth: tuple[str, str] | None, security: PatroniApi | None = None) -> bytes:
    """One HTTP request to a member's REST API: the raw body, or the error translated."""
    security = _security(member_or_url, security)
    parts = urlsplit(base_url(member_or_url))
    who = _who(member_or_url)
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if auth is None and method not in SAFE_METHODS and security is not None and security.authentication:
        # Patroni's restapi.authentication guards its unsafe endpoints; its safe ones are open.
        auth = (security.authentication.username, security.authentication.password.resolve())
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    if parts.scheme not in ("http", "https") or parts.hostname is None:
        raise PatroniUnreachable(f"{who} is not an http:// or https:// address of a Patroni REST API")
    if security is not None and security.tls is not None and parts.scheme != "https":
        raise PatroniUnreachable(f"{who} is plain http, but the topology's patroni_api.tls says the members "
                                 "serve https: fedctl does not send its requests unencrypted",
                                 hint="check the member's restapi settings (certfile) or the topology")
    ca_file = security.tls.ca_file if security is not None and security.tls is not None else None
    tls = _tls_context(ca_file) if parts.scheme == "https" else None
    port = parts.port or (443 if tls else 80)
    try:
        status, raw = exchange(parts.hostname, port, method, path, body=data, headers=headers, timeout=timeout,
                               tls=tls)
    except (OSError, HTTPException) as exc:
        raise PatroniUnreachable(f"Patroni REST API of {who} is unreachable: {_describe(exc, timeout)}",
                                 hint="check that Patroni runs on that member and that restapi.listen "
                                      "matches the member's api address in the topology") from None
    if 300 <= status < 400:
        raise PatroniUnreachable(f"{method} {path} on {who} answered with a redirect (HTTP {status}): fedctl never "
                                 "follows one", hint="point the member's api at the Patroni REST API itself")
    if status >= 400:
        raise _http_error(method, path, who, status, raw.decode(errors="replace").strip())
    return raw


def request_json(method: str, member_or_url: Member | str, path: str, body: Any = None, *,
                 timeout: float = DEFAULT_TIMEOUT, auth: tuple[str, str] | None = None,
                 security: PatroniApi | None = None) -> Any:
    """One HTTP request to a member's REST API; returns the decoded JSON body (None when empty). A Member
    brings its topology's patroni_api settings; for a bare URL pass them as `security`."""
    raw = _request(method, member_or_url, path, body, timeout, auth, security)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise PatroniUnreachable(f"{method} {path} on {_who(member_or_url)} did not return JSON: {raw[:80]!r}",
                                 hint="is that address really a Patroni REST API?") from None


def post_action(member_or_url: Member | str, path: str, body: Any, *, timeout: float = DEFAULT_TIMEOUT,
                auth: tuple[str, str] | None = None) -> str:
    """POST /reinitialize, /switchover, /restart...: Patroni answers these in plain text, not JSON."""
    return _request("POST", member_or_url, path, body, timeout, auth).decode(errors="replace")


def _describe(reason: object, timeout: float) -> str:
    if isinstance(reason, DeadlineExceeded):
        return f"no complete answer within {timeout:g} s"
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def _http_error(method: str, path: str, who: str, status: int, text: str) -> PatroniAPIError:
    shown = f": {text[:200]}" if text else ""
    if status == 409 and path == "/config":
        return ConfigConflict(
            f"Patroni {who} refused the config change: the config in the DCS changed between its read and "
            "its write (HTTP 409)", status=status, body=text,
            hint="someone else changed it at the same moment; read the config again, check, and retry")
    if status in (401, 403):
        return PatroniAPIError(f"{method} {path} on {who} was refused: HTTP {status}{shown}", status=status,
                               body=text, hint="the REST API needs credentials (restapi.authentication)")
    if status == 503 and path == "/config":
        return PatroniAPIError(f"{method} {path} on {who} failed: the cluster has no config in its DCS (HTTP 503)",
                               status=status, body=text, hint="check the DC's DCS and `patronictl show-config`")
    return PatroniAPIError(f"{method} {path} on {who} failed: HTTP {status}{shown}", status=status, body=text)


def _expect(kind: type, value: Any, what: str, who: str) -> Any:
    if not isinstance(value, kind):
        raise PatroniUnreachable(f"{what} on {who} returned {type(value).__name__}, expected {kind.__name__}")
    return value


def get_patroni(member_or_url: Member | str, *, timeout: float = DEFAULT_TIMEOUT,
                security: PatroniApi | None = None) -> dict[str, Any]:
    """GET /patroni: the member's own status (role, state, timeline, xlog positions...)."""
    result = request_json("GET", member_or_url, "/patroni", timeout=timeout, security=security)
    return dict(_expect(dict, result, "GET /patroni", _who(member_or_url)))


def patroni_state(member_or_url: Member | str, *, timeout: float = 1.0) -> dict[str, Any] | None:
    """GET /patroni for polling: the body Patroni sends along a 503 (PostgreSQL not running) too, None while
    the REST API does not answer."""
    try:
        return get_patroni(member_or_url, timeout=timeout)
    except PatroniAPIError as exc:
        try:
            body = json.loads(exc.body) if exc.body else None
        except ValueError:
            return None
        return dict(body) if isinstance(body, dict) else None
    except FedError:
        return None


def get_cluster(member_or_url: Member | str, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """GET /cluster: the member's view of its whole cluster (members with role, state, lag)."""
    result = request_json("GET", member_or_url, "/cluster", timeout=timeout)
    return dict(_expect(dict, result, "GET /cluster", _who(member_or_url)))


def get_history(member_or_url: Member | str, *, timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
    """GET /history: [[timeline, switch lsn, reason, timestamp, new leader], ...]."""
    result = request_json("GET", member_or_url, "/history", timeout=timeout)
    return list(_expect(list, result, "GET /history", _who(member_or_url)))


def get_config(member_or_url: Member | str, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """GET /config: the dynamic configuration stored in the DCS."""
    result = request_json("GET", member_or_url, "/config", timeout=timeout)
    return dict(_expect(dict, result, "GET /config", _who(member_or_url)))


def patch_config(member_or_url: Member | str, patch: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT,
                 auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """PATCH /config: merge `patch` into the dynamic config (a None value deletes the key).

    Returns the resulting config. Raises ConfigConflict on a lost race (HTTP 409), PatroniAPIError on
    other HTTP errors and PatroniUnreachable when the API does not answer.
    Example: `patch_config(leader, {"standby_cluster": None})` promotes a standby cluster.
    """
    result = request_json("PATCH", member_or_url, "/config", patch, timeout=timeout, auth=auth)
    return dict(_expect(dict, result, "PATCH /config", _who(member_or_url)))


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _timestamp(value: object) -> datetime | None:
    # Patroni serialises pg_last_xact_replay_timestamp() with str(): '2025-11-25 18:20:01.123456+00:00'.
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True)
class NodeStatus:
    """GET /patroni parsed leniently; any field may be None when Patroni did not report it."""

    state: str | None = None
    role: str | None = None
    timeline: int | None = None
    wal_lsn: int | None = None
    received_lsn: int | None = None
    replayed_lsn: int | None = None
    replayed_at: datetime | None = None
    replay_paused: bool = False
    replication_state: str | None = None
    sync_standby: bool = False
    quorum_standby: bool = False
    pending_restart: bool = False
    cluster_unlocked: bool = False
    maintenance: bool = False
    scope: str | None = None
    name: str | None = None
    system_id: str | None = None

    @property
    def lsn(self) -> int | None:
        """The member's WAL position: flushed on a primary, replayed (what readers see) on a standby."""
        return self.wal_lsn if self.wal_lsn is not None else self.replayed_lsn

    @classmethod
    def from_json(cls, data: Any) -> NodeStatus:
        if not isinstance(data, dict):
            return cls()
        xlog_raw, patroni_raw = data.get("xlog"), data.get("patroni")
        xlog: dict[str, Any] = xlog_raw if isinstance(xlog_raw, dict) else {}
        patroni: dict[str, Any] = patroni_raw if isinstance(patroni_raw, dict) else {}
        return cls(
            state=_text(data.get("state")),
            role=_text(data.get("role")),
            timeline=_int(data.get("timeline")),
            wal_lsn=lsn_or_none(xlog.get("location")),
            received_lsn=lsn_or_none(xlog.get("received_location")),
            replayed_lsn=lsn_or_none(xlog.get("replayed_location")),
            replayed_at=_timestamp(xlog.get("replayed_timestamp")),
            replay_paused=xlog.get("paused") is True,
            replication_state=_text(data.get("replication_state")),
            sync_standby=data.get("sync_standby") is True,
            quorum_standby=data.get("quorum_standby") is True,
            pending_restart=data.get("pending_restart") is True,
            cluster_unlocked=data.get("cluster_unlocked") is True,
            maintenance=data.get("pause") is True,
            scope=_text(patroni.get("scope")),
            name=_text(patroni.get("name")),
            system_id=_text(data.get("database_system_identifier")),
        )
