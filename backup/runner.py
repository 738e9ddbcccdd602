"""The pgBackRest command line, by subprocess: argv built apart from running it, one log line per run.

A `PgBackRestHost` says where and as whom pgBackRest runs: on the repository host, as its pgBackRest user,
with the config `fedctl backup-config` renders there (PGBACKREST_CONFIG) and a working directory.
`host.command(...)` builds a `PgBackRestCommand` (printable in a dry run); `run(command)` runs it without a
shell and turns a failure into `PgBackRestError`, which carries pgBackRest's numeric error code.
Only the `[NNN]` code is used for decisions, never the prose around it.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from federation.errors import FedError, OperationRefused
from federation.os_user import OsUser, as_user, user_env

if TYPE_CHECKING:
    from federation.pgbackrest_layout import PgBackRestConfig
    from federation.topology import Datacenter, Topology

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 600.0
_ERROR_RE = re.compile(r"(?:ERROR|ASSERT): \[(\d{3})\]: (.*)")
_HINT_RE = re.compile(r"^\s*HINT: (.*)")

# pgBackRest's registry (src/build/error/error.yaml): code -> (name, what to do).
KNOWN_ERRORS: dict[int, tuple[str, str]] = {
    26: ("checksum", "a repository file does not match its checksum: that backup is damaged; run "
                     "`fedctl verify-restore` on another set and take a new full backup"),
    27: ("config", "pgBackRest's configuration does not fit this member: check pgbackrest.conf and the "
                   "member's PGBACKREST_* environment (a standby cannot run commands that need the primary)"),
    29: ("format", "a repository file cannot be decoded (damaged compression or encryption): that backup set is "
                   "damaged; verify another set and take a new full backup"),
    38: ("pg-running", "PostgreSQL is running on the target data directory: stop it before restoring"),
    40: ("path-not-empty", "the restore target is not empty: restore with --delta or into an empty directory"),
    44: ("archive-mismatch", "the stanza belongs to another PostgreSQL system or version: check that pg1-path is "
                             "the right cluster; after a major upgrade run `pgbackrest stanza-upgrade`"),
    45: ("archive-duplicate", "a WAL segment with this name but other content is already archived: two clusters "
                              "pushed to one stanza (a rogue primary?); fence it, see docs/backups.md"),
    49: ("host-connect", "pgBackRest could not reach the repository host: check network and repo1-host"),
    50: ("lock-acquire", "another pgBackRest command holds the stanza lock (a backup already running?): wait for "
                         "it and retry; `pgbackrest info` shows whether a backup lock is held"),
    51: ("backup-mismatch", "the backup does not match the database it claims to be from: take a new full backup"),
    55: ("file-missing", "a file is missing from the repository (a WAL segment or backup file was removed): "
                         "run `fedctl check-archive` and take a new full backup"),
    56: ("db-connect", "pgBackRest cannot connect to PostgreSQL: check that it runs and pg1-socket-path/pg1-port"),
    57: ("db-query", "a query pgBackRest sent to PostgreSQL failed: read the PostgreSQL log"),
    58: ("db-mismatch", "PostgreSQL's system identifier or version differs from the stanza's: wrong cluster?"),
    62: ("stop", "`pgbackrest stop` was run for this stanza: run `pgbackrest start` when it is safe"),
    63: ("term", "pgBackRest was terminated by a signal"),
    68: ("archive-command-invalid", "archive_command does not call pgBackRest: set it to `pgbackrest archive-push %p` "
                                    "in the DC's Patroni config (postgresql.parameters)"),
    73: ("path-missing", "a path pgBackRest needs does not exist: check repo1-path and pg1-path"),
    75: ("backup-set-invalid", "there is no usable backup set: take one with `fedctl backup DC --type full`"),
    82: ("archive-timeout", "WAL was not archived in time: archive_command is failing or slow; run "
                            "`fedctl check-archive` and read pg_stat_archiver on the primary"),
    87: ("archive-disabled", "archiving is disabled for this stanza (`pgbackrest stop`): run `pgbackrest start`"),
    103: ("repo-invalid", "no valid repository was found: check repo1-path and that stanza-create ran"),
}
RETRYABLE = frozenset({50})
TLS_REFUSED_HINT = ("a pgBackRest TLS server refused this host's client certificate: the certificate must be signed "
                    "by pgbackrest.tls.ca_file and its common name must be in that server's tls-server-auth (the "
                    "repository host's name for a member's server, a member's name for the repository host's); "
                    "`fedctl backup-config` renders both")


@dataclass(frozen=True)
class PgBackRestHost:
    """Where pgBackRest runs for one member: as `user`, with the member's PGBACKREST_* env, in `cwd`."""

    label: str
    user: OsUser
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    def command(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> PgBackRestCommand:
        return PgBackRestCommand(self, tuple(args), timeout)


@dataclass(frozen=True)
class PgBackRestCommand:
    host: PgBackRestHost
    args: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT

    @property
    def argv(self) -> list[str]:
        """The exact argv run (with the privilege drop when we are not the lab user)."""
        return as_user(self.host.user, ["pgbackrest", *self.args])

    def __str__(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.host.env.items()) if k.startswith("PGBACKREST_"))
        return f"[{self.host.label} as {self.host.user.name}] {env} {shlex.join(['pgbackrest', *self.args])}"


@dataclass(frozen=True)
class RunResult:
    command: PgBackRestCommand
    stdout: str
    stderr: str
    seconds: float


class PgBackRestError(FedError):
    """pgBackRest failed. `code` is its numeric error code (None when it printed none, e.g. a timeout)."""

    def __init__(self, message: str, *, code: int | None, command: PgBackRestCommand | None = None,
                 returncode: int | None = None, hint: str | None = None, output: str = "") -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.command = command
        self.returncode = returncode
        self.output = output

    @property
    def name(self) -> str | None:
        return KNOWN_ERRORS[self.code][0] if self.code in KNOWN_ERRORS else None


