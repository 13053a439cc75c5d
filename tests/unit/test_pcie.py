"""PCIe topology numbering and controller limits (spec/qemu.md §5–6, §14; decisions D5,
D22)."""

from __future__ import annotations

import gc
import uuid
from pathlib import Path

import pytest

from machina.config.load import load_host, load_machine
from machina.config.resolve import resolve_machine
from machina.config.schema import Attributes, Connection, HostFile, Network, Storage, Volume
from machina.errors import MachinaError, PlanError
from machina.model import Machine
from machina.plan.devices import plan_machine
from machina.plan.pcie import (
    MAX_ENTRIES,
    MAX_SATA,
    MAX_SCSI,
    MAX_SERIAL_PORTS,
    MAX_USB,
    Topology,
)
from machina.qemu.opts import Opt

README = Path(__file__).resolve().parents[2] / "examples" / "readme"
MID = uuid.UUID("11111111-2222-4333-8444-555555555555")

HOST = HostFile(
    storage={"raw": Storage(path="/vm", type="raw"),
             "ahci": Storage(path="/iso", type="iso-ahci"),
             "scsi": Storage(path="/iso", type="iso-scsi"),
             "usb": Storage(path="/iso", type="iso-usb")},
    network={"lan": Network(device="br0")},
)


def machine(*, volumes: list[tuple[str, str]] = (), connections: int = 0,  # type: ignore
            attrs: Attributes | None = None, bootable: tuple[str, ...] = ()) -> Machine:
    return Machine(
        name="vm", file_name="vm", description="", id=MID, tags=(), vars={},
        attrs=attrs or Attributes(ram=1024),
        volumes=tuple(Volume(name=n, storage=s, bootable=n in bootable) for n, s in volumes),
        connections=tuple(Connection(name=str(i), network="lan",
                                     mac=f"52:54:00:00:00:{i % 256:02x}")
                          for i in range(connections)),
        devices=())


def params(o: Opt) -> tuple[str, dict[str, str]]:
    """(implied driver, named params); the values in these tests contain no commas."""
    head, *rest = o.value().split(",")
    return head, dict(p.split("=", 1) if "=" in p else (p, "") for p in rest)


def devices(options: tuple[Opt, ...] | list[Opt]) -> list[tuple[str, dict[str, str]]]:
    return [params(o) for o in options if o.flag == "device"]


def root_ports(options: tuple[Opt, ...] | list[Opt]) -> list[dict[str, str]]:
    return [p for d, p in devices(options) if d == "ioh3420"]


def check_bus_graph(options: tuple[Opt, ...] | list[Opt]) -> None:
    """Every address on pcie.0 is used once and every bus= names an existing bus."""
    devs = devices(options)
    addrs = [p["addr"] for _, p in devs if "addr" in p]
    assert len(addrs) == len(set(addrs))
    buses = {"pcie.0"} | {f"ide.{i}" for i in range(6)}
    for driver, p in devs:
        if "id" in p:
            buses.add(p["id"])
        if driver in ("virtio-serial-pci", "qemu-xhci", "virtio-scsi-pci"):
            buses.add(p["id"] + ".0")
    for _, p in devs:
        assert p["bus"] in buses, p


# --------------------------------------------------------------------------- numbering


def readme_options() -> tuple[Opt, ...]:
    host = load_host(str(README / "machina.conf.json"))
    mf = load_machine(str(README / "machine.conf.d" / "test-vm.conf.json"))
    return plan_machine(resolve_machine(mf, host), host).options()


