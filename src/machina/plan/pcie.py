"""The PCIe topology (spec/qemu.md §5–6): top-level entries on the root complex `pcie.0`.

Root ports and QXL displays take the next index; a SATA CD takes one too, except when
that index is function 0 of a slot (decisions D22). Index i sits at slot i//8+1,
function i%8. Controllers are singletons created on first use, each behind a root port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from machina.errors import PlanError
from machina.qemu.opts import Opt, opt

MAX_ENTRIES = 256
MAX_SATA = 6
MAX_SERIAL_PORTS = 30
MAX_USB = 15
MAX_SCSI = 28


@dataclass
class Controller:
    """A controller behind a root port and the devices on its bus. It holds the port's id,
    not the port (whose `device` it is): no reference cycle, so a machine's plan is freed
    as soon as it is rendered even with the garbage collector off (cli.BATCH_COMMANDS)."""

    kind: str                      # "serial", "usb", "scsi"
    bus: str                       # its root port's id
    children: list[Opt] = field(default_factory=list)

    def head(self) -> Opt:
        match self.kind:
            case "serial":
                return opt("device", "virtio-serial-pci", ("id", "serial"), ("bus", self.bus))
            case "usb":
                ports = max(4, len(self.children))
                return opt("device", "qemu-xhci", ("id", "usb"), ("bus", self.bus),
                           ("p2", ports), ("p3", ports))
            case "scsi":
                return opt("device", "virtio-scsi-pci", ("id", "scsi"), ("bus", self.bus),
                           ("iothread", "iothread.0"), ("num_queues", 4))
            case _:
                raise AssertionError(self.kind)


@dataclass
class RootPort:
    index: int
    device: Opt | Controller | None = None

    @property
    def addr(self) -> str:
        return f"{self.index // 8 + 1}.{self.index % 8}"

    @property
    def id(self) -> str:
        return f"pcie.{self.index // 8 + 1}.{self.index % 8}"

    def opts(self) -> list[Opt]:
        head = opt("device", "ioh3420", ("id", self.id), ("chassis", self.index),
                   ("bus", "pcie.0"), ("addr", self.addr),
                   ("multifunction", "on" if self.index % 8 == 0 else None))
        match self.device:
            case Controller() as c:
                return [head, c.head(), *c.children]
            case Opt() as o:
                return [head, o]
            case None:
                return [head]


@dataclass
class Qxl:
    index: int
    k: int

    def opts(self) -> list[Opt]:
        addr = f"{self.index // 8 + 1}.{self.index % 8}"
        return [opt("device", "qxl-vga" if self.k == 0 else "qxl", ("id", f"qxl.{self.k}"),
                    ("bus", "pcie.0"), ("addr", addr),
                    ("multifunction", "on" if self.index % 8 == 0 else None))]


@dataclass
class SataCd:
    k: int
    node: str

    def opts(self) -> list[Opt]:
        return [opt("device", "ide-cd", ("id", f"sata.{self.k}"),
                    ("bus", f"ide.{(self.k + 1) % 6}"), ("drive", self.node))]


@dataclass
class TpmCrb:
    """The TPM 2.0 CRB interface: a system-bus device, so it takes no PCI address (the
    reference's later versions let it consume an index, which can leave function 0 of a
    slot empty and hide the slot: decisions D22)."""

    tpmdev: str

    def opts(self) -> list[Opt]:
        return [opt("device", "tpm-crb", ("tpmdev", self.tpmdev))]


Entry = RootPort | Qxl | SataCd | TpmCrb


@dataclass
class Topology:
    entries: list[Entry] = field(default_factory=list)
    next_index: int = 0
    qxl_count: int = 0
    sata_count: int = 0
    controllers: dict[str, Controller] = field(default_factory=dict)

    def _allocate(self) -> int:
        if self.next_index >= MAX_ENTRIES:
            raise PlanError(
                "the PCI Express root complex is full and cannot accommodate more devices")
        index = self.next_index
        self.next_index += 1
        return index

    def add_root_port(self) -> RootPort:
        port = RootPort(self._allocate())
        self.entries.append(port)
        return port

    def add_qxl(self) -> None:
        self.entries.append(Qxl(self._allocate(), self.qxl_count))
        self.qxl_count += 1

    def add_sata_cd(self, node: str) -> None:
        if self.sata_count >= MAX_SATA:
            raise PlanError("the SATA controller is full and cannot accommodate more devices")
        self.entries.append(SataCd(self.sata_count, node))
        self.sata_count += 1
        if self.next_index % 8 != 0:
            self.next_index += 1

    def add_tpm(self, tpmdev: str) -> None:
        self.entries.append(TpmCrb(tpmdev))

    def controller(self, kind: str) -> Controller:
        found = self.controllers.get(kind)
        if found is None:
            port = self.add_root_port()
            found = Controller(kind, port.id)
            port.device = found
            self.controllers[kind] = found
        return found

    def add_serial_port(self, chardev: str, name: str) -> None:
        c = self.controller("serial")
        k = len(c.children)
        if k >= MAX_SERIAL_PORTS:
            raise PlanError("the serial controller is full and cannot accommodate more devices")
        c.children.append(opt("device", "virtserialport", ("id", f"serial.0.{k}"),
                               ("bus", "serial.0"), ("nr", k + 1), ("chardev", chardev),
                               ("name", name)))

    def add_usb(self, driver: str, *props: tuple[str, str | int | None]) -> None:
        c = self.controller("usb")
        if len(c.children) >= MAX_USB:
            raise PlanError("the USB Controller is full and cannot accommodate more devices")
        port = len(c.children) + 1
        c.children.append(opt("device", driver, ("id", f"usb.0.{port}"), ("bus", "usb.0"),
                              ("port", port), *props))

    def add_scsi(self, driver: str, drive: str,
                 *props: tuple[str, str | int | None]) -> None:
        c = self.controller("scsi")
        k = len(c.children)
        if k >= MAX_SCSI:
            raise PlanError("the SCSI Controller is full and cannot accommodate more devices")
        c.children.append(opt("device", driver, ("id", f"scsi.0.{k}"), ("bus", "scsi.0"),
                              ("channel", 0), ("scsi-id", 0), ("lun", k), ("drive", drive),
                              *props))

    def add_device(self, make: Callable[[str], Opt]) -> None:
        """A device on a root port of its own (network cards, VFIO); make(bus) builds it."""
        port = self.add_root_port()
        port.device = make(port.id)

    def opts(self) -> list[Opt]:
        out: list[Opt] = []
        for entry in self.entries:
            out.extend(entry.opts())
        return out
