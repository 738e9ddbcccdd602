"""Field rules that the topology's models and the federation store's section share (pure, no I/O)."""

from __future__ import annotations

import re
from typing import Any

NAMESPACE_HELP = "namespace must look like /name/ (letters, digits, '_', '.', '-')"


def not_bool(value: Any) -> Any:
    # pydantic reads True as 1, and YAML reads a bare `yes`/`on` as True.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not the YAML boolean {str(value).lower()}")
    return value


def dcs_namespace(value: str) -> str:
    """A DCS namespace with its trailing slash (`/fed` -> `/fed/`); ValueError when it is not /name/..."""
    value = value if value.endswith("/") else value + "/"
    if not re.fullmatch(r"/([A-Za-z0-9_.-]+/)*", value):
        raise ValueError(NAMESPACE_HELP)
    return value