def test_readme_indices() -> None:
    """qemu.md §14: 0 serial, 1 QXL, 2 USB, 3 SCSI, 4 SATA CD (the gap), 5 net, 6 vfio."""
    options = readme_options()
    assert [(d, p.get("id"), p.get("chassis"), p.get("addr"), p.get("bus"))
            for d, p in devices(options)
            if d in ("ioh3420", "qxl-vga", "qxl", "ide-cd")] == [
        ("ioh3420", "pcie.1.0", "0", "1.0", "pcie.0"),
        ("qxl-vga", "qxl.0", None, "1.1", "pcie.0"),
        ("ioh3420", "pcie.1.2", "2", "1.2", "pcie.0"),
        ("ioh3420", "pcie.1.3", "3", "1.3", "pcie.0"),
        ("ide-cd", "sata.0", None, None, "ide.1"),
        ("ioh3420", "pcie.1.5", "5", "1.5", "pcie.0"),
        ("ioh3420", "pcie.1.6", "6", "1.6", "pcie.0"),
    ]
    by_driver = {d: p for d, p in devices(options)}
    assert by_driver["virtio-serial-pci"]["bus"] == "pcie.1.0"
    assert by_driver["qemu-xhci"]["bus"] == "pcie.1.2"
    assert by_driver["virtio-scsi-pci"]["bus"] == "pcie.1.3"
    assert by_driver["virtio-net-pci"]["bus"] == "pcie.1.5"
    assert by_driver["vfio-pci"]["bus"] == "pcie.1.6"
    assert root_ports(options)[0]["multifunction"] == "on"
    assert all("multifunction" not in p for p in root_ports(options)[1:])
    check_bus_graph(options)


def test_readme_device_order_is_depth_first() -> None:
    order = [d for d, _ in devices(readme_options())]
    assert order == ["ioh3420", "virtio-serial-pci", "virtserialport", "virtserialport",
                     "qxl-vga", "ioh3420", "qemu-xhci", "usb-tablet", "usb-redir", "usb-redir",
                     "ioh3420", "virtio-scsi-pci", "scsi-hd", "scsi-cd", "ide-cd",
                     "ioh3420", "virtio-net-pci", "ioh3420", "vfio-pci"]


def test_d22_iso_ahci_cd_first_leaves_no_gap() -> None:
    """D22 (replacing quirks Q2's numbering): the CD takes no index at function 0."""
    options = plan_machine(machine(volumes=[("install", "ahci"), ("os", "raw")],
                                   bootable=("os",)), HOST).options()
    assert [(d, p.get("id"), p.get("addr"), p.get("bus"), p.get("chassis"),
             p.get("multifunction")) for d, p in devices(options)][:3] == [
        ("ide-cd", "sata.0", None, "ide.1", None, None),
        ("ioh3420", "pcie.1.0", "1.0", "pcie.0", "0", "on"),
        ("virtio-scsi-pci", "scsi", None, "pcie.1.0", None, None),
    ]
    check_bus_graph(options)


def test_d22_sata_cd_consumes_an_index_except_at_function_0() -> None:
    t = Topology()
    t.add_root_port()                      # 0
    t.add_sata_cd("a")                     # takes 1
    assert t.add_root_port().index == 2
    for _ in range(5):                     # 3..7
        t.add_root_port()
    t.add_sata_cd("b")                     # 8 would be function 0 of slot 2: takes none
    port = t.add_root_port()
    assert (port.index, port.addr, port.id) == (8, "2.0", "pcie.2.0")
    assert "multifunction=on" in port.opts()[0].value()


def test_d5_sata_buses_rotate() -> None:
    t = Topology()
    for k in range(MAX_SATA):
        t.add_sata_cd(f"cd{k}")
    buses = [params(o)[1]["bus"] for o in t.opts()]
    assert buses == ["ide.1", "ide.2", "ide.3", "ide.4", "ide.5", "ide.0"]
    assert [params(o)[1]["id"] for o in t.opts()] == [f"sata.{k}" for k in range(6)]


def test_addresses_follow_index() -> None:
    t = Topology()
    ports = [t.add_root_port() for _ in range(20)]
    assert [p.addr for p in ports[:10]] == ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6",
                                            "1.7", "2.0", "2.1"]
    assert ports[16].id == "pcie.3.0"


