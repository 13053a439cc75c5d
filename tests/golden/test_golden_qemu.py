"""Real QEMU accepts every golden `machina args NAME` output and builds what it says.

For each golden `args NAME` that must succeed, the output is parsed into options
(golden_support: an independent keyval splitter), host resources are swapped for
stand-ins, and qemu-system-x86_64 is started paused (`-S`) inside a private network
namespace. Over QMP the test then checks that QEMU built what the options describe:
`query-pci` (root ports, QXLs and every device behind a root port, at its address and
with its PCI class), `qom-list` of /machine/peripheral (every `-device` id, with its
driver), `query-named-block-nodes` (every node, read-only where the option says so),
`query-name`/`query-uuid`, and that every `-mon` socket machina declares answers QMP.
QEMU's stderr must stay empty.

Stand-ins (ONLY these values are rewritten; everything else goes to QEMU verbatim):

* `-cpu host[,hv_*...]` -> `-cpu qemu64` (QEMU's default model). On the nested,
  paravirtualised KVM of CI/dev machines `-cpu host` aborts (`failed to set MSR 0x10a`)
  and the Hyper-V flags cannot run either.
* `-m size=<N>M` -> `-m size=256M`: several GiB of guest RAM cannot be allocated there.
* `-enable-kvm` stays when a probe shows KVM starts the default CPU cleanly; otherwise
  it becomes `-accel tcg` (a session fixture decides once, see `accel`). On the
  paravirtualised KVM the default CPU already warns `host doesn't support requested
  feature: CPUID.01H:ECX.pni`, so there the test uses TCG. With `-S` no guest code
  runs, so the accelerator changes nothing the test checks.
* `-blockdev driver=file,...,filename=<path>`: the path becomes a temp file: a copy of
  the ovmf package's OVMF code/vars for a node `-machine pflash0=`/`pflash1=` uses
  (the pflash size must match a real image; `read-only=on` is kept as configured),
  a sparse 64 MiB file for a raw disk's file node, a 1 MiB file for an ISO.
* `-device vfio-pci,...` is left out (no mediated devices here); its root port stays
  and must then be empty.
* `-netdev tap,...`: `script=`/`downscript=` become `no`; QEMU creates the tap itself
  inside the private network namespace (hence `root`).
* `-chardev socket,...,path=<unix socket>`: the path moves into a temp dir
  (`/run/machina/NAME/...` does not exist here and must not be created by a test).
  TCP sockets and SPICE keep their addresses and ports: the namespace has its own lo.

Added: `-S`, `-display none` (redundant with `-nographic`) and the test's own `-qmp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from golden_support import (
    GoldenCommand,
    Param,
    QemuOption,
    iter_devices,
    machina_stdout,
    options_argv,
    parse_args_text,
    render_args_text,
)

from strictmode import unavailable

pytestmark = [pytest.mark.qemu]

QEMU = "qemu-system-x86_64"
QEMU_TIMEOUT = 30.0  # seconds, per QEMU run (a paused start takes well under 1 s)
STANDIN_CPU = "qemu64"
STANDIN_RAM = "256M"
RAW_DISK_SIZE = 64 * 1024 * 1024
MEDIA_SIZE = 1024 * 1024
OVMF_DIR = Path("/usr/share/OVMF")
#: (code, vars) pairs the ovmf package ships; a pair must be used together.
OVMF_PAIRS = (("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"), ("OVMF_CODE.fd", "OVMF_VARS.fd"))

#: PCI class codes (query-pci `class_info.class`) of the drivers machina places on PCIe.
PCI_CLASS = {
    "ioh3420": 0x0604,  # PCI bridge
    "qxl-vga": 0x0300,  # VGA compatible controller
    "qxl": 0x0380,  # display controller
    "virtio-serial-pci": 0x0780,  # communication controller
    "qemu-xhci": 0x0C03,  # USB controller
    "virtio-scsi-pci": 0x0100,  # SCSI controller
    "virtio-net-pci": 0x0200,  # Ethernet controller
}


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True, slots=True)
class Accel:
    kvm: bool
    why: str


def _qmp_quit_stdin() -> bytes:
    return b'{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n'


@pytest.fixture(scope="session")
def accel() -> Accel:
    """Keep `-enable-kvm` only if KVM starts QEMU's default CPU without a word on stderr."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Accel(False, "TCG: /dev/kvm is not usable")
    probe_argv = f"-enable-kvm -cpu {STANDIN_CPU} -machine q35 -m {STANDIN_RAM} -nodefaults"
    probe = subprocess.run(
        [QEMU, *probe_argv.split(), "-display", "none", "-S", "-qmp", "stdio"],
        input=_qmp_quit_stdin(),
        capture_output=True,
        timeout=QEMU_TIMEOUT,
        check=False,
    )
    if probe.returncode != 0 or probe.stderr:
        said = probe.stderr.decode(errors="replace")
        return Accel(False, f"TCG, KVM probe said: exit {probe.returncode}, {said}")
    return Accel(True, "KVM")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: unix socket paths are limited to 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="mq-") as d:
        yield Path(d)


