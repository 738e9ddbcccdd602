"""Sites as Linux network namespaces: each DC (and each extra site, such as a witness) in a network of its own.

The root namespace plays the WAN: every site has one veth pair to it (root side: the first address of the
site's subnet, the site's default gateway; site side `wan0`: the second address plus every address the
DC's processes listen on), and the root namespace forwards between the pairs. fedctl run from the root
namespace therefore reaches every site, as an operator's admin host would; `nsenter --net` starts a
process inside a site (it execs in place, so the PID the lab tracks is the program's own).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from federation.errors import LabError
from federation.lab_network import site_conflicts, wan_link_name
from federation.topology import LabNetwork, Topology, dc_addresses

NETNS_DIR = Path("/run/netns")
SITE_LINK = "wan0"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@dataclass(frozen=True)
class Site:
    name: str
    subnet: ipaddress.IPv4Network
    netns: str
    wan_link: str
    addresses: tuple[str, ...]

    @property
    def gateway(self) -> str:
        """The root namespace's address on this site's link."""
        return str(self.subnet.network_address + 1)

    @property
    def own_address(self) -> str:
        """The site side's first address (every site has it, even one that runs nothing)."""
        return str(self.subnet.network_address + 2)

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns


def uses_namespaces(topo: Topology) -> bool:
    return topo.lab.network is LabNetwork.NAMESPACES


def sites(topo: Topology) -> list[Site]:
    """The sites of a namespace lab, in the topology's order (none for a loopback lab)."""
    if not uses_namespaces(topo):
        return []
    dcs = {dc.name: dc for dc in topo.datacenters}
    out = []
    for name, subnet in topo.lab.sites.items():
        net = ipaddress.IPv4Network(subnet)
        own = str(net.network_address + 2)
        found = [host for _path, host in dc_addresses(dcs[name])] if name in dcs else []
        store = topo.federation_store
        found += [h.host for h in (store.hosts if store else []) if h.site == name]
        found += [host for host in repo_host_addresses(topo) if ipaddress.ip_address(host) in net]
        addresses = tuple(dict.fromkeys([own, *found]))
        out.append(Site(name, net, f"fedlab-{topo.federation}-{name}", wan_link_name(topo.federation, name),
                        addresses))
    return out


def repo_host_addresses(topo: Topology) -> list[str]:
    sections = [topo.pgbackrest, *(dc.pgbackrest for dc in topo.datacenters)]
    return list(dict.fromkeys(s.repo_host.address for s in sections if s is not None and s.repo_host is not None))


def netns_of_address(topo: Topology, address: str) -> str | None:
    """The namespace of the site whose subnet holds `address`; None in a loopback lab."""
    return next((s.netns for s in sites(topo) if ipaddress.ip_address(address) in s.subnet), None)


def site(topo: Topology, name: str) -> Site:
    for s in sites(topo):
        if s.name == name:
            return s
    if not uses_namespaces(topo):
        raise LabError(f"{topo.source} is a loopback lab: it has no sites to cut or enter",
                       hint="use a topology with 'lab: {network: namespaces}', e.g. topologies/lab-partition.yaml")
    known = ", ".join(s.name for s in sites(topo))
    raise LabError(f"unknown site {name!r} (sites of {topo.federation}: {known})")


def netns_of(topo: Topology, dc_name: str) -> str | None:
    """The namespace a DC's processes run in; None in a loopback lab."""
    return next((s.netns for s in sites(topo) if s.name == dc_name), None)


def in_netns(argv: list[str], netns: str | None) -> list[str]:
    if netns is None:
        return argv
    return ["nsenter", f"--net={NETNS_DIR / netns}", *argv]


