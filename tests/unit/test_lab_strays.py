"""Stray lab processes (their pid file lost) are found by their lab path and program, and only those."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from federation.lab.processes import kill_strays, stray_processes


def _spawn(program: Path, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([str(program), *args], start_new_session=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{proc.pid}/comm").read_text().strip() == program.name:
                break
        except OSError:
            pass
        time.sleep(0.01)
    return proc


def test_a_lab_program_naming_the_lab_dir_is_a_stray_and_is_killed(tmp_path: Path) -> None:
    lab_root = tmp_path / "lab"
    lab_root.mkdir()
    program = tmp_path / "pgbouncer"
    program.write_text("#!/bin/sh\nwhile :; do sleep 1; done\n")
    program.chmod(0o755)
    other = tmp_path / "notalab"
    other.write_text("#!/bin/sh\nwhile :; do sleep 1; done\n")
    other.chmod(0o755)
    stray = _spawn(program, f"{lab_root}/pgbouncer.ini")
    unrelated_program = _spawn(other, f"{lab_root}/pgbouncer.ini")
    elsewhere = _spawn(program, f"{tmp_path}/other-lab/pgbouncer.ini")
    try:
        time.sleep(0.1)
        found = [pid for pid, _ in stray_processes(lab_root, os.geteuid())]
        assert stray.pid in found
        assert unrelated_program.pid not in found and elsewhere.pid not in found
        killed = kill_strays(lab_root, os.geteuid())
        assert any(f"pid {stray.pid}:" in line for line in killed)
        assert stray.wait(timeout=5) == -9
        assert unrelated_program.poll() is None and elsewhere.poll() is None
    finally:
        for proc in (stray, unrelated_program, elsewhere):
            proc.kill()
            proc.wait()


def test_a_managed_process_is_running_from_start_to_stop_and_stop_waits_for_its_exit(tmp_path: Path) -> None:
    import socket

    from federation.lab.processes import LabUser, ManagedProcess

    me = LabUser("me", os.geteuid(), os.getegid(), str(tmp_path))
    listener = tmp_path / "listen.py"
    listener.write_text("import signal, socket, sys, threading, time\n"
                        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                        "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
                        "threading.Thread(target=lambda: time.sleep(60), daemon=True).start()\n"
                        "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.3), sys.exit(0)))\n"
                        "time.sleep(60)\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = ManagedProcess("listener", tmp_path / "l.pid", tmp_path / "l.log", f"{listener} ")
    argv = ["/usr/bin/python3", str(listener), str(port)]
    pid = proc.start(me, argv)
    try:
        assert all(proc.running() for _ in range(200)), "a just-started process must never look dead"
        proc.stop(timeout=10)
        assert not proc.running()
        with socket.socket() as again:  # stop() returned only once its socket was closed
            again.bind(("127.0.0.1", port))
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