# --------------------------------------------------------------------------- stand-ins


@dataclass(slots=True)
class StandIn:
    options: list[QemuOption] = field(default_factory=list)
    left_out: list[QemuOption] = field(default_factory=list)
    monitors: dict[str, Path] = field(default_factory=dict)  # chardev id -> socket


def _firmware_pair() -> tuple[Path, Path]:
    for code, vars_ in OVMF_PAIRS:
        if (OVMF_DIR / code).is_file() and (OVMF_DIR / vars_).is_file():
            return OVMF_DIR / code, OVMF_DIR / vars_
    unavailable(f"needs the ovmf package ({OVMF_DIR})")


def _file_roles(options: Sequence[QemuOption]) -> dict[str, str]:
    """node-name -> "pflash0" | "pflash1" | "disk" | "media" for every file node."""
    blockdevs = {o.get("node-name") or "": o for o in options if o.flag == "blockdev"}
    roles = {name: "media" for name, o in blockdevs.items() if o.get("driver") == "file"}
    for o in blockdevs.values():  # a raw format node's protocol child is a disk image
        child = o.get("file")
        if o.get("driver") == "raw" and child in roles:
            roles[child] = "disk"
    machine = next(o for o in options if o.flag == "machine")
    for slot in ("pflash0", "pflash1"):
        node = machine.get(slot)
        while node in blockdevs and blockdevs[node].get("driver") != "file":
            node = blockdevs[node].get("file")  # firmware on a raw pool: follow to the file
        if node is not None:
            assert node in roles, f"-machine {slot}={node}: no such -blockdev file node"
            roles[node] = slot
    return roles


def _make_file(path: Path, role: str) -> None:
    if role in ("pflash0", "pflash1"):
        code, vars_ = _firmware_pair()
        shutil.copyfile(code if role == "pflash0" else vars_, path)
        return
    with path.open("wb") as f:
        f.truncate(RAW_DISK_SIZE if role == "disk" else MEDIA_SIZE)


def _standin_cpu(option: QemuOption) -> QemuOption:
    # Rewritten: `-cpu host` and the Hyper-V enlightenments cannot run on nested KVM
    # (see the module docstring); nothing else in -cpu is expected.
    assert option.head == "host", f"unexpected {option.render()}"
    assert all((p.name or p.value).startswith("hv_") for p in option.params[1:]), option.render()
    return QemuOption("cpu", (Param(None, STANDIN_CPU),))


def _standin_memory(option: QemuOption) -> QemuOption:
    # Rewritten: guest RAM of several GiB cannot be allocated on CI/dev machines.
    assert [p.name for p in option.params] == ["size"], option.render()
    size = option.get("size") or ""
    assert size[:-1].isdigit() and size.endswith("M"), option.render()
    return option.replace(size=STANDIN_RAM)


def stand_in(options: Sequence[QemuOption], files: Path, sockets: Path, accel: Accel) -> StandIn:
    """The options with host resources replaced (the module docstring lists each)."""
    roles = _file_roles(options)
    monitor_chardevs = {o.get("chardev") for o in options if o.flag == "mon"}
    out = StandIn()
    for option in options:
        match option.flag, option.head:
            case "cpu", _:
                option = _standin_cpu(option)
            case "m", _:
                option = _standin_memory(option)
            case "enable-kvm", _ if not accel.kvm:
                option = QemuOption("accel", (Param(None, "tcg"),))
            case "blockdev", _ if option.get("driver") == "file":
                node = option.get("node-name") or ""
                path = files / f"{node}.{roles[node]}"
                _make_file(path, roles[node])
                option = option.replace(filename=str(path))
            case "device", "vfio-pci":
                out.left_out.append(option)
                continue
            case "netdev", "tap":
                option = option.replace(script="no", downscript="no")
            case "chardev", "socket" if option.get("path") is not None:
                chardev = option.get("id") or ""
                path = sockets / f"{chardev}.sock"
                option = option.replace(path=str(path))
                if chardev in monitor_chardevs:
                    out.monitors[chardev] = path
        out.options.append(option)
    return out


