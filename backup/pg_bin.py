"""Where the PostgreSQL binaries of a major version are on this host: verify-restore starts a copy of a
backup set with the binaries of the version the stanza says it was taken of, not a fixed path."""

from __future__ import annotations

from pathlib import Path

from federation.errors import OperationFailed

# Debian/Ubuntu (postgresql-common), then the PGDG RPM layout.
PATTERNS = ("/usr/lib/postgresql/{version}/bin", "/usr/pgsql-{version}/bin")


def bin_dir_for(version: str | None, patterns: tuple[str, ...] = PATTERNS) -> Path:
    if not version:
        raise OperationFailed("the stanza does not say which PostgreSQL version its backups are of",
                              hint="check `pgbackrest info`: the stanza's db list is empty")
    major = version.split(".")[0]
    tried = [Path(p.format(version=major)) for p in patterns]
    for candidate in tried:
        if (candidate / "postgres").is_file():
            return candidate
    raise OperationFailed(f"no PostgreSQL {major} binaries on this host (looked in "
                          f"{', '.join(str(t) for t in tried)}): the backup set is of PostgreSQL {major}",
                          hint=f"install PostgreSQL {major}'s server package here (Debian: postgresql-{major})")
