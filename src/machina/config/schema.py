"""The config *files* as frozen dataclasses (spec/config.md §3–4).

Zero values mean "unset" almost everywhere, exactly as the files are read: the merge
rules (resolve.py) decide what "set" means per field.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from machina.config.values import Wwn
from machina.identity import ZERO_UUID

NO_WWN = Wwn()

#: Bounds of attrs values that QEMU or systemd would refuse only at start: q35 takes at
#: most 4096 vCPUs (QEMU 9; Debian 12's 7.2 takes 288); an x86-64 guest addresses at most
#: 2**52 bytes (phys-bits ≤ 52) = 2**32 MiB; a shutdown timeout of a week (seconds) stays
#: far inside what TimeoutStopSec= and `machina shutdown --timeout` represent.
MAX_CPUS = 4096
MAX_RAM_MIB = 1 << 32
MAX_SHUTDOWN_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume:
    name: str = ""
    storage: str = ""
    wwn: Wwn = NO_WWN
    serial: str = ""
    bootable: bool = False
    readonly: bool = False  # ours (decisions D16)
    discard: bool = False   # ours: as if the volume's pool had "discard": true

    @property
    def is_empty(self) -> bool:
        return self.name == "" and self.storage == ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    name: str = ""
    network: str = ""
    ip: str = ""
    mac: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    name: str = ""
    device_class: str = ""
    id: uuid.UUID = ZERO_UUID


@dataclass(frozen=True, slots=True, kw_only=True)
class Boot:
    """Direct kernel boot and BIOS selection (our extension; absent = reference output)."""

    kernel: str = ""
    initrd: str = ""
    cmdline: str = ""
    bios: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tpm:
    """A software TPM 2.0 (swtpm; the reference's later `attrs.tpm`, later.md §8)."""

    enabled: bool = False
    data: Volume = Volume()      # a volume on a `tpm-data` pool: the TPM's directory
    socket_path: str = ""        # swtpm's control socket (default: machina chooses)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attributes:
    firmware_code: Volume = Volume()
    firmware_vars: Volume = Volume()
    sockets: int = 0
    cores: int = 0
    ram: int = 0
    enlightenments: bool = False
    qmp_enabled: bool = False
    qmp_names: tuple[str, ...] = ()
    qmp_paths: tuple[str, ...] = ()
    agent_enabled: bool = False
    agent_port: int = 0
    agent_port_pattern: str = ""
    agent_unix: bool = False   # ours: the agent on a socket for root and the machine's group
    spice_enabled: bool = False
    spice_port: int = 0
    spice_port_pattern: str = ""
    spice_displays: int = 0
    spice_unix: bool = False   # ours: SPICE on a socket for root and the machine's group
    boot: Boot = Boot()
    privileges_mode: str = ""  # ours: "least" or "root" (attrs.privileges.mode)
    shutdown_timeout: int = 0  # ours: seconds `systemctl stop` waits for the guest
    firmware_profile: str = ""  # ours: a key of the host's `firmware` map
    serial: bool = False       # ours: COM1 on QEMU's standard output (attrs.serial)
    machine_type: str = ""     # ours: q35 or a pinned pc-q35-X.Y (attrs.machine.type)
    threads: int = 0           # ours: -smp threads= (attrs.cpu.threads)
    enlightenments_level: str = ""  # ours: "" or "basic" (the 4 flags), "full" (later.md §7)
    pvpanic: bool = False      # ours: the ISA pvpanic device (attrs.pvpanic.enabled)
    tpm: Tpm = Tpm()


@dataclass(frozen=True, slots=True, kw_only=True)
class Definition:
    """What a machine file and each tag define (spec/config.md §4.2)."""

    vars: dict[str, str] = field(default_factory=dict)
    attrs: Attributes = Attributes()
    volumes: tuple[Volume, ...] = ()
    connections: tuple[Connection, ...] = ()
    devices: tuple[Device, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineFile:
    path: str                    # as shown in messages
    name: str                    # JSON name, else the file name without .conf.json
    file_name: str               # the file name without .conf.json
    description: str = ""
    id: uuid.UUID = ZERO_UUID
    tags: tuple[str, ...] = ()
    definition: Definition = Definition()


@dataclass(frozen=True, slots=True, kw_only=True)
class Storage:
    path: str = ""
    pattern: str = ""
    type: str = ""
    readonly: bool = False
    discard: bool = False      # ours: discard=unmap on the volume's nodes (thin storage)
    detect_zeroes: str = ""    # ours: "", "off", "on" or "unmap" (default with discard: unmap)


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    device: str = ""
    up: str = ""
    down: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MediatedDevice:
    address: str = ""
    types: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class QemuHost:
    """Host-wide QEMU choices (our extension): accelerator and CPU model."""

    accel: str = ""
    cpu: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Privileges:
    """How QEMU runs (our extension): "root" (the reference) or "least"."""

    mode: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Firmware:
    """A firmware the host offers (our extension; `machina firmware detect` fills these
    from QEMU's firmware descriptors): what a machine's `attrs.firmware.profile` names."""

    code: str = ""                       # pflash0, read-only
    vars_template: str = ""              # copied to the machine's own NVRAM file once
    features: tuple[str, ...] = ()       # QEMU descriptor features: secure-boot, ...
    machines: tuple[str, ...] = ()       # machine type patterns, e.g. pc-q35-*
    description: str = ""

    @property
    def secure_boot(self) -> bool:
        return "secure-boot" in self.features

    @property
    def smm(self) -> bool:
        """SMM on -machine and the secure pflash: Secure Boot firmware hangs without."""
        return self.secure_boot or "requires-smm" in self.features


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFile:
    path: str = ""
    storage: dict[str, Storage] = field(default_factory=dict)
    network: dict[str, Network] = field(default_factory=dict)
    mdev: dict[str, MediatedDevice] = field(default_factory=dict)
    tag: dict[str, Definition] = field(default_factory=dict)
    qemu: QemuHost = QemuHost()
    privileges: Privileges = Privileges()
    firmware: dict[str, Firmware] = field(default_factory=dict)