# --------------------------------------------------------------------------- QEMU


@dataclass(slots=True)
class Qemu:
    proc: subprocess.Popen[bytes]
    argv: list[str]
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        return f"{shlex.join(self.argv)}\n--- QEMU stderr:\n{self.stderr()}"


@contextlib.contextmanager
def start_qemu(args: Sequence[str], workdir: Path, netns: bool) -> Iterator[Qemu]:
    """Start QEMU (in a fresh network namespace if asked); kill it on the way out.

    `unshare --net` makes an anonymous namespace that disappears with QEMU: there is
    nothing to clean up. Its `lo` must be brought up for SPICE and TCP chardevs.
    """
    argv = [QEMU, *args]
    if netns:
        argv = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
    stderr_path = workdir / "qemu.stderr"
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    qemu = Qemu(proc, argv, stderr_path)
    try:
        yield qemu
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=QEMU_TIMEOUT)


async def qmp_connect(path: Path, qemu: Qemu) -> Any:
    """A connected qemu.qmp client; fails with QEMU's stderr if QEMU exits first."""
    from qemu.qmp import QMPClient
    from qemu.qmp.protocol import ConnectError

    client = QMPClient(path.name)
    while True:
        if qemu.proc.poll() is not None:
            pytest.fail(
                f"QEMU exited with {qemu.proc.returncode}:\n{qemu.describe()}", pytrace=False
            )
        if path.exists():
            with contextlib.suppress(ConnectError):
                await client.connect(str(path))
                return client
        await asyncio.sleep(0.02)


async def quit_qemu(client: Any, qemu: Qemu) -> None:
    """`quit`, then QEMU must exit 0. QEMU closes the socket as it exits, so the reply
    or the orderly disconnect may be cut short: the exit status is what counts."""
    from qemu.qmp import ExecInterruptedError

    with contextlib.suppress(ExecInterruptedError):
        await client.execute("quit")
    rc = await asyncio.to_thread(qemu.proc.wait, QEMU_TIMEOUT)
    with contextlib.suppress(EOFError):
        await client.disconnect()
    assert rc == 0, f"QEMU exited with {rc} after quit:\n{qemu.describe()}"


# --------------------------------------------------------------------------- checks


def check_pci(pci: list[dict[str, Any]], std: StandIn) -> None:
    """pcie.0 holds exactly the root ports and QXLs, at their addresses, with their class.

    (Behind a root port query-pci shows nothing while paused: the firmware has not
    numbered the buses yet. `check_devices` covers those devices through QOM.)
    """
    bus0 = next(b for b in pci if b["bus"] == 0)["devices"]
    got = {
        d["qdev_id"]: (f"{d['slot']}.{d['function']}", d["class_info"]["class"])
        for d in bus0
        if d["qdev_id"]
    }  # the q35 built-ins have no qdev_id
    want = {
        d.get("id"): (d.get("addr"), PCI_CLASS.get(d.head or ""))
        for d in iter_devices(std.options)
        if d.get("bus") == "pcie.0"
    }
    assert got == want, f"pcie.0 (id: (addr, class)):\nQEMU {got}\nwant {want}"


def _qom_paths(options: Sequence[QemuOption]) -> list[tuple[str, QemuOption]]:
    """The QOM path of every -device: its id, or device[N] counting id-less ones."""
    paths, anonymous = [], 0
    for d in iter_devices(options):
        dev_id = d.get("id")
        if dev_id:
            paths.append((f"/machine/peripheral/{dev_id}", d))
        else:
            paths.append((f"/machine/peripheral-anon/device[{anonymous}]", d))
            anonymous += 1
    return paths


async def check_devices(client: Any, std: StandIn) -> None:
    """Every -device exists with its driver and sits on the bus its `bus=` names."""
    want = _qom_paths(std.options)
    listed = {}
    for container in ("/machine/peripheral", "/machine/peripheral-anon"):
        for p in await client.execute("qom-list", {"path": container}):
            if p["type"].startswith("child<"):
                listed[f"{container}/{p['name']}"] = p["type"][len("child<") : -1]
    assert listed == {path: d.head for path, d in want}, (
        f"devices (QOM path: driver):\nQEMU {listed}\nwant { {p: d.head for p, d in want} }"
    )
    for path, d in want:
        bus = d.get("bus")
        if bus is None:
            continue
        parent = await client.execute("qom-get", {"path": path, "property": "parent_bus"})
        assert parent.rsplit("/", 1)[-1] == bus, f"{d.render()}: QEMU put it on {parent}"