def test_spice_without_agent_second_example() -> None:
    """qemu.md §14.1: QXLs at 0 and 1, serial 2, USB 3, SCSI 4, usb-storage at port 4,
    the SATA CD (index 5) prints last."""
    m = machine(volumes=[("os", "raw"), ("stick", "usb"), ("cd", "ahci")],
                attrs=Attributes(ram=1024, spice_enabled=True, spice_port=5930,
                                 spice_displays=2))
    options = plan_machine(m, HOST).options()
    devs = devices(options)
    top = [(d, p.get("id"), p.get("addr")) for d, p in devs
           if d in ("ioh3420", "qxl-vga", "qxl", "ide-cd")]
    assert top == [("qxl-vga", "qxl.0", "1.0"), ("qxl", "qxl.1", "1.1"),
                   ("ioh3420", "pcie.1.2", "1.2"), ("ioh3420", "pcie.1.3", "1.3"),
                   ("ioh3420", "pcie.1.4", "1.4"), ("ide-cd", "sata.0", None)]
    assert devs[0][1]["multifunction"] == "on"
    usb = {d: p for d, p in devs}["usb-storage"]
    assert (usb["id"], usb["port"], usb["bus"]) == ("usb.0.4", "4", "usb.0")
    xhci = {d: p for d, p in devs}["qemu-xhci"]
    assert (xhci["p2"], xhci["p3"]) == ("4", "4")
    check_bus_graph(options)


@pytest.mark.parametrize(("displays", "heads"), [(0, 1), (1, 1), (4, 4), (5, 4), (-3, 1)])
def test_spice_displays_are_clamped(displays: int, heads: int) -> None:
    m = machine(attrs=Attributes(ram=1024, spice_enabled=True, spice_port=5930,
                                 spice_displays=displays))
    drivers = [d for d, _ in devices(plan_machine(m, HOST).options())]
    assert drivers.count("qxl-vga") == 1
    assert drivers.count("qxl") == heads - 1


def test_boot_indices_only_for_raw_volumes() -> None:
    m = machine(volumes=[("cd", "scsi"), ("a", "raw"), ("b", "raw"), ("c", "raw")],
                bootable=("cd", "a", "c"))
    disks = {p["drive"]: p for d, p in devices(plan_machine(m, HOST).options())
             if d in ("scsi-hd", "scsi-cd")}
    assert disks["vm-a"]["bootindex"] == "1"
    assert disks["vm-c"]["bootindex"] == "2"
    assert "bootindex" not in disks["vm-b"] and "bootindex" not in disks["cd"]
    assert [p["lun"] for p in disks.values()] == ["0", "1", "2", "3"]  # shared numbering


# --------------------------------------------------------------------------- limits


def test_limits_are_the_specified_ones() -> None:
    assert (MAX_ENTRIES, MAX_SATA, MAX_SCSI, MAX_USB, MAX_SERIAL_PORTS) == (256, 6, 28, 15, 30)


def test_root_complex_holds_256_entries() -> None:
    m = machine(connections=MAX_ENTRIES)
    options = plan_machine(m, HOST).options()
    ports = root_ports(options)
    assert len(ports) == 256
    assert ports[-1]["addr"] == "32.7" and ports[-1]["id"] == "pcie.32.7"
    check_bus_graph(options)
    with pytest.raises(PlanError) as info:
        plan_machine(machine(connections=MAX_ENTRIES + 1), HOST)
    assert str(info.value) == (
        "the PCI Express root complex is full and cannot accommodate more devices")


def test_root_complex_limit_counts_qxls_and_sata_cds() -> None:
    t = Topology()
    t.add_qxl()
    t.add_sata_cd("cd")
    for _ in range(MAX_ENTRIES - 2):
        t.add_root_port()
    with pytest.raises(PlanError, match="root complex is full"):
        t.add_root_port()
    with pytest.raises(PlanError, match="root complex is full"):
        t.add_qxl()


def test_six_sata_cds() -> None:
    six = [(f"cd{k}", "ahci") for k in range(MAX_SATA)]
    options = plan_machine(machine(volumes=six), HOST).options()
    assert [p["bus"] for d, p in devices(options) if d == "ide-cd"] == [
        "ide.1", "ide.2", "ide.3", "ide.4", "ide.5", "ide.0"]
    with pytest.raises(PlanError) as info:
        plan_machine(machine(volumes=[*six, ("cd6", "ahci")]), HOST)
    assert str(info.value) == "the SATA controller is full and cannot accommodate more devices"


