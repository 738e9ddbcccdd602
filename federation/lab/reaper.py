"""Run one lab program as a child subreaper, so the orphans it leaves behind are reaped the moment they exit.

Patroni starts the postmaster detached: the postmaster is re-parented when its launcher exits, and on a
restart (a demotion, say) Patroni waits until the old postmaster's PID is gone. That needs whoever
inherited it to reap it. This lab's VM runs a PID 1 that reaps orphans only every ~1.7 s, and that wait
landed in every switchover's outage. Marked as a child subreaper (prctl PR_SET_CHILD_SUBREAPER), this
wrapper inherits the orphans instead and reaps them at once. systemd and tini reap at once too: production
needs nothing of this.

Usage: python -m federation.lab.reaper PROGRAM [ARG...]; signals are passed on to PROGRAM, and the
wrapper ends as soon as PROGRAM does, with its exit code (or of the signal that killed it).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def become_subreaper() -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def run(argv: list[str]) -> int:
    if not become_subreaper():
        print("reaper: prctl(PR_SET_CHILD_SUBREAPER) failed; running without it", file=sys.stderr, flush=True)
    program = subprocess.Popen(argv)
    for sig in FORWARDED:
        signal.signal(sig, lambda number, _frame: program.send_signal(number))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return program.returncode if program.returncode is not None else 1
        if pid == program.pid:
            program.returncode = os.waitstatus_to_exitcode(status)
            return program.returncode


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m federation.lab.reaper PROGRAM [ARG...]")
    code = run(sys.argv[1:])
    if code < 0:  # killed by a signal: die of the same one, so that our own status says so
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    sys.exit(code)


if __name__ == "__main__":
    main()
