"""A resolved machine + the host config → the machine's hardware, as QEMU options.

The build follows spec/qemu.md §2 step by step; the first error aborts it. Nothing here
touches the host: paths are computed, never opened.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from machina import identity
from machina.config.firmware import Chosen, default_nvram, find_firmware
from machina.config.load import DISK_POOL_TYPES, MAX_TEXT_BYTES, _key_ptr
from machina.config.patterns import clean_path, expand, join_path, mapping_lookup, parse_port
from machina.config.resolve import union
from machina.config.schema import HostFile, Storage, Volume
from machina.errors import ConfigError, Failure, PlanError, wrap
from machina.model import Machine
from machina.plan.pcie import Topology
from machina.qemu.opts import Opt, clean, opt, plain

RUN_DIR = "/run/machina"
DEFAULT_UP = "/usr/bin/machina-ifup"
DEFAULT_DOWN = "/usr/bin/machina-ifdown"
QXL_MEMORY = 67108864
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with the final NUL
#: Pool types whose volumes QEMU always opens read-only (CDs and USB installation media).
MEDIA_TYPES = ("iso-ahci", "iso-scsi", "iso-usb")
POOL_TYPES = (*DISK_POOL_TYPES, *MEDIA_TYPES, "firmware")


def read_only(pool: Storage, volume: Volume) -> bool:
    """Whether QEMU opens the volume read-only: a read-only pool or volume, or media."""
    return pool.readonly or volume.readonly or pool.type in MEDIA_TYPES

#: attrs.enlightenments.level "full" (ours): the reference's later set (spec/later.md §7),
#: without its vendor-specific extras (hv-avic for AMD, hv-evmcs for Intel): those need the
#: host CPU's vendor, which generation does not read.
HYPERV_FULL = ("hv-relaxed", "hv-vapic", "hv-spinlocks=0x1fff", "hv-vpindex", "hv-runtime",
               "hv-time", "hv-synic", "hv-stimer", "hv-tlbflush", "hv-ipi", "hv-frequencies",
               "hv-reenlightenment", "hv-stimer-direct", "hv-emsr-bitmap", "hv-xmm-input",
               "hv-tlbflush-ext", "hv-tlbflush-direct")
_QEMU_ID = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")


def node_name(name: str) -> str:
    """The name QEMU sees for a block node (decisions D6)."""
    if len(name) <= 31 and _QEMU_ID.fullmatch(name):
        return name
    return identity.hashed_name(name)


# --- ports and paths (shared with `cat`) ----------------------------------------------------

def effective_port(port: int, pattern: str, vars: dict[str, str], *, strict: bool,
                   what: str = "") -> int:
    """A fixed port when set, else the port pattern expanded and parsed (config.md §6.4)."""
    if port != 0:
        return port
    lookup = mapping_lookup(vars)
    return parse_port(pattern, expand(pattern, lookup, strict=strict, where=what))


def storage_lookup(machine: Machine, volume: str) -> Callable[[str], str | None]:
    builtins = {
        "machine-name": machine.name,
        "machine-description": machine.description,
        "machine-id": str(machine.id),
    }
    return mapping_lookup(builtins, {"volume": volume}, machine.vars)


def volume_path(machine: Machine, volume: Volume, pool_name: str, pool: Storage) -> str:
    """Where a volume's file lives (config.md §6.3)."""
    if pool.pattern:
        p = expand(pool.pattern, storage_lookup(machine, volume.name), strict=True,
                   where=f'storage pool "{pool_name}", volume "{volume.name}"')
    elif pool.type:
        p = volume.name + "." + pool.type
    else:
        p = volume.name + ".raw"
    path = join_path(pool.path, p)
    if len(path.encode()) > MAX_TEXT_BYTES:
        raise PlanError(f'volume "{volume.name}" of storage pool "{pool_name}" would be a '
                        f"path of {len(path.encode())} bytes",
                        (f"a path is at most {MAX_TEXT_BYTES} bytes (PATH_MAX); check the "
                         "pool's pattern and the variables it uses",))
    return path


