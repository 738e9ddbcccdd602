"""Where the lab user finds Patroni, fedctl-gate and the agent: the project's .venv when it can reach it.

PostgreSQL refuses to run as root, so Patroni, the promotion gate and the agents run as the
unprivileged lab user. When the project (and its .venv) sit somewhere that user cannot traverse —
say a clone under /root, which is mode 0700 — the lab installs a runtime copy of the project with
Patroni into /var/lib/pg-federation/runtime-venv, once per change of the project's sources.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from federation.errors import LabError
from federation.lab.processes import LabUser

VENV_BIN = Path(sys.executable).parent
PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_VENV = Path(os.environ.get("FEDCTL_RUNTIME_VENV", "/var/lib/pg-federation/runtime-venv"))


def reachable_by(path: Path, user: LabUser) -> bool:
    """Can `user` traverse every directory down to `path` (and read it)?"""
    if user.is_self:
        return True
    groups = set(os.getgrouplist(user.name, user.gid))
    for part in [*reversed(path.parents), path]:
        try:
            st = part.stat()
        except OSError:
            return False
        if st.st_uid == user.uid:
            need = stat.S_IXUSR
        elif st.st_gid in groups:
            need = stat.S_IXGRP
        else:
            need = stat.S_IXOTH
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & need:
            return False
    return True


def _source_hash() -> str:
    digest = hashlib.sha256()
    for top in ("federation", "agent", "backup"):
        for file in sorted((PROJECT_ROOT / top).rglob("*.py")):
            digest.update(str(file.relative_to(PROJECT_ROOT)).encode())
            digest.update(file.read_bytes())
    digest.update((PROJECT_ROOT / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def runtime_bin(user: LabUser) -> Path:
    """The bin directory whose patroni, fedctl and fedctl-gate the lab user runs."""
    if reachable_by(VENV_BIN / "python", user) and reachable_by(PROJECT_ROOT / "federation", user):
        return VENV_BIN
    wanted = _source_hash()
    stamp = RUNTIME_VENV / ".source-hash"
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return RUNTIME_VENV / "bin"
    print(f"The lab user {user.name} cannot reach {PROJECT_ROOT}: installing a runtime copy into {RUNTIME_VENV} "
          "(once per source change)", file=sys.stderr, flush=True)
    shutil.rmtree(RUNTIME_VENV, ignore_errors=True)
    RUNTIME_VENV.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    try:
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(RUNTIME_VENV)], check=True, capture_output=True)
        subprocess.run([str(RUNTIME_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        f"{PROJECT_ROOT}[lab]"], check=True, capture_output=True, text=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", "") or ""
        raise LabError(f"could not install the lab runtime into {RUNTIME_VENV}: {output.strip()[-1500:]}",
                       hint="clone the project somewhere the lab user can read (e.g. under /opt or /work)") from exc
    stamp.write_text(wanted + "\n")
    return RUNTIME_VENV / "bin"
