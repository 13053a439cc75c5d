"""The unit machina writes for a machine (spec/systemd.md §2), and its least-privilege
form (ours, opt-in): QEMU as a dynamic, unprivileged user in the machine's group, with
systemd's sandboxing, while machina's own steps keep root (`+` prefix)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from machina.config.patterns import join_path
from machina.model import Machine
from machina.plan.devices import SWTPM_RUN_DIR, Plan, TpmUse, group_sockets, tcp_listeners
from machina.qemu.argv import QEMU
from machina.qemu.opts import Opt, keyval
from machina.systemd.unit import (
    Command,
    PathList,
    Raw,
    Section,
    Text,
    Unit,
    Value,
    Word,
    durations,
    section,
    swtpm_unit_name,
)
from machina.systemd.unit import unit_name as unit_name  # re-exported: callers use render

STOP_TIMEOUT = 90
SHUTDOWN_TIMEOUT = STOP_TIMEOUT - 5
PROGRAM = "machina"

#: System calls QEMU never needs. A deny list: the allow list @system-service blocks
#: seccomp(2), so QEMU could not install its own -sandbox and would die of SIGSYS.
#: @privileged is refused by QEMU's own elevateprivileges=deny too. Not @resources:
#: QEMU 7.2 calls some of those at start-up and would die of SIGSYS (measured).
SYSCALL_DENY = ("~@clock @cpu-emulation @debug @module @mount @obsolete @privileged "
                "@raw-io @reboot @swap")


@dataclass(frozen=True, slots=True)
class LeastPrivilege:
    """What the least-privilege unit needs to know about the machine."""

    user: str
    group: str
    writable: tuple[str, ...]       # paths QEMU writes: ReadWritePaths=
    devices: tuple[tuple[str, str], ...]  # (device node, "r" or "rw"): DeviceAllow=
    vfio: bool                      # needs LimitMEMLOCK=infinity
    inet: bool                      # listens on 127.0.0.1 (SPICE, guest agent)
    network: bool                   # has taps (in the host's network namespace)
    created: frozenset[str] = frozenset()  # writable paths prepare creates (the NVRAM)
    group_sockets: bool = False     # SPICE/agent sockets the machine's group connects to
    hidden: tuple[str, ...] = ()    # what QEMU must not reach: InaccessiblePaths= (the TPM
    #                                 state directory: QEMU's group reaches it, for swtpm)

    @classmethod
    def of(cls, machine: Machine, plan: Plan) -> LeastPrivilege:
        writable = tuple(dict.fromkeys(f.path for f in plan.files if f.writable))
        devices: list[tuple[str, str]] = [("/dev/kvm", "rw")]
        if plan.taps:
            devices.append(("/dev/net/tun", "rw"))
        if plan.mdevs:
            devices.append(("/dev/vfio/vfio", "rw"))
            devices.append(("char-vfio", "rw"))
        for f in plan.files:
            if f.path.startswith("/dev/"):
                devices.append((f.path, "rw" if f.writable else "r"))
        # the NVRAM may not exist when systemd sets up the namespace of `prepare`, which
        # creates it: "-" keeps that from failing; QEMU's own namespace has it
        created = frozenset({plan.nvram.path} if plan.nvram else ())
        return cls(machine.qemu_user, machine.group_name, writable, tuple(dict.fromkeys(devices)),
                   bool(plan.mdevs), bool(tcp_listeners(machine)), bool(plan.taps),
                   created, group_sockets(machine),
                   (plan.tpm.state_dir,) if plan.tpm is not None else ())


def possible_units(machine_name: str) -> tuple[str, ...]:
    """Every unit machina may have written for a machine of this name, whatever its config
    says now: its own and each kind of companion (what `remove` and `generate --diff` look
    for, so a companion left from an earlier config is found too)."""
    return (unit_name(machine_name), swtpm_unit_name(machine_name))


def machine_units(machine: Machine) -> tuple[str, ...]:
    """Every unit machina writes for the machine, its own first, then its companions
    (the swtpm unit when it has a TPM).

    The one list `list`, `remove` and `check` take a machine's units from."""
    if machine.attrs.tpm.enabled:
        return (unit_name(machine.name), swtpm_unit_name(machine.name))
    return (unit_name(machine.name),)