def inside_pool(path: str, pool: Storage) -> bool:
    """Whether a volume's path stays below its pool's path (a `..` from a variable or the
    description must not lead it elsewhere)."""
    if pool.path == "":
        return not (path.startswith("/") or path == ".." or path.startswith("../"))
    root = clean_path(pool.path)
    return path != root and path.startswith(root if root == "/" else root + "/")


def qmp_socket_paths(machine_name: str, names: tuple[str, ...],
                     paths: tuple[str, ...]) -> tuple[str, ...]:
    """Every QMP socket in order: systemd, command ×2, named, pathed (qemu.md §10.1)."""
    def sock(x: str) -> str:
        return join_path(RUN_DIR, machine_name, x + ".qmp.socket")

    if machine_name:
        system: tuple[str, ...] = (sock("systemd.0"),)
        command: tuple[str, ...] = (sock("command.0"), sock("command.1"))
        named = tuple(sock(n) for n in names)
    else:
        system, command, named = (), (), ()
    return union(union(system, command), union(named, paths))


def system_socket(machine_name: str) -> str:
    """runtime/shutdown.py's SYSTEM_SOCKET (a test checks they agree)."""
    return join_path(RUN_DIR, machine_name, "systemd.0.qmp.socket")


def group_dir(machine_name: str) -> str:
    """Where the sockets root and the machine's group may use are (SPICE and the guest
    agent with "unix": ours): root:GROUP, mode 2770, made by `prepare`."""
    return join_path(RUN_DIR, machine_name, "group")


def spice_socket(machine_name: str) -> str:
    return join_path(group_dir(machine_name), "spice.socket")


def agent_socket(machine_name: str) -> str:
    return join_path(group_dir(machine_name), "agent.socket")


def group_sockets(machine: Machine) -> bool:
    """Whether SPICE or the guest agent listen on the machine's group sockets."""
    a = machine.attrs
    return (a.spice_enabled and a.spice_unix) or (a.agent_enabled and a.agent_unix)


def tcp_listeners(machine: Machine) -> tuple[str, ...]:
    """What listens on 127.0.0.1, where every local user can connect."""
    a = machine.attrs
    return tuple(what for what, on in (("SPICE", a.spice_enabled and not a.spice_unix),
                                       ("guest agent", a.agent_enabled and not a.agent_unix))
                 if on)


def command_sockets(machine_name: str) -> tuple[str, str]:
    return (join_path(RUN_DIR, machine_name, "command.0.qmp.socket"),
            join_path(RUN_DIR, machine_name, "command.1.qmp.socket"))


def nvram_path(machine: Machine, host: HostFile) -> str:
    """The machine's own UEFI variables file with a firmware profile (ours):
    attrs.firmware.vars on a writable firmware pool, else the default path."""
    volume = machine.attrs.firmware_vars
    if volume.is_empty:
        return default_nvram(machine.name)
    pool = host.storage.get(volume.storage)
    if pool is None or pool.type != "firmware" or pool.readonly or volume.readonly:
        raise PlanError(
            f'firmware variables {volume.name} use storage pool "{volume.storage}", which is '
            'not a writable pool of type "firmware"',
            ("the machine's NVRAM needs a writable pool of type firmware in machina.conf.json "
             "at $.storage, or no attrs.firmware.vars (default: "
             f"{default_nvram(machine.name)})",))
    return volume_path(machine, volume, volume.storage, pool)


# --- the plan ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FileUse:
    """A file QEMU opens: what prepare makes usable by the machine's group (least mode)."""

    path: str
    writable: bool


@dataclass(frozen=True, slots=True)
class Tap:
    """A tap machina creates itself in least-privilege mode (QEMU gets script=no)."""

    link: str
    bridge: str
    network: str


SANDBOX = (("obsolete", "deny"), ("elevateprivileges", "deny"), ("spawn", "deny"),
           ("resourcecontrol", "deny"))