def check_block_nodes(nodes: list[dict[str, Any]], std: StandIn) -> None:
    got = {n["node-name"]: (n["drv"], n["ro"]) for n in nodes}
    for o in (o for o in std.options if o.flag == "blockdev"):
        name = o.get("node-name") or ""
        assert name in got, f"block node {name} missing; QEMU has {sorted(got)}"
        # A raw node over a read-only file node is read-only too (QEMU inherits it).
        want_ro = o.get("read-only") == "on" or (
            o.get("driver") == "raw" and got.get(o.get("file") or "", ("", False))[1]
        )
        assert got[name] == (o.get("driver"), want_ro), f"{name}: QEMU has {got[name]}"


async def check_machine(std: StandIn, qmp_path: Path, qemu: Qemu) -> None:
    client = await qmp_connect(qmp_path, qemu)
    name = next(o for o in std.options if o.flag == "name").head
    assert (await client.execute("query-name")).get("name") == name
    uuid = next((o.head for o in std.options if o.flag == "uuid"), None)
    if uuid is not None:
        assert (await client.execute("query-uuid"))["UUID"] == uuid

    check_pci(await client.execute("query-pci"), std)
    await check_devices(client, std)
    check_block_nodes(await client.execute("query-named-block-nodes", {"flat": True}), std)

    for chardev, path in std.monitors.items():  # machina's own monitors (qmp.0 = systemd)
        monitor = await qmp_connect(path, qemu)
        status = await monitor.execute("query-status")
        assert status["status"] == "prelaunch", f"{chardev}: {status}"
        await monitor.disconnect()

    await quit_qemu(client, qemu)


# --------------------------------------------------------------------------- tests


@pytest.mark.root
def test_qemu_accepts_args(
    golden_cases: Path,
    golden_args_command: GoldenCommand,
    machina_cmd: list[str],
    machina_env: dict[str, str],
    accel: Accel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    text = machina_stdout(machina_cmd, machina_env, golden_args_command, tmp_path)
    options = parse_args_text(text)
    assert render_args_text(options) == text, "the test's parser does not round-trip"

    files = tmp_path / "files"
    files.mkdir()
    std = stand_in(options, files, short_tmp, accel)
    qmp_path = short_tmp / "test.qmp"
    qmp = f"unix:{qmp_path},server=on,wait=off"
    args = [*options_argv(std.options), "-S", "-display", "none", "-qmp", qmp]

    with start_qemu(args, tmp_path, netns=True) as qemu:
        try:
            asyncio.run(asyncio.wait_for(check_machine(std, qmp_path, qemu), QEMU_TIMEOUT))
        except TimeoutError:
            pytest.fail(f"no answer within {QEMU_TIMEOUT} s:\n{qemu.describe()}")
        assert qemu.stderr() == "", f"QEMU wrote to stderr ({accel.why}):\n{qemu.describe()}"


def _machina_opt() -> Any:
    """machina.qemu.opts.Opt from this checkout (the test process may lack src/ on its path,
    like machina_cmd, which gets it through PYTHONPATH)."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    from machina.qemu.opts import Opt

    return Opt


HOSTILE_NAMES = [
    "a,b",
    "a,,b",
    "a,,,b,,,,c",
    ",leading and trailing,",
    "guest=inner,debug-threads=on",
    "100% $HOME ${x} `id` \"double\" 'single' back\\slash",
    "tab\tand spaces  ",
    "ünïcödé ✓ 名前 😀",
]


@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
def test_qemu_name_escaping_oracle(hostile: str, short_tmp: Path) -> None:
    """QEMU parses machina's comma escaping back to the original value."""
    Opt = _machina_opt()
    name_args = list(Opt("name", (("guest", hostile),)).words())
    assert name_args == ["-name", "guest=" + hostile.replace(",", ",,")]  # same oracle
    qmp_path = short_tmp / "test.qmp"
    args = [
        "-machine",
        "none",
        "-accel",
        "tcg",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        *name_args,
        "-qmp",
        f"unix:{qmp_path},server=on,wait=off",
    ]

    async def check(qemu: Qemu) -> None:
        client = await qmp_connect(qmp_path, qemu)
        assert (await client.execute("query-name")).get("name") == hostile
        await quit_qemu(client, qemu)

    with start_qemu(args, short_tmp, netns=False) as qemu:
        asyncio.run(asyncio.wait_for(check(qemu), QEMU_TIMEOUT))
        assert qemu.stderr() == "", qemu.describe()