def _hardening(least: LeastPrivilege, supplementary: Sequence[str] = ("kvm",),
               umask: str = "0077", primary_group: bool = False) -> list[tuple[str, Value]]:
    """systemd's sandbox for an unprivileged process in the machine's group: a
    supplementary group (QEMU), or the primary one (primary_group: swtpm, whose socket
    and state files then belong to the group without a chown, which @privileged forbids)."""
    groups = [*(() if primary_group else (least.group,)), *supplementary]
    out: list[tuple[str, Value]] = [
        ("DynamicUser", Raw("yes")),
        ("User", Raw(least.user)),
        # the group must exist before the unit starts: `machina generate` creates it
        *((("Group", Raw(least.group)),) if primary_group else ()),
        *((("SupplementaryGroups", Raw(" ".join(groups))),) if groups else ()),
        ("UMask", Raw(umask)),
        ("NoNewPrivileges", Raw("yes")),
        ("CapabilityBoundingSet", Raw("")),
        ("AmbientCapabilities", Raw("")),
        ("ProtectSystem", Raw("strict")),
    ]
    if least.writable:
        out.append(("ReadWritePaths", PathList(least.writable, least.created)))
    if least.hidden:  # "-": prepare may yet create it
        out.append(("InaccessiblePaths", PathList(least.hidden, frozenset(least.hidden))))
    out += [
        ("ProtectHome", Raw("yes")),
        ("PrivateTmp", Raw("yes")),
        ("PrivateMounts", Raw("yes")),
        *((("PrivateNetwork", Raw("yes")),) if not (least.inet or least.network) else ()),
        ("DevicePolicy", Raw("closed")),
    ]
    out += [("DeviceAllow", _Device(dev, mode)) for dev, mode in least.devices]
    out += [
        ("ProtectKernelTunables", Raw("yes")),
        ("ProtectKernelModules", Raw("yes")),
        ("ProtectKernelLogs", Raw("yes")),
        ("ProtectControlGroups", Raw("yes")),
        ("ProtectClock", Raw("yes")),
        ("ProtectHostname", Raw("yes")),
        ("ProtectProc", Raw("invisible")),
        ("ProcSubset", Raw("pid")),
        # QMP is on unix sockets; SPICE and the guest agent listen on 127.0.0.1
        ("RestrictAddressFamilies", Raw("AF_UNIX AF_INET AF_INET6" if least.inet
                                        else "AF_UNIX")),
        ("RestrictNamespaces", Raw("yes")),
        ("RestrictRealtime", Raw("yes")),
        ("RestrictSUIDSGID", Raw("yes")),
        ("LockPersonality", Raw("yes")),
        ("RemoveIPC", Raw("yes")),
        ("KeyringMode", Raw("private")),
        ("SystemCallArchitectures", Raw("native")),
        ("SystemCallFilter", Raw(SYSCALL_DENY)),
    ]
    if least.inet:
        out.append(("IPAddressAllow", Raw("localhost")))
    out.append(("IPAddressDeny", Raw("any")))
    if least.vfio:
        out.append(("LimitMEMLOCK", Raw("infinity")))
    return out


@dataclass(frozen=True, slots=True)
class _Device:
    path: str
    mode: str

    def render(self) -> str:
        if self.path.startswith("/"):
            return PathList((self.path,)).render() + " " + self.mode
        return f"{self.path} {self.mode}"


def render_unit(machine_name: str, options: Sequence[Opt],
                least: LeastPrivilege | None = None, shutdown_timeout: int = 0,
                companions: Sequence[str] = (), group_sockets: bool = False) -> Unit:
    """The unit; shutdown_timeout (s, ours) replaces the 85 s the guest gets to power off
    (systemd's own stop timeout stays 5 s longer)."""
    shutdown = shutdown_timeout or SHUTDOWN_TIMEOUT
    stop = shutdown + (STOP_TIMEOUT - SHUTDOWN_TIMEOUT)
    qemu = Command(((QEMU,), *(o.words() for o in options)))
    # in least-privilege mode machina's own steps run as root ("+"), QEMU does not
    own = "+" if least else ""
    service: list[tuple[str, Value]] = [
        ("Type", Raw("simple")),
        ("ExecStart", qemu),
        ("ExecStartPre", Command.of(PROGRAM, "prepare", machine_name, prefix=own)),
        ("ExecStop", Command.of(PROGRAM, "shutdown", "--system", "--timeout",
                                durations(shutdown), machine_name, prefix=own)),
        ("ExecStopPost", Command.of(PROGRAM, "teardown", machine_name, prefix=own)),
        ("RestartSec", Raw(durations(10))),
        ("TimeoutStopSec", Raw(durations(stop))),
        ("Restart", Raw("on-failure")),
        ("RuntimeDirectory", Word(join_path("machina", machine_name))),
    ]
    if group_sockets and least is None:
        # QEMU runs as root: its sockets get g+rw in the 2770 root:GROUP directory
        service.append(("UMask", Raw("0007")))
    if least is not None:
        # group sockets: QEMU's sockets get g+rw (connect(2) needs write permission)
        service += _hardening(least, umask="0007" if least.group_sockets else "0077")
    # companions (the swtpm unit) start first, and stopping one stops QEMU (BindsTo=);
    # they stop when QEMU does (StopWhenUnneeded= there)
    bound: list[tuple[str, Value]] = [(k, Raw(c)) for c in companions
                                      for k in ("BindsTo", "After")]
    return Unit((
        section(
            "Unit",
            ("Description", Text(f"machina KVM {machine_name}")),
            ("Wants", Raw("network-online.target")),
            ("After", Raw("network-online.target")),
            *bound,
            ("StartLimitIntervalSec", Raw(durations(60))),
            ("StartLimitBurst", Raw("2")),
        ),
        Section("Service", tuple(service)),
        section("Install", ("WantedBy", Raw("multi-user.target")),
                *(("Also", Raw(c)) for c in companions)),
    ))


