"""The local lab: every DC of a topology running for real on this machine's loopback addresses.

`lab_up` is idempotent: it starts only what is not running and makes the first backup only once.
`lab_down` stops exactly the processes the lab started (pid files checked against /proc).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from federation.errors import FedError, LabError
from federation.gate import gate_config
from federation.lab import agents, cuts, dcs_servers, follower, haproxy, netns, pgbackrest_servers, pgbouncer, tls_certs
from federation.lab.health import dc_ready, wait_until
from federation.lab.layout import LabLayout
from federation.lab.patroni_conf import member_config
from federation.lab.pgbackrest_conf import (
    member_env,
    render_config,
    repo_dirs,
    repo_host_env,
    repository_host,
    write_layout_configs,
)
from federation.lab.processes import (
    LabUser,
    chown_tree,
    ensure_lab_user,
    kill_postmaster,
    kill_strays,
    run_as,
)
from federation.lab.runtime import runtime_bin
from federation.progress import Progress
from federation.topology import Datacenter, Member, SecretRef, Topology

SECRET_NAMES = ("superuser", "replication", "rewind")


@dataclass(frozen=True)
class Lab:
    topo: Topology
    layout: LabLayout
    user: LabUser

    @classmethod
    def of(cls, topo: Topology) -> Lab:
        return cls(topo, LabLayout(topo), ensure_lab_user(topo.lab.user))

    @cached_property
    def bin(self) -> Path:
        """Where the lab user's patroni, fedctl and fedctl-gate are (see runtime.py)."""
        return runtime_bin(self.user)

    def passwords(self) -> dict[str, str]:
        creds = self.topo.credentials
        return {"superuser": creds.superuser.password.resolve(),
                "replication": creds.replication.password.resolve(),
                "rewind": creds.rewind.password.resolve()}

    def patroni_env(self, dc: Datacenter, member: Member) -> dict[str, str]:
        path = f"{self.bin}:/usr/lib/postgresql/15/bin:{os.environ.get('PATH', '/usr/bin:/bin')}"
        return {**member_env(self.layout, dc, member), "PATH": path, "PYTHONUNBUFFERED": "1"}

    def pgbackrest(self, dc: Datacenter, member: Member, *args: str, timeout: float = 300) -> str:
        done = run_as(self.user, ["pgbackrest", *args], env=self.patroni_env(dc, member),
                      cwd=self.layout.member(dc, member).data, timeout=timeout)
        return done.stdout

    def pgbackrest_on_repo_host(self, *args: str, timeout: float = 300) -> str:
        """pgBackRest on the repository host, with the config the product renders for it (as now)."""
        from backup.host_render import render_repo_host, write_config

        section = repository_host(self.layout)
        assert section is not None and section.repo_host is not None
        text, _notes, path = render_repo_host(self.topo)
        write_config(path, text, owner=self.user)
        done = run_as(self.user, ["pgbackrest", *args], env=repo_host_env(section),
                      cwd=Path(section.repo_host.config).parent, timeout=timeout,
                      netns=self.layout.netns_of_address(section.repo_host.address))
        return done.stdout


def ensure_secret_files(topo: Topology) -> None:
    """Create missing secret files with random passwords (lab only; production files are the operator's)."""
    for ref in secret_refs(topo):
        _ensure_secret(ref)


def secret_refs(topo: Topology) -> list[SecretRef]:
    """Every secret of the topology the lab's processes need: the three roles', Patroni's REST API's and
    fedctl's ZooKeeper identity's."""
    creds = topo.credentials
    refs = [creds.superuser.password, creds.replication.password, creds.rewind.password]
    if topo.patroni_api is not None and topo.patroni_api.authentication is not None:
        refs.append(topo.patroni_api.authentication.password)
    if topo.zookeeper_auth is not None:
        refs.append(topo.zookeeper_auth.password)
    return refs


def _ensure_secret(ref: SecretRef) -> None:
    path = ref.file_path
    if path is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(24) + "\n")


def _refuse_plain_etcd_data(lab: Lab) -> None:
    """etcd keeps its peers' URLs in its data: data made before the lab had etcd TLS (no lab CA yet) would
    start talking plain http to TLS peers and never become healthy."""
    tls = next((s.tls for s in tls_certs.tls_sections(lab.topo)), None)
    if lab.topo.etcd_tls is None or tls is None or Path(tls.ca_file).exists():
        return
    old = next(lab.layout.root.glob("**/data/member"), None)
    if old is not None:
        raise LabError(f"{lab.layout.root} holds etcd data made before this lab served etcd over TLS ({old.parent}): "
                       "its members would keep talking plain http to each other",
                       hint=f"wipe the lab and start it again: fedctl lab down -t {lab.topo.source} --wipe")


