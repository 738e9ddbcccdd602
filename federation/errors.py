"""Error kinds shared by the library and the CLI.

Every error a user can cause or meet carries an exit code, following patronictl habits:
1 for a failed check or operation, 2 for bad usage or bad input.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class FedError(Exception):
    """Base of every error fedctl reports to a user. The message says what is wrong and what to do."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class BadInput(FedError):
    """The user gave something we cannot act on: a broken file, an unknown DC, a wrong option."""

    exit_code = EXIT_BAD_INPUT


class TopologyError(BadInput):
    """A topology file failed to load or validate. Holds one line per problem."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid topology {path}:\n{lines}")


class DCSError(FedError):
    """A DCS (etcd or ZooKeeper) could not be reached or answered with an error."""


class OperationRefused(FedError):
    """A precondition of an operation does not hold; nothing was changed."""


class OperationFailed(FedError):
    """An operation failed part-way; the message says in which state it left the federation."""


class LabError(FedError):
    """The local lab could not be started, stopped or inspected."""