@dataclass(frozen=True, slots=True)
class Image:
    """A qcow2 volume: its backing chain must stay in its pool. Generation reads no file,
    so `prepare` (and `generate`, where the file is reachable) read the headers."""

    path: str
    pool: str          # the pool's name
    pool_path: str     # the pool's path: every file of the chain must be below it
    volume: str


@dataclass(frozen=True, slots=True)
class Nvram:
    """The machine's own UEFI variables: `prepare` copies the template when the file is
    missing, and never touches an existing file (it holds the machine's boot entries and
    keys)."""

    path: str
    template: str


SWTPM_RUN_DIR = "/run/machina-swtpm"   # not below /run/machina/NAME: QEMU's unit owns that


def swtpm_socket(machine_name: str, configured: str = "") -> str:
    """swtpm's control socket: attrs.tpm.socket.path, else in the swtpm unit's own
    runtime directory."""
    return configured or join_path(SWTPM_RUN_DIR, machine_name, "control.socket")


@dataclass(frozen=True, slots=True)
class TpmUse:
    """The machine's software TPM: where swtpm keeps its state and listens."""

    data_dir: str     # the `tpm-data` volume: a directory machina owns
    state_dir: str    # data_dir/state: swtpm's --tpmstate (as the reference)
    socket: str       # the control socket QEMU connects to


def tpm_use(machine: Machine, host: HostFile) -> TpmUse | None:
    """The TPM of a machine with attrs.tpm.enabled (its data volume was checked by
    resolve: it names a `tpm-data` pool)."""
    tpm = machine.attrs.tpm
    if not tpm.enabled:
        return None
    pool = host.storage.get(tpm.data.storage)
    if pool is None or pool.type != "tpm-data":
        raise PlanError(f'the TPM data volume uses storage pool "{tpm.data.storage}", which '
                        'is not a pool of type "tpm-data"')
    data = volume_path(machine, tpm.data, tpm.data.storage, pool)
    socket = swtpm_socket(machine.name, tpm.socket_path)
    for what, path in (("TPM data directory", data), ("TPM socket path", socket)):
        if not path.startswith("/") or "," in path or any(not c.isprintable() for c in path):
            raise PlanError(f"the {what} {path!r} cannot be given to swtpm",
                            ("swtpm needs an absolute path without commas or control "
                             "characters (it cannot escape them)",))
    return TpmUse(data, join_path(data, "state"), socket)


@dataclass
class Plan:
    """Every QEMU option of one machine, by section (qemu.md §3–5)."""

    settings: list[Opt] = field(default_factory=list)
    iothreads: int = 0
    blockdevs: list[Opt] = field(default_factory=list)
    chardevs: list[Opt] = field(default_factory=list)
    netdevs: list[Opt] = field(default_factory=list)
    topology: Topology = field(default_factory=Topology)
    # what the runtime needs to know
    mdevs: list[tuple[str, str, str]] = field(default_factory=list)  # (class, name, uuid)
    files: list[FileUse] = field(default_factory=list)
    taps: list[Tap] = field(default_factory=list)
    isa: list[Opt] = field(default_factory=list)  # devices outside PCIe (ours: COM1, pvpanic)
    images: list[Image] = field(default_factory=list)  # qcow2 images: prepare checks them
    nvram: Nvram | None = None
    firmware: Chosen | None = None
    tpm: TpmUse | None = None

    def options(self) -> tuple[Opt, ...]:
        resources = [opt("object", "iothread", ("id", f"iothread.{i}"))
                     for i in range(self.iothreads)]
        tpm = () if self.tpm is None else (
            opt("tpmdev", "emulator", ("id", "tpm.0"), ("chardev", "tpm.0.socket")),)
        return (*self.settings, *resources, *self.blockdevs, *self.chardevs, *tpm,
                *self.netdevs, *self.topology.opts(), *self.isa)


def _nic(bus: str, *, mac: str, netdev: str) -> Opt:
    return opt("device", "virtio-net-pci", ("bus", bus), ("mac", mac), ("netdev", netdev))


