"""pgBackRest runner and info parsing: argv building, error codes from output, info status handling."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from backup.info import parse_info
from backup.runner import PgBackRestError, PgBackRestHost, error_from_output, parse_error, run
from federation.lab.processes import LabUser


def me() -> LabUser:
    return LabUser("me", os.geteuid(), os.getegid(), "/tmp")


def other_user() -> LabUser:
    return LabUser("postgres", os.geteuid() + 1, os.getegid() + 1, "/var/lib/postgresql")


def test_command_argv_drops_privileges_only_for_another_user() -> None:
    host = PgBackRestHost("dc1/n1", other_user(), {"PGBACKREST_STANZA": "fed"})
    argv = host.command("backup", "--type=full").argv
    assert argv[0] == "setpriv" and argv[-3:] == ["pgbackrest", "backup", "--type=full"]
    assert PgBackRestHost("x", me()).command("info").argv == ["pgbackrest", "info"]


def test_printed_command_shows_pgbackrest_env_and_quotes() -> None:
    host = PgBackRestHost("dc1/n1", other_user(), {"PGBACKREST_PG1_PATH": "/data dir", "PATH": "/bin"})
    text = str(host.command("restore", "--set=20240101-000000F"))
    assert text == "[dc1/n1 as postgres] PGBACKREST_PG1_PATH='/data dir' pgbackrest restore --set=20240101-000000F"


def test_parse_error_reads_code_message_and_hint() -> None:
    out = "WARN: something\nERROR: [027]: primary database not found\n       HINT: check indexed pg-path/pg-host\n"
    assert parse_error(out) == (27, "primary database not found", "check indexed pg-path/pg-host")
    log_line = "2026-11-25 18:24:13.081 P00  ERROR: [075]: no backup set found to restore"
    assert parse_error(log_line) == (75, "no backup set found to restore", None)
    assert parse_error("all good") is None


def test_known_code_gets_our_hint_and_name() -> None:
    cmd = PgBackRestHost("dc1/n1", me()).command("backup", "--type=full")
    err = error_from_output(cmd, 50, "", "ERROR: [050]: unable to acquire lock on file '/x/fed-backup.lock'\n")
    assert err.code == 50 and err.name == "lock-acquire"
    assert "pgbackrest backup on dc1/n1 failed [050 lock-acquire]: unable to acquire lock" in err.message
    assert err.hint is not None and "holds the stanza lock" in err.hint


def test_unknown_code_keeps_pgbackrests_hint() -> None:
    cmd = PgBackRestHost("dc1/n1", me()).command("check")
    err = error_from_output(cmd, 99, "", "ERROR: [099]: odd\n    HINT: do the thing\n")
    assert err.code == 99 and err.name is None and err.hint == "do the thing"


def test_output_without_code_still_fails_with_the_tail() -> None:
    cmd = PgBackRestHost("dc1/n1", me()).command("check")
    err = error_from_output(cmd, 1, "", "Segmentation fault\n")
    assert err.code is None and "exit code 1: Segmentation fault" in err.message


def fake_pgbackrest(tmp_path: Path, script: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "pgbackrest"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def test_run_raises_with_the_code_from_stderr(tmp_path: Path) -> None:
    env = fake_pgbackrest(tmp_path, "echo 'ERROR: [055]: unable to open missing file' >&2; exit 55\n")
    with pytest.raises(PgBackRestError) as caught:
        run(PgBackRestHost("t", me(), env).command("restore"))
    assert caught.value.code == 55 and caught.value.returncode == 55


def test_run_stops_a_command_at_its_timeout(tmp_path: Path) -> None:
    env = fake_pgbackrest(tmp_path, "sleep 30\n")
    with pytest.raises(PgBackRestError, match="did not finish within 0 s"):
        run(PgBackRestHost("t", me(), env).command("backup", timeout=0.3))


def test_run_retries_a_held_lock(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    env = fake_pgbackrest(tmp_path, f"echo x >> {counter}\n"
                                    f"[ $(wc -l < {counter}) -ge 2 ] && {{ echo ok; exit 0; }}\n"
                                    "echo 'ERROR: [050]: unable to acquire lock' >&2; exit 50\n")
    result = run(PgBackRestHost("t", me(), env).command("backup"), attempts=3, retry_delay=0.01)
    assert result.stdout.strip() == "ok"
    assert len(counter.read_text().splitlines()) == 2


INFO = [{
    "archive": [{"database": {"id": 1, "repo-key": 1}, "id": "15-1", "max": "000000010000000000000005",
                 "min": "000000010000000000000001"}],
    "backup": [
        {"archive": {"start": "000000010000000000000007", "stop": "000000010000000000000007"},
         "error": False, "info": {"delta": 100, "repository": {"delta": 10, "size": 50}, "size": 2000},
         "label": "20261125-182414F_20261125-190000I", "lsn": {"start": "0/7000028", "stop": "0/7000100"},
         "prior": "20261125-182414F", "timestamp": {"start": 1795633200, "stop": 1795633201}, "type": "incr"},
        {"archive": {"start": "000000010000000000000003", "stop": "000000010000000000000005"},
         "error": True, "info": {"delta": 23045879, "repository": {"delta": 4549326, "size": 4549326},
                                 "size": 23045879},
         "label": "20261125-182414F", "lsn": {"start": "0/3000028", "stop": "0/5000050"}, "prior": None,
         "timestamp": {"start": 1795631054, "stop": 1795631057}, "type": "full"}],
    "cipher": "none", "name": "fed", "status": {"code": 0, "lock": {"backup": {"held": False}}, "message": "ok"},
}]


def test_parse_info_gives_typed_backups_oldest_first() -> None:
    info = parse_info(json.dumps(INFO), "fed")
    assert [b.label for b in info.backups] == ["20261125-182414F", "20261125-182414F_20261125-190000I"]
    full = info.find("20261125-182414F")
    assert full.type == "full" and full.error is True
    assert full.archive.start == "000000010000000000000003" and full.info.repository.size == 4549326
    assert full.started.isoformat() == "2026-11-25T18:24:14+00:00"
    assert info.archive[0].min == "000000010000000000000001"
    assert info.require_ok() is info


def test_missing_stanza_exits_0_but_is_an_error() -> None:
    missing = [{"archive": [], "backup": [], "name": "fed", "status": {"code": 1, "message": "missing stanza path"}}]
    info = parse_info(json.dumps(missing), "fed")
    with pytest.raises(PgBackRestError, match="missing stanza path"):
        info.require_ok(allow_no_backups=True)


def test_no_backups_is_allowed_only_when_asked() -> None:
    empty = [{"name": "fed", "status": {"code": 2, "message": "no valid backups"}}]
    info = parse_info(json.dumps(empty), "fed")
    assert info.require_ok(allow_no_backups=True).backups == []
    with pytest.raises(PgBackRestError, match="fedctl backup"):
        info.require_ok()


def test_unknown_label_and_stanza_and_garbage() -> None:
    info = parse_info(json.dumps(INFO), "fed")
    with pytest.raises(PgBackRestError, match="no backup set 'nope'"):
        info.find("nope")
    with pytest.raises(PgBackRestError, match="does not list stanza other"):
        parse_info(json.dumps(INFO), "other")
    with pytest.raises(PgBackRestError, match="cannot read"):
        parse_info("not json", "fed")


def test_a_refused_client_certificate_says_what_to_fix() -> None:
    cmd = PgBackRestHost("repository host 10.0.9.10", me()).command("backup", "--type=incr")
    err = error_from_output(cmd, 105, "", "ERROR: [105]: raised from remote-0 tls protocol on '10.0.1.11': "
                                          "access denied\n")
    assert "[105 access-denied]" in err.message and "access denied" in err.message
    assert err.hint is not None and "tls-server-auth" in err.hint and "tls.ca_file" in err.hint


def test_a_certificate_refused_by_every_pg_host_is_named_behind_the_primary_not_found_error() -> None:
    cmd = PgBackRestHost("repository host 10.0.9.10", me()).command("backup", "--type=incr")
    stderr = ("WARN: unable to check pg1: [AccessError] raised from remote-0 tls protocol on '10.0.1.11': access "
              "denied\nERROR: [056]: unable to find primary cluster - cannot proceed\n")
    err = error_from_output(cmd, 56, "", stderr)
    assert "unable to find primary cluster" in err.message and "'10.0.1.11': access denied" in err.message
    assert err.hint is not None and "tls-server-auth" in err.hint


def test_the_stanza_says_which_postgresql_version_a_set_is_of() -> None:
    text = json.dumps([{"name": "fed", "status": {"code": 0, "message": "ok"},
                        "db": [{"id": 1, "system-id": 7, "version": "14"}, {"id": 2, "system-id": 7, "version": "15"}],
                        "backup": [{"label": "A", "type": "full", "timestamp": {"start": 1, "stop": 2},
                                    "database": {"id": 1}},
                                   {"label": "B", "type": "full", "timestamp": {"start": 3, "stop": 4},
                                    "database": {"id": 2}}]}])
    info = parse_info(text, "fed")
    assert [info.version_of(b) for b in info.backups] == ["14", "15"]
