"""The backup lab in pgBackRest's production layout: a repository host, a TLS server on every host, no SSH.

The members push WAL to the repository host's server with their own certificates; the repository host backs
up through the members' servers with its certificate. A standby whose server is down is left out of the
backup (it falls back to the primary, and says so); a certificate the servers do not authorise is refused
with an error that says what to fix.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from click.testing import CliRunner

from federation.cli.app import cli
from federation.lab.pgbackrest_conf import member_config_path
from federation.lab.pgbackrest_servers import member_servers, start_servers, stop_servers
from tests.integration.labkit import LabHandle, eventually


def fedctl(lab: LabHandle, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*args[:1], "-t", str(lab.path), *args[1:]])
    return result.exit_code, result.output


def test_every_member_reaches_the_repository_only_through_the_repository_hosts_tls_server(
        backup_lab: LabHandle) -> None:
    lab = backup_lab
    section = lab.topo.pgbackrest
    assert section is not None and section.repo_host is not None and section.tls is not None
    for dc, member in lab.topo.members():
        text = member_config_path(lab.lab.layout, dc, member).read_text().splitlines()
        assert f"repo1-host={section.repo_host.address}" in text and "repo1-host-type=tls" in text
    primary = lab.leader_of(lab.dc("dc1"))
    lab.sql(primary, "CREATE TABLE IF NOT EXISTS tls_filler (n int)")
    lab.sql(primary, "INSERT INTO tls_filler SELECT generate_series(1, 100)")
    segment = lab.sql_one(primary, "SELECT pg_walfile_name(pg_switch_wal())")
    eventually(f"{segment} archived through the repository host", lambda: list(
        Path(section.repo_path).glob(f"archive/fed/*/{segment[:16]}/{segment}-*")), timeout=30)


def test_a_backup_leaves_out_a_standby_whose_tls_server_is_down_and_says_so(backup_lab: LabHandle) -> None:
    lab = backup_lab
    dc1 = lab.dc("dc1")
    standby = next(m for m in dc1.members if lab.member_role(m) == "replica")
    servers = [s for s in member_servers(lab.lab.layout, dc1) if s[0] == standby.host]
    stop_servers(servers)
    try:
        code, out = fedctl(lab, "backup", "dc1", "--type", "incr")
        assert code == 0, out
        assert f"{standby.name} left out of the backup hosts: its pgbackrest server" in out
        assert "does not answer" in out and "from the primary" in out
    finally:
        start_servers(servers, lab.lab.user)
    code, out = fedctl(lab, "backup", "dc1", "--type", "incr")
    assert code == 0 and "from a standby" in out, out


def test_a_certificate_the_servers_do_not_authorise_is_refused_with_what_to_fix(backup_lab: LabHandle) -> None:
    """The repository host presents a certificate of the lab's CA whose common name is not the repository
    host's: every member's server refuses it, and the backup fails saying so."""
    lab = backup_lab
    section = lab.topo.pgbackrest
    assert section is not None and section.repo_host is not None and section.tls is not None
    cert, key = Path(section.tls.cert(section.repo_host.name)), Path(section.tls.key(section.repo_host.name))
    ca = Path(section.tls.ca_file)
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp)
        shutil.copy2(cert, saved / "cert")
        shutil.copy2(key, saved / "key")
        try:
            _issue(ca, ca.with_suffix(".key"), cert, key, "intruder", section.repo_host.address)
            code, out = fedctl(lab, "backup", "dc1", "--type", "incr")
            assert code == 1, out
            assert "access denied" in out and "tls-server-auth" in out, out
            assert "Traceback" not in out
        finally:
            shutil.copy2(saved / "cert", cert)
            shutil.copy2(saved / "key", key)
    code, out = fedctl(lab, "backup", "dc1", "--type", "incr")
    assert code == 0, out


def _issue(ca: Path, ca_key: Path, cert: Path, key: Path, name: str, address: str) -> None:
    """Overwrite `cert`/`key` (keeping their owner and mode) with a certificate of the CA for `name`."""
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = Path(tmp) / "x.csr", Path(tmp) / "x.ext"
        ext.write_text(f"subjectAltName=IP:{address},DNS:{address}\nextendedKeyUsage=serverAuth,clientAuth\n")
        new_key, new_cert = Path(tmp) / "x.key", Path(tmp) / "x.crt"
        subprocess.run(["openssl", "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-keyout", str(new_key), "-out", str(csr),
                        "-subj", f"/CN={name}"], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                        "-CAcreateserial", "-days", "1", "-out", str(new_cert), "-extfile", str(ext)],
                       check=True, capture_output=True)
        cert.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())


def test_the_repository_hosts_agent_runs_the_scheduled_jobs(backup_lab: LabHandle, tmp_path: Path) -> None:
    """`fedctl agent run --backup-host`, with a job every minute: its run lands in dc1's etcd and in
    `fedctl jobs`, exactly as a DC agent's did. (Up to a minute's wait for the cron.)"""
    import subprocess as sp
    import sys

    import yaml

    from backup.jobs import JobStore
    from federation.dcs import connect

    lab = backup_lab
    data = yaml.safe_load(lab.path.read_text())
    data["datacenters"][0]["jobs"] = [{"name": "minute-check", "kind": "check_archive", "cron": "* * * * *"}]
    path = tmp_path / "backup-host-jobs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    dc = lab.dc("dc1")

    def history() -> list:
        with connect(dc) as dcs:
            return [r for r in JobStore(dcs, dc.dcs.namespace, lab.topo.federation).history("dc1")
                    if r.job == "minute-check"]

    from tests.integration.dcs_servers import free_port

    before = len(history())
    log = tmp_path / "backup-host.log"
    repo = lab.topo.pgbackrest.repo_host if lab.topo.pgbackrest else None
    assert repo is not None
    # A port of its own: the lab's backup-host agent serves its API on repo_host.agent_port.
    listen = f"{repo.address}:{free_port(repo.address)}"
    with open(log, "w") as out:
        proc = sp.Popen([sys.executable, "-m", "federation", "agent", "run", "--backup-host", "-t", str(path),
                         "--listen", listen, "--events-file", str(tmp_path / "events.jsonl")],
                        stdout=out, stderr=sp.STDOUT, stdin=sp.DEVNULL, cwd=tmp_path)
    try:
        runs = eventually("the backup host's agent to run the job", lambda: history()[before:] or None,
                          timeout=90, interval=1.0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert runs[0].status == "ok", runs[0].summary
    assert "backup-host agent" in log.read_text() and "1 job(s) of 1 DC(s)" in log.read_text()
    code, out_text = fedctl(lab, "jobs", "dc1")
    assert code == 0 and "minute-check" in out_text


def test_rebuilding_dc2s_standby_leader_under_a_writer_loses_nothing(backup_lab: LabHandle) -> None:
    """The standby leader's role goes to the other member of dc2 (Patroni's switchover in a standby cluster),
    then Patroni reinitialises the old one from the repository; dc1 keeps taking writes throughout."""
    from backup.rebuild import rebuild
    from tests.integration.labkit import Writer

    lab = backup_lab
    dc2 = lab.dc("dc2")
    old_leader = lab.leader_of(dc2)
    writer = Writer(lab, "rebuild_rows").start()
    try:
        eventually("the writer commits", lambda: len(writer.acked) > 30, timeout=20)
        report = rebuild(lab.topo, "dc2", old_leader.name)
        count = len(writer.acked)
        eventually("the writer commits after the rebuild", lambda: len(writer.acked) > count + 30, timeout=30)
    finally:
        writer.stop()
    assert report.role_before == "standby_leader" and report.role_after == "replica", report
    assert report.how.startswith("standby leader role handed over") and report.replica_method == "pgbackrest"
    assert lab.leader_of(dc2) != old_leader
    for member in dc2.members:
        eventually(f"{member.name} streams", lambda m=member: lab.sql_one(
            m, "SELECT status FROM pg_stat_wal_receiver") == "streaming", timeout=60)
        eventually(f"{member.name} has every acknowledged row", lambda m=member: writer.missing_on(lab, m) == [],
                   timeout=60)
