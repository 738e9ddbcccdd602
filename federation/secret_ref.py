"""References to secrets (passwords) in a topology file: by environment variable, by file, or inline.

A reference is safe to print: `describe()` names where the secret lives, never the secret, and an
inline value is a `SecretStr`, so it stays masked in repr, model dumps and JSON.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from federation.errors import BadInput
from federation.field_rules import no_control


class SecretRef(BaseModel):
    """A secret given by environment variable, by file, or (discouraged) inline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str | None = Field(default=None, min_length=1)
    file: str | None = Field(default=None, min_length=1)
    value: SecretStr | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'env', 'file' or 'value'")
        return self

    @field_validator("file", "env")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        return None if value is None else no_control(value)

    @property
    def file_path(self) -> Path | None:
        return Path(os.path.expandvars(os.path.expanduser(self.file))) if self.file else None

    def describe(self) -> str:
        if self.env:
            return f"environment variable {self.env}"
        if self.file:
            return f"file {self.file}"
        return "inline value"

    def resolve(self) -> str:
        """Read the secret now. Raises BadInput naming the reference, never the secret."""
        if self.value is not None:
            found = self.value.get_secret_value()
        elif self.env is not None:
            env = os.environ.get(self.env)
            if env is None:
                raise BadInput(f"secret {self.describe()} is not set", hint=f"export {self.env}=...")
            found = env
        else:
            found = self._read_file()
        if not found:
            raise BadInput(f"secret {self.describe()} is empty")
        return found

    def _read_file(self) -> str:
        path = self.file_path
        assert path is not None
        if (why := secret_file_problem(path)) is not None:
            raise BadInput(why, hint=f"chmod 600 {path} (640 for a group that needs it), owned by this user or root")
        try:
            # Only the line ending goes: a password may legitimately start or end with spaces.
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise BadInput(f"cannot read secret {self.describe()}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise BadInput(f"secret {self.describe()} is not UTF-8 text") from None


def secret_file_problem(path: Path) -> str | None:
    """Why `path` may not hold a secret (loose mode, foreign owner, not a file); None when it may, or is absent."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot check secret file {path}: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return f"secret file {path} is not a regular file"
    if info.st_uid not in (os.geteuid(), 0):
        return (f"secret file {path} belongs to uid {info.st_uid}, not to this user or root: someone else could "
                "change the password fedctl sends")
    loose = stat.S_IMODE(info.st_mode) & (stat.S_IRWXO | stat.S_IWGRP | stat.S_IXGRP)
    if loose:
        return (f"secret file {path} has mode {stat.S_IMODE(info.st_mode):04o}: others may not read or write it, "
                "nor its group write it (chmod 600, or 640 for a group that needs it)")
    return None
