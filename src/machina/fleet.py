"""What must be unique among machines (`machina check`): on one host, and across the hosts
of a fleet. Pure: the machines are built already; `runtime/check.py` adds host facts.

| kind      | unique among                                   | why                                 |
|-----------|------------------------------------------------|-------------------------------------|
| mac       | a host's NICs; NICs on same-named networks of  | two NICs with one MAC on one L2     |
|           | the fleet's hosts                              | network steal each other's frames   |
| port      | a host's SPICE and guest-agent ports           | both listen on the host's 127.0.0.1 |
| uuid      | machine ids, on a host and across the fleet    | every derived identifier hashes it  |
| wwn       | a host's disks                                 | multipath and guests identify disks |
| serial    | a host's disks                                 | by them                             |
| tap       | a host's tap names                             | one kernel interface each           |
| unit      | a host's systemd units (companions included)   | one unit file each                  |
| mdev-uuid | a host's mediated devices                      | one sysfs device each               |
| volume    | a host's writable files (disks, NVRAM, TPM     | two writers corrupt a disk; a       |
|           | state), also against a machine reading one     | reader sees it change under it      |
| socket    | a host's QMP and TPM control socket paths      | the second replaces the first's     |

`generate` refuses a machine with a collision of the GENERATE_KINDS (issue 7).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from machina import identity
from machina.errors import Failure
from machina.model import Machine
from machina.plan.devices import Plan, effective_port, qmp_socket_paths, tcp_listeners

#: What `generate` refuses to share between machines (the rest is for `check` to report).
GENERATE_KINDS = ("tap", "volume", "socket")


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One finding of `check` (docs/json.md `check --json` PROBLEM)."""

    kind: str
    message: str
    value: str | None = None
    machines: tuple[str, ...] = ()
    severity: str = "error"
    file: str | None = None
    path: str | None = None
    hints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A built machine of one host config directory."""

    host: str               # the host's config directory, as given
    label: str              # how problems name the machine: NAME, or DIR:NAME in a fleet
    file: str
    machine: Machine
    plan: Plan
    units: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Use:
    """One use of an identifier: by which machine, as what (a NIC, a disk, …)."""

    member: Member
    item: str


@dataclass
class _Index:
    uses: dict[tuple[str, str, str], list[_Use]] = field(default_factory=dict)

    def add(self, kind: str, scope: str, value: str, member: Member, item: str) -> None:
        self.uses.setdefault((kind, scope, value), []).append(_Use(member, item))


WHAT = {"mac": "MAC address", "port": "port", "uuid": "machine id", "wwn": "WWN",
        "serial": "disk serial", "tap": "tap name", "unit": "systemd unit",
        "mdev-uuid": "mediated-device UUID", "volume": "writable file",
        "socket": "socket"}


def _ports(m: Machine) -> Iterable[tuple[str, int]]:
    a = m.attrs
    settings = {"SPICE": (a.spice_port, a.spice_port_pattern),
                "guest agent": (a.agent_port, a.agent_port_pattern)}
    for what in tcp_listeners(m):
        port, pattern = settings[what]
        yield what, effective_port(port, pattern, m.vars, strict=True)


def _index_member(index: _Index, x: Member, fleet: bool, written: set[str]) -> None:
    m, host = x.machine, x.host
    for c in m.connections:
        index.add("mac", host, c.mac.lower(), x, f"connection {c.name}")
        if fleet:
            index.add("mac", f"network {c.network}", c.mac.lower(), x, f"connection {c.name}")
        index.add("tap", host, identity.link_name(m.name, c.name), x, f"connection {c.name}")
    for what, port in _ports(m):
        index.add("port", host, str(port), x, what)
    index.add("uuid", host, str(m.id), x, "id")
    if fleet:
        index.add("uuid", "fleet", str(m.id), x, "id")
    for v in m.volumes:
        if not v.wwn.is_zero:
            index.add("wwn", host, v.wwn.display(), x, f"volume {v.name}")
        if v.serial:
            index.add("serial", host, v.serial, x, f"volume {v.name}")
    for unit in x.units:
        index.add("unit", host, unit, x, "unit")
    for d in m.devices:
        index.add("mdev-uuid", host, str(d.id), x, f"device {d.name}")
    mine = dict.fromkeys(f.path for f in x.plan.files if f.writable)
    for f in mine:
        index.add("volume", host, f, x, "writable file")
    for f in dict.fromkeys(f.path for f in x.plan.files if not f.writable):
        if f in written and f not in mine:
            index.add("volume", host, f, x, "read-only file")
    if x.plan.tpm is not None:  # one TPM per machine: a shared one is one identity, and
        # the second swtpm fails on its lock
        index.add("volume", host, x.plan.tpm.state_dir, x, "TPM state")
    if m.attrs.qmp_enabled:
        for path in qmp_socket_paths(m.name, m.attrs.qmp_names, m.attrs.qmp_paths):
            index.add("socket", host, path, x, "QMP")
    if x.plan.tpm is not None:  # each swtpm replaces the socket it finds with its own
        index.add("socket", host, x.plan.tpm.socket, x, "TPM control socket")


#: How to resolve each kind of collision.
FIXES = {
    "mac": 'give one of the connections its own "mac" (machina gen-mac makes one)',
    "port": "give each machine its own port (a port-pattern from the machine's vars, e.g. "
            '"59${seat}")',
    "uuid": 'give each machine its own "id" (machina gen-id makes one): a copied machine '
            "file keeps the original's, and every derived identifier with it",
    "wwn": 'drop the explicit "wwn" of one volume (machina derives a unique one)',
    "serial": 'drop the explicit "serial" of one volume (machina derives a unique one)',
    "tap": "rename a machine or a connection: the tap is named MACHINE.CONNECTION",
    "unit": 'give each machine file its own "name" (or none: the file name)',
    "mdev-uuid": 'drop the explicit "id" of one device (machina derives a unique one)',
    "volume": "give each machine its own file (a pool pattern with ${machine-name})",
    "socket": "give each machine its own QMP socket names and paths and its own "
              "attrs.tpm.socket.path (or none: swtpm's runtime directory)",
}


def find_collisions(members: Sequence[Member]) -> list[Problem]:
    """Every identifier that two uses share (two machines, or two items of one machine).

    Across hosts (a fleet of several config directories) only MACs on networks of the
    same name and machine ids are compared; the rest is per host."""
    fleet = len({x.host for x in members}) > 1
    index = _Index()
    written = {f.path for x in members for f in x.plan.files if f.writable}
    for x in members:
        _index_member(index, x, fleet, written)
    problems: list[Problem] = []
    for (kind, scope, value), uses in index.uses.items():
        if len(uses) < 2:
            continue
        if ((scope == "fleet" or scope.startswith("network "))
                and len({u.member.host for u in uses}) < 2):
            continue  # the per-host scope reports it
        labels = tuple(dict.fromkeys(u.member.label for u in uses))
        where = "; ".join(f"{u.member.label} ({u.item})" for u in uses)
        scope_text = ("on the fleet's networks named " + scope.split(" ", 1)[1]
                      if scope.startswith("network ") else
                      "across the fleet" if scope == "fleet" else "on one host")
        problems.append(Problem(
            kind=kind, value=value, machines=labels, file=uses[-1].member.file,
            message=f"{WHAT[kind]} {value} is used {len(uses)} times {scope_text}: {where}",
            hints=(FIXES[kind],) if kind in FIXES else ()))
    return sorted(problems, key=lambda p: (p.kind, p.value or "", p.machines))


def problem_data(p: Problem) -> dict[str, object]:
    """A PROBLEM of docs/json.md (`check --json`)."""
    return {"kind": p.kind, "severity": p.severity, "value": p.value,
            "machines": list(p.machines), "message": p.message, "file": p.file,
            "path": p.path, "hints": list(p.hints)}


_EXPOSED = {
    "SPICE": ("with no ticket: every local user can watch its display, type on it and "
              "redirect USB devices to it", '"attrs": {"spice": {"unix": true}}'),
    "guest agent": ("with no password: every local user can send it commands "
                    "(guest-exec runs programs in the guest, as SYSTEM in Windows)",
                    '"attrs": {"agent": {"qemu": {"unix": true}}}'),
}


def exposures(m: Machine) -> list[Failure]:
    """Warnings for what listens on 127.0.0.1, where every local user can connect (the
    reference's form; issue 7, item 12). Kind "exposure" in `check`."""
    out = []
    for what, port in _ports(m):
        text, setting = _EXPOSED[what]
        out.append(Failure(
            f"machine {m.name}: {what} listens on 127.0.0.1:{port} {text}",
            (f"set {setting}: a socket in /run/machina/{m.name}/group that only root and "
             f"the group {m.group_name} can use",)))
    return out


def exposure_problems(x: Member) -> list[Problem]:
    """`exposures` as `check` problems (warnings)."""
    return [Problem(kind="exposure", severity="warning", value=None, machines=(x.label,),
                    file=x.file, message=str(e), hints=e.fixes)
            for e in exposures(x.machine)]