def test_28_scsi_devices() -> None:
    vols = [(f"d{k}", "raw" if k % 2 else "scsi") for k in range(MAX_SCSI)]
    options = plan_machine(machine(volumes=vols), HOST).options()
    luns = [p["lun"] for d, p in devices(options) if d in ("scsi-hd", "scsi-cd")]
    assert luns == [str(k) for k in range(28)]
    assert len(root_ports(options)) == 1
    with pytest.raises(PlanError) as info:
        plan_machine(machine(volumes=[*vols, ("one-more", "raw")]), HOST)
    assert str(info.value) == "the SCSI Controller is full and cannot accommodate more devices"


def test_15_usb_devices() -> None:
    vols = [(f"s{k}", "usb") for k in range(MAX_USB)]
    options = plan_machine(machine(volumes=vols), HOST).options()
    devs = devices(options)
    assert [p["port"] for d, p in devs if d == "usb-storage"] == [str(k) for k in range(1, 16)]
    xhci = next(p for d, p in devs if d == "qemu-xhci")
    assert (xhci["p2"], xhci["p3"]) == ("15", "15")  # max(4, children)
    with pytest.raises(PlanError) as info:
        plan_machine(machine(volumes=[*vols, ("s15", "usb")]), HOST)
    assert str(info.value) == "the USB Controller is full and cannot accommodate more devices"


def test_usb_limit_includes_the_spice_devices() -> None:
    spice = Attributes(ram=1024, spice_enabled=True, spice_port=5930)
    vols = [(f"s{k}", "usb") for k in range(MAX_USB - 3)]  # tablet + 2 redirectors
    plan_machine(machine(volumes=vols, attrs=spice), HOST)
    with pytest.raises(PlanError, match="USB Controller is full"):
        plan_machine(machine(volumes=[*vols, ("x", "usb")], attrs=spice), HOST)


def test_30_serial_ports() -> None:
    t = Topology()
    for k in range(MAX_SERIAL_PORTS):
        t.add_serial_port(f"c{k}", f"port.{k}")
    nrs = [params(o)[1]["nr"] for o in t.opts() if params(o)[0] == "virtserialport"]
    assert nrs == [str(k) for k in range(1, 31)]
    with pytest.raises(PlanError) as info:
        t.add_serial_port("c30", "port.30")
    assert str(info.value) == (
        "the serial controller is full and cannot accommodate more devices")


def test_controllers_are_singletons() -> None:
    m = machine(volumes=[("a", "raw"), ("cd", "scsi"), ("b", "raw"), ("s", "usb"),
                         ("t", "usb")],
                attrs=Attributes(ram=1024, agent_enabled=True, agent_port=4000,
                                 spice_enabled=True, spice_port=5930))
    drivers = [d for d, _ in devices(plan_machine(m, HOST).options())]
    for controller in ("virtio-serial-pci", "qemu-xhci", "virtio-scsi-pci"):
        assert drivers.count(controller) == 1
    assert sum(o.flag == "object" for o in plan_machine(m, HOST).options()) == 1  # iothread


def test_a_plan_holds_no_reference_cycle() -> None:
    """With the cyclic collector off (cli.BATCH_COMMANDS), a rendered plan is freed by its
    reference count alone: `generate --preview` of 5,000 machines keeps none of them."""
    host = load_host(str(README / "machina.conf.json"))
    m = resolve_machine(load_machine(str(README / "machine.conf.d" / "test-vm.conf.json")),
                        host)
    gc.collect()
    gc.disable()
    try:
        plan = plan_machine(m, host)
        assert any(d == "virtio-scsi-pci" for d, _ in devices(plan.options()))  # controllers
        del plan
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_errors_are_machina_errors() -> None:
    with pytest.raises(MachinaError):
        plan_machine(machine(volumes=[("x", "nope")]), HOST)