def prepare(lab: Lab) -> None:
    """Directories, configuration files and ownership; touches no data directory that exists."""
    layout = lab.layout
    layout.root.mkdir(parents=True, exist_ok=True)
    for d in repo_dirs(layout):
        d.mkdir(parents=True, exist_ok=True)
    layout.pgbackrest_config.write_text(render_config(layout))
    if repository_host(layout) is not None:
        _refuse_plain_etcd_data(lab)
        tls_certs.ensure_certs(lab.topo, lab.user)
        write_layout_configs(layout)
    passwords = lab.passwords()
    topology_copy = layout.root / "topology.yaml"
    if Path(lab.topo.source).is_file():
        shutil.copyfile(lab.topo.source, topology_copy)
    for dc, member in lab.topo.members():
        layout.member(dc, member).socket_dir.mkdir(parents=True, exist_ok=True)
        _write_patroni_config(lab, dc, member, passwords, gate=not lab.topo.lab.unmanaged)
    for dc in lab.topo.datacenters:
        layout.dcs_data(dc).mkdir(parents=True, exist_ok=True)
    chown_tree(layout.root, lab.user)
    for d in repo_dirs(layout):
        chown_tree(d, lab.user)
    _check_user_can_run_patroni(lab)


def _write_patroni_config(lab: Lab, dc: Datacenter, member: Member, passwords: dict[str, str], *, gate: bool) -> None:
    layout = lab.layout
    paths = layout.member(dc, member)
    gate_file = layout.dc_dir(dc) / "gate.json"
    gate_file.parent.mkdir(parents=True, exist_ok=True)
    gate_file.write_text(json.dumps(gate_config(lab.topo, dc.name), indent=2))
    pre_promote = f"{lab.bin / 'fedctl-gate'} {gate_file}" if gate else None
    config = member_config(layout, dc, member, passwords, pre_promote=pre_promote)
    fd = os.open(paths.patroni_config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    if os.geteuid() == 0:  # Patroni, the lab user, re-reads them on reload
        for written in (gate_file, paths.patroni_config):
            os.chown(written, lab.user.uid, lab.user.gid)


def install_gate(topo: Topology, dc: Datacenter, member: Member) -> None:
    """What a DBA does after `fedctl adopt` on an unmanaged lab's member: add the promotion gate to its
    patroni.yml, then have Patroni reload it (POST /reload, as `patronictl reload` does)."""
    from federation import patroni_api

    lab = Lab.of(topo)
    _write_patroni_config(lab, dc, member, lab.passwords(), gate=True)
    patroni_api.post_action(member, "/reload", None)


def start_agents(topo: Topology) -> None:
    """The agents of every DC (after `fedctl adopt` on an unmanaged lab), as services started by hand."""
    lab = Lab.of(topo)
    for dc in topo.datacenters:
        agents.start_agents(lab, dc)


def _check_user_can_run_patroni(lab: Lab) -> None:
    try:
        run_as(lab.user, [str(lab.bin / "patroni"), "--version"], timeout=60)
    except (LabError, OSError) as exc:
        raise LabError(f"the lab user {lab.user.name} cannot run {lab.bin / 'patroni'}: {exc}",
                       hint="the project and its .venv must be readable by that user: clone it outside "
                            "/root (for example under /work or /opt) and run `make demo` again") from exc


def start_member(lab: Lab, dc: Datacenter, member: Member) -> None:
    paths = lab.layout.member(dc, member)
    # Under federation/lab/reaper.py, which reaps the postmasters Patroni leaves orphaned (see there why).
    argv = [str(lab.bin / "python"), "-m", "federation.lab.reaper", str(lab.bin / "patroni"), str(paths.patroni_config)]
    paths.patroni.start(lab.user, argv, env=lab.patroni_env(dc, member), cwd=paths.root)


def start_dc_members(lab: Lab, dc: Datacenter) -> None:
    for member in dc.members:
        start_member(lab, dc, member)


def should_be_primary(lab: Lab, dc: Datacenter) -> bool:
    """What the federation record says (the topology's initial roles while no record exists)."""
    from federation.state import current_state, initial_state
    from federation.store import StoreNotInitialised

    try:
        record, _copies = current_state(lab.topo)
    except StoreNotInitialised:  # an unmanaged lab before `fedctl adopt`
        record = initial_state(lab.topo)
    return record.upstream_of(dc.name) is None


def wait_dc(lab: Lab, dc: Datacenter, timeout: float = 120.0) -> None:
    password = lab.passwords()["superuser"]
    primary = should_be_primary(lab, dc)

    def on_fail() -> str:
        hint = (f"\nhint: if {dc.name} was replaced by promote-dc, its members stay read-only (promotion gate): "
                f"run `fedctl rejoin-dc {dc.name}`; `fedctl status` shows the federation record")
        return _log_tails(lab, dc) + hint

    wait_until(f"{dc.name} to be healthy as a {'primary' if primary else 'standby'} DC",
               lambda: dc_ready(lab.topo, dc, password, primary=primary), timeout, on_fail=on_fail)


def _log_tails(lab: Lab, dc: Datacenter) -> str:
    out = []
    for member in dc.members:
        log = lab.layout.member(dc, member).patroni.logfile
        try:
            tail = log.read_text(errors="replace").splitlines()[-6:]
        except OSError:
            tail = ["(no log)"]
        out.append(f"--- {log} (last lines)\n" + "\n".join(tail))
    out += [f"--- {line}" for line in dcs_servers.dead_servers(lab.layout, dc)]
    return "\n".join(out)


def has_backup(lab: Lab, dc: Datacenter, member: Member) -> bool:
    try:
        info = json.loads(lab.pgbackrest(dc, member, "info", "--output=json", timeout=60))
    except (LabError, ValueError):
        return False
    return any(stanza.get("backup") for stanza in info)


def lab_up(topo: Topology, progress: Progress) -> None:
    lab = Lab.of(topo)
    primary = topo.initial_primary
    if netns.uses_namespaces(topo):
        with progress.step(f"create the sites' network namespaces ({', '.join(s.name for s in netns.sites(topo))})"):
            netns.create_sites(topo, lab.layout.network_dir)
            cuts.load_current(topo)
    with progress.step("prepare directories, secrets and configuration"):
        ensure_secret_files(topo)
        prepare(lab)
    store = dcs_servers.store_group(lab.layout)
    also = f" and the federation store ({len(store.hosts)} members)" if store else ""
    with progress.step(f"start DCS for {', '.join(dc.name for dc in topo.datacenters)}{also}"):
        for dc in topo.datacenters:
            dcs_servers.start_dcs(lab.layout, dc, lab.user)
        if store:
            dcs_servers.start_group(store, lab.user)
        for dc in topo.datacenters:
            dcs_servers.wait_dcs(lab.layout, dc, lab.user)
        if store:
            dcs_servers.wait_group(store, lab.user)
    if store and not topo.lab.unmanaged:
        with progress.step("initialise the federation store with the record (once)") as rec:
            rec.detail = init_store_once(topo)
    if (repo := pgbackrest_servers.repo_server(lab.layout)) is not None:
        with progress.step("start pgBackRest's TLS servers (the repository host and every member)"):
            servers = [repo, *(s for dc in topo.datacenters for s in pgbackrest_servers.member_servers(lab.layout, dc))]
            pgbackrest_servers.start_servers(servers, lab.user)
    if any((lab.layout.member(dc, m).data / "PG_VERSION").exists() for dc, m in topo.members()):
        # An existing lab: roles live in each DC's DCS now (a switchover may have moved them).
        with progress.step("start every member and agent of every DC and wait until each DC is healthy"):
            # The agents first: a DC that promote-dc replaced comes back fenced, and its agent is what
            # turns it into a standby of the primary DC.
            for dc in topo.datacenters:
                start_dc_members(lab, dc)
                if not topo.lab.unmanaged:
                    agents.start_agents(lab, dc)
            _wait_all(lab)
    else:
        _first_start(lab, primary, progress)
        if not topo.lab.unmanaged:
            with progress.step("start the fedctl agents (one per member, one active per DC)"):
                for dc in topo.datacenters:
                    agents.start_agents(lab, dc)
    if topo.lab.unmanaged:
        progress.say("unmanaged lab: no agents, no federation record, no entrypoints (`fedctl adopt` comes next)")
        return
    if repository_host(lab.layout) is not None:
        with progress.step("start the repository host's agent (it runs the scheduled jobs)"):
            agents.start_backup_host_agent(lab)
    if topo.federation_store is not None:
        with progress.step("wait until the primary DC's agent holds the primary-DC lease") as rec:
            rec.detail = _wait_for_lease(topo)
    with progress.step("start HAProxy, the client entrypoint (its read-write check needs the agents)"):
        haproxy.start_haproxy(lab)
    with progress.step("start PgBouncer and the entrypoint follower that points it at the primary DC"):
        pgbouncer.start_pgbouncer(lab)
        follower.start_follower(lab)


def _wait_for_lease(topo: Topology, timeout: float = 60.0) -> str:
    """A federation with a store is healthy only once its primary DC holds the lease: without it, its
    agents would fence it within one TTL."""
    from federation.store import FederationStore

    assert topo.federation_store is not None
    store = FederationStore(topo.federation_store, topo.federation)
    primary = current_primary(topo)

    def holder() -> str | None:
        try:
            found = store.read_lease().holder
        except FedError as exc:
            return f"the store does not answer ({exc.message})"
        return None if found == primary else f"the lease is held by {found or 'nobody'}"

    wait_until(f"{primary}'s agent to take the primary-DC lease", holder, timeout)
    return f"held by {primary}"


def current_primary(topo: Topology) -> str:
    from federation.state import current_state

    record, _copies = current_state(topo)
    return record.primary_dc


def init_store_once(topo: Topology) -> str:
    """`fedctl store init` when the store holds no record yet (a new lab), as its operator would run it."""
    from federation.record_store import init_store, open_store

    if open_store(topo).read_record() is not None:
        return "it holds the record already"
    record, _copies = init_store(topo)
    return f"epoch {record.epoch}, primary DC {record.primary_dc}"


def _wait_all(lab: Lab, dcs: list[Datacenter] | None = None) -> None:
    chosen = dcs if dcs is not None else lab.topo.datacenters
    with ThreadPoolExecutor(max_workers=len(chosen)) as waiters:
        for result in [waiters.submit(wait_dc, lab, dc) for dc in chosen]:
            result.result()


def _levels(topo: Topology) -> list[list[Datacenter]]:
    """DCs grouped by distance from the primary DC: the primary DC and its direct standbys first."""
    depth = {topo.initial_primary.name: 0}
    while len(depth) < len(topo.datacenters):
        for dc in topo.datacenters:
            if dc.name not in depth and dc.upstream in depth:
                depth[dc.name] = depth[dc.upstream] + 1
    levels: dict[int, list[Datacenter]] = {}
    for dc in topo.datacenters:
        levels.setdefault(max(1, depth[dc.name]), []).append(dc)
    return [levels[k] for k in sorted(levels)]


def _first_start(lab: Lab, primary: Datacenter, progress: Progress) -> None:
    topo = lab.topo
    with progress.step(f"start {primary.name} (primary DC) and wait for its leader"):
        start_dc_members(lab, primary)
        password = lab.passwords()["superuser"]
        wait_until(f"a writable leader in {primary.name}",
                   lambda: _writable_leader(lab, primary, password), 120, on_fail=lambda: _log_tails(lab, primary))
    leader = _leader_member(lab, primary)
    on_repo_host = repository_host(lab.layout) is not None
    with progress.step("pgBackRest stanza-create" + (" on the repository host" if on_repo_host else "")):
        if on_repo_host:
            lab.pgbackrest_on_repo_host("stanza-create")
        else:
            lab.pgbackrest(primary, leader, "stanza-create")
    with ThreadPoolExecutor(max_workers=1) as pool:
        backup = None
        if not has_backup(lab, primary, leader):
            if on_repo_host:
                backup = pool.submit(lab.pgbackrest_on_repo_host, "backup", "--type=full")
            else:
                backup = pool.submit(lab.pgbackrest, primary, leader, "backup", "--type=full")
        with progress.step("start the other members and DCs, wait until every DC is healthy"):
            # A DC that cascades from a standby DC clones from one of its members: start it only once
            # that upstream is healthy, or its first member can fail to bootstrap and exit.
            for level in _levels(topo):
                for dc in level:
                    start_dc_members(lab, dc)
                _wait_all(lab, level)
        if backup is not None:
            with progress.step("first full backup"):
                backup.result()


def _writable_leader(lab: Lab, dc: Datacenter, password: str) -> str | None:
    from federation.lab.health import sql_ready

    try:
        member = _leader_member(lab, dc)
    except LabError as exc:
        return str(exc)
    return None if sql_ready(lab.topo, member, password, want_primary=True) else f"{member.name} not writable yet"


def _leader_member(lab: Lab, dc: Datacenter) -> Member:
    from federation.operations.common import look_at

    look = look_at(dc, timeout=1.0)
    if look.leader is None or not look.is_primary:
        raise LabError(f"{dc.name} has no primary yet")
    return look.leader


def stop_dc(lab: Lab, dc: Datacenter, *, stop_dcs: bool = True) -> None:
    with ThreadPoolExecutor(max_workers=len(dc.members)) as pool:
        list(pool.map(lambda m: lab.layout.member(dc, m).patroni.stop(timeout=60), dc.members))
    for member in dc.members:
        kill_postmaster(lab.layout.member(dc, member).data)
    pgbackrest_servers.stop_servers(pgbackrest_servers.member_servers(lab.layout, dc))
    if stop_dcs:
        for _, proc, _d in dcs_servers.server_processes(lab.layout, dc):
            proc.stop(timeout=15)


def lab_down(topo: Topology, progress: Progress, wipe: bool = False) -> None:
    lab = Lab.of(topo)
    with progress.step("stop the entrypoint follower, PgBouncer and HAProxy"):
        follower.stop_follower(lab.layout)
        pgbouncer.stop_pgbouncer(lab.layout)
        haproxy.stop_haproxy(lab.layout)
    with progress.step("stop the fedctl agents"):
        for dc in topo.datacenters:
            agents.stop_agents(lab, dc)
        agents.backup_host_process(lab.layout).stop(timeout=15)
    with progress.step("stop Patroni and PostgreSQL of every DC"):
        with ThreadPoolExecutor(max_workers=len(topo.datacenters)) as pool:
            list(pool.map(lambda dc: stop_dc(lab, dc, stop_dcs=False), topo.datacenters))
    with progress.step("stop the DCS servers and the federation store"):
        for dc in topo.datacenters:
            for _, proc, _d in dcs_servers.server_processes(lab.layout, dc):
                proc.stop(timeout=15)
        if (store := dcs_servers.store_group(lab.layout)) is not None:
            for _, proc, _d in dcs_servers.group_processes(store):
                proc.stop(timeout=15)
    if (repo := pgbackrest_servers.repo_server(lab.layout)) is not None:
        pgbackrest_servers.stop_servers([repo])
    strays = kill_strays(lab.layout.root, lab.user.uid)
    if strays:
        progress.warn(f"stopped {len(strays)} lab process(es) that had lost their pid file:\n     "
                     + "\n     ".join(strays))
    if netns.uses_namespaces(topo):
        with progress.step("heal every cut and remove the sites' namespaces and links"):
            cuts.remove_tables(topo)
            leftovers = [r for r in netns.remove_sites(topo, lab.layout.network_dir) if r.startswith("process")]
        if leftovers:
            progress.warn(f"killed {len(leftovers)} process(es) still running in a site: {', '.join(leftovers)}")
    if wipe:
        with progress.step(f"remove {lab.layout.root}"):
            for d in repo_dirs(lab.layout):
                if not d.is_relative_to(lab.layout.root):
                    shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(lab.layout.root, ignore_errors=True)


def lab_kill(topo: Topology, dc_name: str) -> list[str]:
    """SIGKILL every process of one DC (DCS, Patroni, PostgreSQL), as a datacenter losing power."""
    lab = Lab.of(topo)
    dc = topo.dc(dc_name)
    killed = agents.kill_agents(lab, dc)
    for member in dc.members:
        paths = lab.layout.member(dc, member)
        if paths.patroni.running():
            killed.append(f"patroni {member.name}")
        paths.patroni.kill()
        kill_postmaster(paths.data)
    for host, proc, _d in dcs_servers.server_processes(lab.layout, dc):
        if proc.running():
            killed.append(f"{dc.dcs.kind} {host}")
        proc.kill()
    for host, proc in dcs_servers.store_processes_in(lab.layout, dc.name):
        if proc.running():
            killed.append(f"federation store member {host}")
        proc.kill()
    killed += pgbackrest_servers.stop_servers(pgbackrest_servers.member_servers(lab.layout, dc), kill=True)
    return killed


def lab_start(topo: Topology, dc_name: str, progress: Progress, wait: bool = False) -> None:
    """Start one DC again with the configuration it had (as a rebooted datacenter would)."""
    lab = Lab.of(topo)
    dc = topo.dc(dc_name)
    with progress.step(f"start {dc.dcs.kind} of {dc.name}"):
        dcs_servers.start_dcs(lab.layout, dc, lab.user)
        if (store := dcs_servers.store_group(lab.layout)) is not None:
            dcs_servers.start_group(store, lab.user, only=dcs_servers.store_members_in(lab.layout, dc.name))
        dcs_servers.wait_dcs(lab.layout, dc, lab.user)
    if servers := pgbackrest_servers.member_servers(lab.layout, dc):
        with progress.step(f"start the pgBackRest TLS servers of {dc.name}"):
            pgbackrest_servers.start_servers(servers, lab.user)
    with progress.step(f"start Patroni members of {dc.name}"):
        start_dc_members(lab, dc)
    with progress.step(f"start the fedctl agents of {dc.name}"):
        agents.start_agents(lab, dc)
    if wait:
        with progress.step(f"wait until {dc.name} is healthy"):
            wait_dc(lab, dc)


def lab_dsn(topo: Topology) -> str:
    """A libpq string that reaches the current primary, whichever DC holds it; the password stays in a
    pgpass file of the lab's (mode 600), named by `passfile`, so it never shows in output or `ps`."""
    members = [m for _, m in topo.members()]
    return (f"host={','.join(m.host for m in members)} port={','.join(str(m.port) for m in members)} "
            f"user={topo.credentials.superuser.username} passfile={write_pgpass(topo)} dbname=postgres "
            f"{' '.join(f'{k}={v}' for k, v in topo.ssl_params().items())} "
            "target_session_attrs=read-write connect_timeout=2")


def write_pgpass(topo: Topology) -> Path:
    """<lab dir>/pgpass: the superuser's password for every member (libpq's format, ':' and '\\' escaped)."""
    user = topo.credentials.superuser.username
    password = topo.credentials.superuser.password.resolve().replace("\\", "\\\\").replace(":", "\\:")
    text = "".join(f"{m.host}:{m.port}:*:{user}:{password}\n" for _, m in topo.members())
    path = topo.lab_dir / "pgpass"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pgpass.")
    with os.fdopen(fd, "w") as f:  # mkstemp creates it 0600, as libpq insists
        f.write(text)
    os.replace(tmp, path)
    return path


def lab_processes(topo: Topology) -> list[list[str]]:
    """Rows (DC, process, address, pid or '-') for `fedctl lab status`."""
    layout = LabLayout(topo)
    rows = []
    for dc in topo.datacenters:
        for host, proc, _d in dcs_servers.server_processes(layout, dc):
            rows.append([dc.name, dc.dcs.kind, str(host), str(proc.pid() or "-")])
        for member in dc.members:
            paths = layout.member(dc, member)
            rows.append([dc.name, f"patroni {member.name}", f"{member.host}:{member.port} api {member.api}",
                         str(paths.patroni.pid() or "-")])
        rows.extend(agents.agent_rows(layout, dc))
        rows += [[dc.name, "pgbackrest server", f"{address}:{port}", str(server.pid() or "-")]
                 for address, port, server in pgbackrest_servers.member_servers(layout, dc)]
    if (repo := pgbackrest_servers.repo_server(layout)) is not None:
        address, port, server = repo
        rows.append(["repo host", "pgbackrest server", f"{address}:{port}", str(server.pid() or "-")])
        rows.append(["repo host", "backup-host agent", agents.backup_host_listen(layout),
                     str(agents.backup_host_process(layout).pid() or "-")])
    if (store := dcs_servers.store_group(layout)) is not None:
        assert topo.federation_store is not None
        for h, (host, proc, _d) in zip(topo.federation_store.hosts, dcs_servers.group_processes(store), strict=True):
            rows.append([h.site, f"store {store.kind}", str(host), str(proc.pid() or "-")])
    for s in netns.sites(topo):
        up = "up" if s.netns_path.exists() else "-"
        rows.append([s.name, f"namespace {s.netns}", str(s.subnet), up])
    for cut in cuts.current(topo):
        rows.append([cut.site, "cut", cut.describe(), "in place"])
    return (rows + haproxy.haproxy_rows(layout) + pgbouncer.pgbouncer_rows(layout)
            + follower.follower_rows(layout))
