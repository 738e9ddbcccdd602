"""An OS user to run a command as: fedctl started as root drops to it (setpriv, which execs in place), started
as that user runs the command as it is. The lab's unprivileged user and the repository host's pgBackRest
user are both this."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from federation.errors import BadInput


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int
    home: str

    @property
    def is_self(self) -> bool:
        return os.geteuid() == self.uid

    @classmethod
    def current(cls) -> OsUser:
        me = pwd.getpwuid(os.geteuid())
        return cls(me.pw_name, me.pw_uid, me.pw_gid, me.pw_dir)

    @classmethod
    def named(cls, name: str) -> OsUser:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise BadInput(f"there is no OS user {name!r} on this host",
                           hint="create it, or name the user pgBackRest runs as here") from None
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def as_user(user: OsUser, argv: Sequence[str]) -> list[str]:
    """`argv` run as `user`: unchanged when we are that user, else through setpriv (needs root)."""
    if user.is_self:
        return list(argv)
    return ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", *argv]


def user_env(user: OsUser, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for `user` (PATH kept), plus `extra`."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": user.home, "USER": user.name,
           "LOGNAME": user.name, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    env.update(extra or {})
    return env


def chown_tree(path: Path, user: OsUser) -> None:
    """Give `user` everything under `path` (only root can; anyone else owns what it creates already)."""
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.uid, user.gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), user.uid, user.gid)