def run_tool(argv: list[str], *, netns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(in_netns(argv, netns), capture_output=True, text=True, timeout=30, input=stdin)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)} failed: {exc}") from exc
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def check_possible(topo: Topology) -> None:
    """Refuse, saying why, where a namespace lab cannot run: not root, no `ip`/`nft`, or a site subnet that
    this host already uses (the lab would hijack its traffic)."""
    if os.geteuid() != 0:
        raise LabError("the namespace lab needs root: it creates network namespaces, veth pairs and nftables "
                       "rules", hint="run it as root, or use a loopback lab such as topologies/lab-two-dc.yaml")
    for tool in ("ip", "nft", "nsenter"):
        if shutil.which(tool) is None:
            raise LabError(f"the namespace lab needs `{tool}`, which is not installed",
                           hint="`make install` installs iproute2, nftables and util-linux")
    for problem in site_conflicts(topo):
        raise LabError(problem, hint="choose other subnets under lab.sites in the topology")


def create_sites(topo: Topology, state_dir: Path) -> list[str]:
    """Create every missing namespace and link (idempotent); turn on forwarding. Returns what was created."""
    check_possible(topo)
    created = []
    for s in sites(topo):
        if not s.netns_path.exists():
            run_tool(["ip", "netns", "add", s.netns])
            created.append(f"namespace {s.netns}")
        if not Path(f"/sys/class/net/{s.wan_link}").exists():
            run_tool(["ip", "link", "add", s.wan_link, "type", "veth", "peer", "name", SITE_LINK, "netns", s.netns])
            created.append(f"link {s.wan_link} <-> {s.name}/{SITE_LINK}")
        _configure(s)
    _enable_forwarding(state_dir)
    return created


def _configure(s: Site) -> None:
    prefix = s.subnet.prefixlen
    run_tool(["ip", "addr", "replace", f"{s.gateway}/{prefix}", "dev", s.wan_link])
    run_tool(["ip", "link", "set", s.wan_link, "up"])
    run_tool(["ip", "link", "set", "lo", "up"], netns=s.netns)
    for address in s.addresses:
        run_tool(["ip", "addr", "replace", f"{address}/{prefix}", "dev", SITE_LINK], netns=s.netns)
    run_tool(["ip", "link", "set", SITE_LINK, "up"], netns=s.netns)
    run_tool(["ip", "route", "replace", "default", "via", s.gateway], netns=s.netns)


def _enable_forwarding(state_dir: Path) -> None:
    saved = state_dir / "ip_forward.before"
    if not saved.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(IP_FORWARD.read_text())
    IP_FORWARD.write_text("1\n")


def remove_sites(topo: Topology, state_dir: Path) -> list[str]:
    """Kill whatever still runs in a site, delete its link and namespace, restore forwarding. Idempotent."""
    removed = []
    for s in sites(topo):
        if s.netns_path.exists():
            for pid in _pids_in(s.netns):
                try:
                    os.kill(pid, signal.SIGKILL)
                    removed.append(f"process {pid} in {s.netns}")
                except ProcessLookupError:
                    pass
        if Path(f"/sys/class/net/{s.wan_link}").exists():
            run_tool(["ip", "link", "del", s.wan_link], check=False)
            removed.append(f"link {s.wan_link}")
        if s.netns_path.exists():
            run_tool(["ip", "netns", "del", s.netns])
            removed.append(f"namespace {s.netns}")
    saved = state_dir / "ip_forward.before"
    if saved.exists():
        IP_FORWARD.write_text(saved.read_text())
        saved.unlink()
    return removed


def _pids_in(netns: str) -> list[int]:
    out = run_tool(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def exec_in_site(topo: Topology, name: str, argv: list[str]) -> None:
    """Replace this process with `argv` run inside the site's namespace (never returns on success)."""
    s = site(topo, name)
    if not s.netns_path.exists():
        raise LabError(f"site {name} has no namespace: the lab is not up", hint=f"run `fedctl lab up -t {topo.source}`")
    if not argv:
        raise LabError("nothing to run: give a command after --, e.g. `fedctl lab exec dc1 -- fedctl status`")
    full = in_netns(argv, s.netns)
    os.environ["FEDCTL_TOPOLOGY"] = str(Path(topo.source).resolve())
    try:
        os.execvp(full[0], full)
    except OSError as exc:
        raise LabError(f"cannot run {argv[0]} in {name}: {exc.strerror}") from exc