def _virtio_blk(bus: str, *, id: str, drive: str, serial: str, bootindex: int | None) -> Opt:
    return opt("device", "virtio-blk-pci", ("id", id), ("bus", bus),
               ("iothread", "iothread.0"), ("num-queues", 4), ("drive", drive),
               ("serial", serial or None), ("bootindex", bootindex))


def _vfio(bus: str, *, id: str, sysfs: str) -> Opt:
    return opt("device", "vfio-pci", ("id", id), ("bus", bus), ("sysfsdev", sysfs))


class _Builder:
    def __init__(self, machine: Machine, host: HostFile) -> None:
        self.m = machine
        self.host = host
        self.plan = Plan()
        self.topo = self.plan.topology
        self.nodes: set[str] = set()
        self.boot_index = 0
        self.pflash: list[str] = []
        self.globals: list[tuple[str, str, str]] = []
        self.mons: list[str] = []
        self.spice: Opt | None = None
        self.blocks = 0  # virtio-blk devices (raw-block volumes)

    # block nodes
    def _add_node(self, name: str, what: str, props: list[tuple[str, str | int | None]],
                  driver: str) -> None:
        if name == "":
            raise PlanError(f"an empty node name was provided when creating a {what} node")
        if name in self.nodes:
            raise PlanError(f'failed to attach the "{name}" {what} node to the node graph: '
                            "a node with the given node name already exists")
        self.nodes.add(name)
        self.plan.blockdevs.append(opt("blockdev", None, ("driver", driver),
                                       ("node-name", node_name(name)), *props))

    def file_node(self, name: str, path: str, readonly: bool, *, driver: str = "file",
                  discard: bool = False) -> None:
        if path == "":
            raise PlanError(
                f'an empty path was provided when creating the "{name}" file protocol node')
        self.plan.files.append(FileUse(path, not readonly))
        self._add_node(name, "file protocol", [("read-only", "on" if readonly else None),
                                               ("discard", "unmap" if discard else None),
                                               ("filename", path)], driver)

    def format_node(self, name: str, file: str, readonly: bool, *, driver: str = "raw",
                    discard: bool = False, detect_zeroes: str = "") -> None:
        self._add_node(name, f"{driver} format", [
            ("read-only", "on" if readonly else None),
            ("discard", "unmap" if discard else None),
            ("detect-zeroes", detect_zeroes or None),
            ("file", node_name(file))], driver)

    def iothread(self) -> None:
        if self.plan.iothreads == 0:
            self.plan.iothreads = 1

    # storage
    def pool(self, volume: Volume) -> tuple[str, Storage]:
        pool = self.host.storage.get(volume.storage)
        if pool is None:
            raise PlanError(f"volume {volume.name} uses an unspecified machina storage pool: "
                            f"{volume.storage}",
                            ("storage pools are defined in machina.conf.json at $.storage",),
                            ("volumes", volume.name, "storage"))
        if pool.type not in POOL_TYPES:
            raise PlanError(f'storage pool "{volume.storage}" has storage type "{pool.type}" '
                            "which has no handler defined",
                            ("a pool's type is one of " + ", ".join(POOL_TYPES),))
        if volume.discard and pool.type not in DISK_POOL_TYPES:
            raise PlanError(f'volume {volume.name} asks for discard, but its pool '
                            f'"{volume.storage}" of type "{pool.type}" holds no writable disk',
                            ("discard applies to volumes on pools of type "
                             + ", ".join(DISK_POOL_TYPES),), ("volumes", volume.name, "discard"))
        return volume.storage, pool

    def next_boot(self, volume: Volume) -> int | None:
        if not volume.bootable:
            return None
        self.boot_index += 1
        return self.boot_index

    def firmware_node(self, volume: Volume, pool: Storage) -> str:
        return volume.name if pool.readonly or volume.readonly else f"{self.m.name}-{volume.name}"

    def apply_volume(self, volume: Volume) -> None:
        pool_name, pool = self.pool(volume)
        path = volume_path(self.m, volume, pool_name, pool)
        if not inside_pool(path, pool):
            raise ConfigError(
                self.host.path, _key_ptr(_key_ptr("$.storage", pool_name), "pattern"),
                f'volume "{volume.name}" of machine "{self.m.name}" would be {path}, '
                f'outside the pool\'s path "{pool.path}"',
                ("a storage pattern, and the variables and description it uses, must not "
                 "lead out of the pool (no \"..\")",))
        m, v = self.m.name, volume.name
        readonly = read_only(pool, volume)
        # ours, opt-in (D21): thin storage passes the guest's discards on
        discard = pool.discard or volume.discard
        zeroes = pool.detect_zeroes or ("unmap" if discard else "")
        match pool.type:
            case "raw" | "qcow2":
                if not volume.wwn.is_zero and volume.wwn.naa == 6:
                    raise PlanError(
                        f"volume {v} has a 16-byte world wide name ({volume.wwn.display()}), "
                        "which QEMU cannot present", ("QEMU's wwn property is 64 bits: use an "
                                                      "8-byte WWN (NAA type 5)",))
                self.file_node(f"{m}-{v}-file", path, readonly, discard=discard)
                self.iothread()
                self.topo.controller("scsi")
                self.format_node(f"{m}-{v}", f"{m}-{v}-file", readonly, driver=pool.type,
                                 discard=discard, detect_zeroes=zeroes)
                if pool.type == "qcow2":
                    self.plan.images.append(Image(path, pool_name, pool.path, v))
                self.topo.add_scsi(
                    "scsi-hd", node_name(f"{m}-{v}"),
                    ("wwn", None if volume.wwn.is_zero else volume.wwn.display()),
                    ("serial", volume.serial or None), ("bootindex", self.next_boot(volume)))
            case "raw-block":
                # a block device (zvol, LV, disk): its own root port and virtio-blk, as
                # the reference's later raw-block (spec/later.md §4); no WWN there
                self.file_node(f"{m}-{v}-file", path, readonly, driver="host_device",
                               discard=discard)
                self.iothread()
                self.format_node(f"{m}-{v}", f"{m}-{v}-file", readonly, discard=discard,
                                 detect_zeroes=zeroes)
                self.topo.add_device(partial(
                    _virtio_blk, id=f"block.{self.blocks}", drive=node_name(f"{m}-{v}"),
                    serial=volume.serial, bootindex=self.next_boot(volume)))
                self.blocks += 1
            case "iso-ahci":
                self.file_node(v, path, True)
                self.topo.add_sata_cd(node_name(v))
            case "iso-scsi":
                self.file_node(v, path, True)
                self.iothread()
                self.topo.controller("scsi")
                self.topo.add_scsi("scsi-cd", node_name(v))
            case "iso-usb":
                self.file_node(v, path, True)
                self.topo.add_usb("usb-storage", ("drive", node_name(v)))
            case "firmware":
                self.file_node(self.firmware_node(volume, pool), path, readonly)
            case _:
                raise AssertionError(pool.type)

    # steps
    def firmware_profile(self, chosen: Chosen) -> None:
        """A host firmware by profile (ours): code read-only, the machine's own NVRAM
        (attrs.firmware.vars if given, else the default path) created from the template."""
        fw = chosen.firmware
        vars_volume = self.m.attrs.firmware_vars
        nvram = nvram_path(self.m, self.host)
        if vars_volume.is_empty:
            vars_node = "firmware.vars"
        else:
            vars_node = self.firmware_node(vars_volume, self.pool(vars_volume)[1])
        self.file_node("firmware.code", fw.code, True)
        self.file_node(vars_node, nvram, False)
        self.pflash = [node_name("firmware.code"), node_name(vars_node)]
        self.plan.nvram = Nvram(nvram, fw.vars_template)
        self.plan.firmware = chosen
        if fw.smm:
            self.globals.append(("cfi.pflash01", "secure", "on"))

    def firmware(self) -> None:
        chosen = find_firmware(self.m, self.host)
        if chosen is not None:
            self.firmware_profile(chosen)
            return
        code = self.m.attrs.firmware_code
        if code.is_empty:
            return
        volumes = [code]
        if not self.m.attrs.firmware_vars.is_empty:
            volumes.append(self.m.attrs.firmware_vars)
        for volume in volumes:
            pool_name, pool = self.pool(volume)
            if pool.type != "firmware":
                raise PlanError(
                    f'firmware volume {volume.name} uses storage pool "{pool_name}" of type '
                    f'"{pool.type}"', ('firmware code and variables need a pool of type '
                                       '"firmware"',))
            self.pflash.append(node_name(self.firmware_node(volume, pool)))
        self.globals.append(("cfi.pflash01", "secure", "on"))
        for volume in volumes:
            self.apply_volume(volume)

    def tpm(self) -> None:
        use = tpm_use(self.m, self.host)
        if use is None:
            return
        self.plan.tpm = use
        # a client of swtpm's control socket; first in the chardev list (later.md §8)
        self.plan.chardevs.append(opt("chardev", "socket", ("id", "tpm.0.socket"),
                                      ("path", use.socket)))
        self.topo.add_tpm("tpm.0")

    def qmp(self) -> None:
        a = self.m.attrs
        if not a.qmp_enabled:
            return
        paths = qmp_socket_paths(self.m.name, a.qmp_names, a.qmp_paths)
        if not paths:
            raise PlanError("no socket paths were provided for QMP")
        own = join_path(RUN_DIR, self.m.name) + "/"
        for i, path in enumerate(paths):
            if path == "":
                raise PlanError("the unix socket has an empty socket path")
            if len(path.encode()) > SOCKET_PATH_MAX:
                raise PlanError(f"the QMP socket path {path} is longer than the "
                                f"{SOCKET_PATH_MAX} bytes a unix socket path may have")
            if self.m.least and not path.startswith(own):
                raise PlanError(
                    f"the QMP socket path {path} (attrs.qmp.sockets.paths) is outside "
                    f"{own}, where QEMU, unprivileged, cannot create it",
                    ('in least-privilege mode give such sockets by "names"',))
            self.plan.chardevs.append(opt("chardev", "socket", ("id", f"qmp.{i}"),
                                          ("server", "on"), ("wait", "off"), ("path", path)))
            self.mons.append(f"qmp.{i}")

    def port(self, port: int, pattern: str, what: str) -> int:
        try:
            value = effective_port(port, pattern, self.m.vars, strict=True, what=what)
        except Failure as exc:
            raise wrap(f"failed to determine {what}", exc) from exc
        if not 1 <= value <= 65535:
            raise PlanError(f"failed to determine {what}: port {value} is out of range",
                            ("ports are 1 to 65535",))
        return value

    def agent(self) -> None:
        a = self.m.attrs
        if not a.agent_enabled:
            return
        if a.agent_unix:
            self.plan.chardevs.append(opt("chardev", "socket", ("id", "guestagent"),
                                          ("path", agent_socket(self.m.name)),
                                          ("server", "on"), ("wait", "off")))
        else:
            port = self.port(a.agent_port, a.agent_port_pattern, "QEMU Agent port")
            self.plan.chardevs.append(opt("chardev", "socket", ("id", "guestagent"),
                                          ("host", "127.0.0.1"), ("port", port),
                                          ("server", "on"), ("wait", "off"), ("nodelay", "on")))
        self.topo.add_serial_port("guestagent", "org.qemu.guest_agent.0")

    def spice_step(self) -> None:
        a = self.m.attrs
        if not a.spice_enabled:
            return
        if a.spice_unix:
            self.spice = opt("spice", None, ("unix", "on"), ("addr", spice_socket(self.m.name)),
                             ("disable-ticketing", "on"))
        else:
            port = self.port(a.spice_port, a.spice_port_pattern, "spice port")
            self.spice = opt("spice", None, ("port", port), ("addr", "127.0.0.1"),
                             ("disable-ticketing", "on"))
        self.globals.append(("qxl-vga", "ram_size", str(QXL_MEMORY)))
        self.globals.append(("qxl-vga", "vram_size", str(QXL_MEMORY)))
        displays = a.spice_displays if 1 <= a.spice_displays <= 4 else (
            4 if a.spice_displays > 4 else 1)
        for _ in range(displays):
            self.topo.add_qxl()
        self.plan.chardevs.append(opt("chardev", "spicevmc", ("id", "vdagent"), ("debug", 0),
                                      ("name", "vdagent")))
        self.topo.add_serial_port("vdagent", "com.redhat.spice.0")
        self.topo.add_usb("usb-tablet")
        for j in range(2):
            self.plan.chardevs.append(opt("chardev", "spicevmc", ("id", f"usbredir.{j}"),
                                          ("debug", 0), ("name", "usbredir")))
            self.topo.add_usb("usb-redir", ("chardev", f"usbredir.{j}"))

    def serial(self) -> None:
        """COM1 on QEMU's standard output (ours): the journal under systemd."""
        if not self.m.attrs.serial:
            return
        self.plan.chardevs.append(opt("chardev", "stdio", ("id", "console.0")))
        self.plan.isa.append(opt("device", "isa-serial", ("id", "com1"),
                                      ("chardev", "console.0")))

    def pvpanic(self) -> None:
        """The ISA pvpanic device (ours, opt-in): I/O port 0x505, no PCI address, so
        enabling it moves no other device (the reference's later pvpanic-pci took topology
        index 0 and shifted every PCI address by one)."""
        if self.m.attrs.pvpanic:
            self.plan.isa.append(opt("device", "pvpanic", ("id", "pvpanic")))

    def connections(self) -> None:
        for i, conn in enumerate(self.m.connections):
            network = self.host.network.get(conn.network)
            if network is None:
                raise PlanError(f"connection {conn.name} uses an unspecified machina network: "
                                f"{conn.network}",
                                ("networks are defined in machina.conf.json at $.network",),
                                ("connections", conn.name, "network"))
            link = identity.link_name(self.m.name, conn.name)
            if self.m.least:
                # machina creates the tap itself (owned by the machine's group, on its
                # bridge, up): QEMU, unprivileged, only opens it
                self.plan.taps.append(Tap(link, network.device, conn.network))
                up, down = "no", "no"
            else:
                up, down = network.up or DEFAULT_UP, network.down or DEFAULT_DOWN
            self.plan.netdevs.append(opt(
                "netdev", "tap", ("id", f"net.{i}"), ("ifname", link),
                ("script", up), ("downscript", down)))
            self.topo.add_device(partial(_nic, mac=conn.mac, netdev=f"net.{i}"))

    def devices(self) -> None:
        classes = {c for md in self.host.mdev.values() for c in md.types}
        for k, dev in enumerate(self.m.devices):
            if dev.device_class not in classes:
                raise PlanError(f"device {dev.name} uses an unspecified machina device class: "
                                f"{dev.device_class}",
                                ("device classes are the keys of $.mdev.*.types in "
                                 "machina.conf.json",), ("devices", dev.name, "class"))
            self.topo.add_device(partial(_vfio, id=f"vfio.{k}",
                                         sysfs=f"/sys/bus/mdev/devices/{dev.id}"))
            self.plan.mdevs.append((dev.device_class, dev.name, str(dev.id)))

    def settings(self) -> list[Opt]:
        m, a, q = self.m, self.m.attrs, self.host.qemu
        out: list[Opt] = []
        if m.id != identity.ZERO_UUID:
            out.append(opt("uuid", str(m.id)))
        if m.name:
            out.append(opt("name", clean(m.name)))
        match q.accel:
            case "":
                out.append(Opt("enable-kvm"))
            case accel:
                out.append(opt("accel", accel))
        out.append(Opt("nodefaults"))
        out.append(Opt("nographic"))
        pflash = dict(zip(("pflash0", "pflash1"), self.pflash, strict=False))
        smm = self.plan.firmware is not None and self.plan.firmware.firmware.smm
        out.append(opt("machine", None, ("type", m.machine_type),
                       ("vmport", "off" if self.spice else None),
                       ("smm", "on" if smm else None),
                       ("pflash0", pflash.get("pflash0")), ("pflash1", pflash.get("pflash1"))))
        hv: list[tuple[str, str | int | None]] = []
        if a.enlightenments and a.enlightenments_level == "full":
            hv = [(k, v) for k, _, v in (f.partition("=") for f in HYPERV_FULL)]
        elif a.enlightenments:
            hv = [("hv_relaxed", ""), ("hv_spinlocks", "0x1fff"), ("hv_vapic", ""),
                  ("hv_time", "")]
        out.append(opt("cpu", q.cpu or "host", *hv))
        if a.sockets > 0 or a.cores > 0 or a.threads > 0:
            out.append(opt("smp", None, ("sockets", a.sockets if a.sockets > 0 else None),
                           ("cores", a.cores if a.cores > 0 else None),
                           ("threads", a.threads if a.threads > 0 else None)))
        out.append(opt("m", None, ("size", f"{a.ram}M")))
        out.append(opt("rtc", None, ("base", "utc"), ("clock", "host"), ("driftfix", "slew")))
        out.extend(opt("mon", None, ("chardev", c), ("mode", "control")) for c in self.mons)
        if self.spice is not None:
            out.append(self.spice)
        out.extend(opt("global", None, ("driver", d), ("property", p), ("value", v))
                   for d, p, v in self.globals)
        out.append(opt("boot", None, ("menu", "on"), ("reboot-timeout", 5000)))
        boot = a.boot
        # QEMU opens these too: least-privilege mode checks its group can read them
        self.plan.files.extend(FileUse(p, False) for p in (boot.bios, boot.kernel, boot.initrd)
                               if p)
        if boot.bios:
            out.append(plain("bios", boot.bios))
        if boot.kernel:
            out.append(plain("kernel", boot.kernel))
        if boot.initrd:
            out.append(plain("initrd", boot.initrd))
        if boot.cmdline:
            out.append(plain("append", boot.cmdline))
        if m.least:
            out.append(opt("sandbox", "on", *SANDBOX))
        return out

    def build(self) -> Plan:
        if self.m.attrs.shutdown_timeout < 0:
            raise PlanError("attrs.shutdown.timeout must be a positive number of seconds")
        if self.m.attrs.ram <= 0:
            raise PlanError("no memory size was specified (attrs.memory.ram)",
                            ('set "attrs": {"memory": {"ram": <MiB>}} in the machine or a tag',),
                            ("attrs", "memory", "ram"))
        self.firmware()
        self.tpm()
        self.qmp()
        self.agent()
        self.spice_step()
        self.serial()
        self.pvpanic()
        for volume in self.m.volumes:
            self.apply_volume(volume)
        self.connections()
        self.devices()
        self.plan.settings = self.settings()
        if self.m.least:
            check_least_files(self.plan.files)
        return self.plan


def check_least_files(files: Iterable[FileUse]) -> None:
    """Least privilege names QEMU's files in the unit (ReadWritePaths=) and gives them to
    the machine's group: each must be absolute and free of control characters."""
    for f in files:
        if not f.path.startswith("/") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in f.path):
            raise PlanError(
                f"least privilege: QEMU's file {json.dumps(f.path, ensure_ascii=False)} "
                + ("is not an absolute path" if not f.path.startswith("/")
                   else "holds a control character"),
                ("in least-privilege mode every file QEMU opens is named in the unit and "
                 "given to the machine's group: use an absolute path without control "
                 "characters (check the pool's path and pattern and the boot files)",))


def plan_machine(machine: Machine, host: HostFile) -> Plan:
    """Build the machine's hardware plan; the first problem raises a MachinaError."""
    return _Builder(machine, host).build()
