"""The one DCS interface fedctl uses, whatever the backend (etcd v3 or ZooKeeper).

Keys are absolute paths such as `/fed/dc1/leader` — the layout Patroni itself uses on both
backends (`<namespace><scope>/{leader,members/<name>,config,status,history,...}`).
Writes are compare-and-set on a `version` (etcd mod_revision, ZooKeeper znode version): a lost race
returns False; only an unreachable or failing DCS raises, always `DCSError`, so callers catch one type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Versioned:
    """A value read from the DCS with the version to compare against when writing it back."""

    key: str
    value: str
    version: int


class DCS(ABC):
    """A connection to one DC's DCS. Backends implement these primitives; use it as a context manager."""

    kind: str = "abstract"

    @abstractmethod
    def get(self, key: str) -> Versioned | None:
        """The value at `key`, or None when it does not exist."""

    @abstractmethod
    def get_prefix(self, prefix: str) -> dict[str, Versioned]:
        """Every key below `prefix` (recursively), keyed by its full path."""

    def read_many(self, prefixes: Sequence[str], keys: Sequence[str]) -> dict[str, Versioned]:
        """Every key below each of `prefixes`, and each of `keys` that exists, keyed by its full path. Backends
        that can read them all in one request override this (etcd: one transaction, one round trip); here
        they are read one after the other."""
        found: dict[str, Versioned] = {}
        for prefix in prefixes:
            found.update(self.get_prefix(prefix))
        for key in keys:
            item = self.get(key)
            if item is not None:
                found[key] = item
        return found

    @abstractmethod
    def create(self, key: str, value: str) -> bool:
        """Write `key` only if it does not exist yet. False when it already exists."""

    @abstractmethod
    def replace(self, key: str, value: str, version: int) -> bool:
        """Write `key` only if its version is still `version`. False when someone else wrote first."""

    @abstractmethod
    def put(self, key: str, value: str) -> None:
        """Unconditional write (for data only this writer owns, such as an LSN sample)."""

    @abstractmethod
    def delete(self, key: str, version: int | None = None) -> bool:
        """Delete `key` (only at `version` when given). False when absent or the version moved."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> DCS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
