"""Field rules that the topology's models and the federation store's section share (pure, no I/O)."""

from __future__ import annotations

import re
from typing import Any

NAMESPACE_HELP = "namespace must look like /name/ (letters, digits, '_', '.', '-'; no '.' or '..' part)"


def not_bool(value: Any) -> Any:
    # pydantic reads True as 1, and YAML reads a bare `yes`/`on` as True.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not the YAML boolean {str(value).lower()}")
    return value


def dcs_namespace(value: str) -> str:
    """A DCS namespace with its trailing slash (`/fed` -> `/fed/`); ValueError when it is not /name/..."""
    value = value if value.endswith("/") else value + "/"
    if not re.fullmatch(r"/([A-Za-z0-9_.-]+/)*", value) or any(p in (".", "..") for p in value.split("/")):
        raise ValueError(NAMESPACE_HELP)
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A role name fedctl writes into pg_hba.conf, pgbouncer.ini, a pgpass file and SQL identifiers unquoted.
ROLE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$"
# An OS user name as useradd accepts it.
OS_USER_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"
FEDERATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# Directories a lab must never be (it chowns its directory and `lab down --wipe` deletes it).
SYSTEM_DIRS = frozenset({"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media", "/mnt",
                         "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
                         "/var/lib", "/var/log", "/var/tmp", "/var/run", "/usr/local", "/usr/lib"})


def no_control(value: str) -> str:
    """Refuse control characters (a newline would add lines to a rendered config file)."""
    if _CONTROL.search(value):
        raise ValueError(f"{value!r} contains a control character (newline, tab, ...): not allowed here")
    return value


def federation_name(value: str) -> str:
    """The federation's name names directories and keys: letters, digits, '_', '.', '-', never '..'."""
    if not FEDERATION_NAME.fullmatch(value) or ".." in value:
        raise ValueError(f"{value!r} is not a federation name: 1-63 letters, digits, '_', '.' or '-', starting "
                         "with a letter or digit, without '..'")
    return value


def lab_dir(value: str) -> str:
    """A lab directory: absolute, normalised (no '.' or '..'), and not a system directory such as / or /etc."""
    no_control(value)
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path")
    parts = value.rstrip("/").split("/")[1:]
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{value!r} must be a plain path (no '.', '..' or '//')")
    if (value.rstrip("/") or "/") in SYSTEM_DIRS or len(parts) < 2:
        raise ValueError(f"{value!r} is a system directory: the lab chowns its directory and `lab down --wipe` "
                         "deletes it; use a directory of its own such as /var/tmp/pg-federation/NAME")
    return value


def host_port(host: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets (as URLs, libpq and etcd expect)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def absolute_path(value: str) -> str:
    no_control(value)
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path")
    return value