def render_machine_unit(machine: Machine, plan: Plan) -> Unit:
    least = LeastPrivilege.of(machine, plan) if machine.least else None
    return render_unit(machine.name, plan.options(), least,
                       machine.attrs.shutdown_timeout, machine_units(machine)[1:],
                       group_sockets(machine))


SWTPM = "swtpm"


def swtpm_argv(machine: Machine, tpm: TpmUse) -> tuple[str, ...]:
    """swtpm in the foreground on the machine's state, its control socket for QEMU (the
    swtpm unit's ExecStart=, and what `machina run` starts)."""
    ctrl = keyval(("type", "unixio"), ("path", tpm.socket), ("mode", "0660"))
    state = keyval(("dir", tpm.state_dir), ("mode", "0660" if machine.least else "0600"))
    return (SWTPM, "socket", "--tpm2", "--tpmstate", state, "--ctrl", ctrl,
            "--log", "level=1")


def render_swtpm_unit(machine: Machine, tpm: TpmUse) -> Unit:
    """The companion unit that runs the machine's software TPM (swtpm) in the foreground.

    `machina prepare --tpm` manufactures the TPM state once (never overwrites it); swtpm
    ends by itself when QEMU shuts the TPM down, and StopWhenUnneeded= stops it when QEMU's
    unit stops otherwise. In least-privilege mode swtpm runs as its own dynamic user in the
    machine's group, which alone can reach the state and the control socket."""
    name = machine.name
    least = machine.least
    swtpm = Command.of(*swtpm_argv(machine, tpm))
    service: list[tuple[str, Value]] = [
        ("Type", Raw("simple")),
        # "+": outside the sandbox below, whose read-write paths prepare may yet create
        ("ExecStartPre", Command.of(PROGRAM, "prepare", "--tpm", name, prefix="+")),
        ("ExecStart", swtpm),
        ("RuntimeDirectory", Word(join_path("machina-swtpm", name))),
    ]
    writable = [tpm.state_dir]
    if os.path.dirname(tpm.socket) != join_path(SWTPM_RUN_DIR, name):
        writable.append(os.path.dirname(tpm.socket))
    # prepare creates them (the state on the first start): "-", so systemd does not fail
    # while they are missing; swtpm's own namespace, set up after prepare, has them
    created = frozenset(writable)
    if least:
        service += _hardening(LeastPrivilege(
            user=machine.swtpm_user, group=machine.group_name, writable=tuple(writable),
            devices=(), vfio=False, inet=False, network=False, created=created),
            supplementary=(), umask="0007", primary_group=True)
    else:
        service += [
            ("ProtectSystem", Raw("strict")),
            ("ReadWritePaths", PathList(tuple(writable), created)),
            ("ProtectHome", Raw("yes")),
            ("PrivateTmp", Raw("yes")),
            ("PrivateNetwork", Raw("yes")),
            ("NoNewPrivileges", Raw("yes")),
        ]
    return Unit((
        section(
            "Unit",
            ("Description", Text(f"machina swtpm {name}")),
            ("StopWhenUnneeded", Raw("yes")),
        ),
        Section("Service", tuple(service)),
        section("Install", ("WantedBy", Raw(unit_name(name)))),
    ))


def render_machine_units(machine: Machine, plan: Plan) -> tuple[tuple[str, Unit], ...]:
    """Every unit of the machine, by file name: its own, then its companions."""
    units = [(unit_name(machine.name), render_machine_unit(machine, plan))]
    if plan.tpm is not None:
        units.append((swtpm_unit_name(machine.name), render_swtpm_unit(machine, plan.tpm)))
    return tuple(units)