def parse_error(output: str) -> tuple[int, str, str | None] | None:
    """(code, message, pgBackRest's own hint) of the first `ERROR: [NNN]: ...` line, or None."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        match = _ERROR_RE.search(line)
        if match:
            hint = next((m.group(1) for m in (_HINT_RE.match(x) for x in lines[i + 1:i + 3]) if m), None)
            return int(match.group(1)), match.group(2).strip(), hint
    return None


def error_from_output(command: PgBackRestCommand, returncode: int, stdout: str, stderr: str) -> PgBackRestError:
    parsed = parse_error(stderr) or parse_error(stdout)
    verb = next((a for a in command.args if not a.startswith("-")), "command")
    if parsed is None:
        tail = (stderr or stdout).strip()[-500:] or "(no output)"
        return PgBackRestError(f"pgbackrest {verb} on {command.host.label} failed with exit code {returncode}: {tail}",
                               code=None, command=command, returncode=returncode, output=stderr + stdout)
    code, message, own_hint = parsed
    name, hint = KNOWN_ERRORS.get(code, (None, None))
    # With several pg hosts, a TLS server refusing our certificate shows only as WARN lines before the error
    # ("unable to find primary cluster"): say what the servers said.
    refused = [line.split("WARN:", 1)[1].strip() for line in (stderr + stdout).splitlines()
               if "WARN:" in line and "access denied" in line]
    if refused and "access denied" not in message:
        message += " (" + "; ".join(refused) + ")"
    if "access denied" in message:
        name, hint = "access-denied", TLS_REFUSED_HINT
    label = f"[{code:03d}{' ' + name if name else ''}]"
    return PgBackRestError(f"pgbackrest {verb} on {command.host.label} failed {label}: {message}", code=code,
                           command=command, returncode=returncode, hint=hint or own_hint, output=stderr + stdout)


def run(command: PgBackRestCommand, *, attempts: int = 1, retry_delay: float = 2.0) -> RunResult:
    """Run `command`; retry up to `attempts` times on retryable codes (a held lock). Raises PgBackRestError."""
    for attempt in range(1, attempts + 1):
        try:
            return _run_once(command)
        except PgBackRestError as exc:
            if exc.code not in RETRYABLE or attempt == attempts:
                raise
            log.info("pgbackrest returned [%03d], retrying in %.1f s (attempt %d of %d)", exc.code, retry_delay,
                     attempt + 1, attempts)
            time.sleep(retry_delay)
    raise AssertionError("unreachable")


def _run_once(command: PgBackRestCommand) -> RunResult:
    host = command.host
    started = time.monotonic()
    # Own session: a timeout kills pgBackRest and its local worker processes together.
    proc = subprocess.Popen(command.argv, env=user_env(host.user, host.env), cwd=host.cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=command.timeout)
    except subprocess.TimeoutExpired:
        terminate(proc)
        log.info("Ran: %r, took: %.3f s, returncode: timeout", command.argv, time.monotonic() - started)
        raise PgBackRestError(f"pgbackrest {' '.join(command.args)} on {host.label} did not finish within "
                              f"{command.timeout:.0f} s and was stopped", code=None, command=command,
                              hint="a lock held by another command, or a hung archive? see `pgbackrest info`") from None
    except BaseException:
        terminate(proc)
        raise
    seconds = time.monotonic() - started
    log.info("Ran: %r, took: %.3f s, returncode: %s", command.argv, seconds, proc.returncode)
    if proc.returncode != 0:
        raise error_from_output(command, proc.returncode, stdout, stderr)
    return RunResult(command, stdout, stderr, seconds)


def terminate(proc: subprocess.Popen[str], grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it after `grace` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def repo_host_runner(section: PgBackRestConfig) -> PgBackRestHost:
    """pgBackRest on the repository host, as its pgBackRest user, with the config `fedctl backup-config` writes."""
    repo = section.repo_host
    assert repo is not None
    user = OsUser.named(repo.user) if repo.user else OsUser.current()
    return PgBackRestHost(f"repository host {repo.address}", user,
                          {"PGBACKREST_CONFIG": repo.config, "PGBACKREST_STANZA": section.stanza},
                          Path(repo.config).parent)


def repository_section(topo: Topology, dc: Datacenter) -> PgBackRestConfig:
    """The pgbackrest section of `dc` in the repository-host layout; refuses without a repository host."""
    section = topo.pgbackrest_for(dc)
    if section is None:
        raise OperationRefused(f"{dc.name} has no pgbackrest section in {topo.source}: there is no repository "
                               "to back up to or restore from", hint="add one (docs/backups.md)")
    if section.repo_host is None:
        raise OperationRefused(
            f"{dc.name}'s pgbackrest section names no repository host: fedctl runs pgBackRest there (the "
            "repository is local to it; the database hosts are reached through their pgBackRest TLS servers)",
            hint="add pgbackrest.repo_host (address, config, user, scratch_dir) and pgbackrest.tls; "
                 "docs/backups.md shows the layout and how to set it up on running clusters")
    return section


def stanza_host(topo: Topology, dc: Datacenter) -> PgBackRestHost:
    """The repository host, with its config rendered afresh so its pgN-* hosts are the primary DC's members
    as they are now; every command on the shared stanza runs there."""
    from backup.host_render import render_repo_host, write_config

    host = repo_host_runner(repository_section(topo, dc))
    text, _notes, path = render_repo_host(topo)
    write_config(path, text, owner=host.user)
    return host
