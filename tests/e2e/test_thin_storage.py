"""qcow2 and raw-block volumes attach, and a guest's discards reach the storage
(issue 9 acceptance 3), through machina's own argv under real QEMU (TCG).

One machine, built by machina from a config in a temporary directory:

- `os`: a qcow2 overlay on a base image in the same pool (pool `discard`),
- `data`: a loop device standing in for a zvol (pool type `raw-block`, `discard`),
- `scratch`: a raw file with `discard` on the volume,
- `keep`: a raw file without discard (the control);

and the ISA pvpanic device and the basic enlightenments, which TCG runs.

The Debian kernel boots directly (attrs.boot, qboot) with a busybox initramfs whose init
loads the virtio/SCSI drivers, lists the disks it sees (SCSI WWN, virtio-blk serial),
runs `blkdiscard` on each and powers off. Before the guest runs, QMP
`query-named-block-nodes` shows the node drivers, detect-zeroes and the backing image;
afterwards the host sees the blocks freed exactly where discard was asked for.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from guests import QBOOT, qmp_args, qmp_session, start_guest

from guest.linux import (
    INIT_MOUNTS,
    Kernel,
    LinuxGuestError,
    cpio_newc,
    find_kernel,
    find_static_busybox,
    initramfs_entries,
    numbered_modules,
)
from machina.config.load import ConfigDir
from machina.core import Configs
from machina.qemu.argv import render_argv

pytestmark = [pytest.mark.qemu, pytest.mark.root, pytest.mark.slow]

MID = "5b7c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
MIB = 1 << 20
DISK_MODULES = ("kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/block/virtio_blk.ko",
                "kernel/drivers/scsi/virtio_scsi.ko", "kernel/drivers/scsi/sd_mod.ko")

INIT = INIT_MOUNTS + r"""
for m in /lib/modules/disk/*.ko; do insmod "$m" || echo "insmod $m failed"; done
tries=0
until [ $(ls /sys/block | grep -c -E '^(sd|vd)') -ge 4 ]; do
    tries=$((tries + 1)); [ $tries -gt 100 ] && break; sleep 0.1
done
for d in $(ls /sys/block | grep -E '^(sd|vd)'); do
    id=$(cat /sys/block/$d/device/wwid 2>/dev/null || cat /sys/block/$d/serial 2>/dev/null)
    q=/sys/block/$d/queue
    echo "DISK $d id=$id sectors=$(cat /sys/block/$d/size) discard_max=$(cat $q/discard_max_bytes)"
    if blkdiscard /dev/$d; then echo "DISCARDED $d"; else echo "DISCARD FAILED $d"; fi
done
sync
echo DONE
poweroff -f
"""


def build_initramfs(out: Path, kernel: Kernel) -> Path:
    modules = numbered_modules(kernel, DISK_MODULES, "disk")
    out.write_bytes(cpio_newc(initramfs_entries(find_static_busybox().read_bytes(), modules,
                                                INIT)))
    return out


def sh(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True,
                          text=True).stdout


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    backing = tmp_path / "zvol.img"
    backing.write_bytes(os.urandom(16 * MIB))
    dev = sh("losetup", "--find", "--show", backing).strip()
    try:
        yield dev, backing
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_qcow2_and_raw_block_attach_and_discard_reaches_storage(
        tmp_path: Path, loop_device: tuple[str, Path]) -> None:
    try:
        kernel = find_kernel()
        initrd = build_initramfs(tmp_path / "initrd.cpio", kernel)
    except LinuxGuestError as e:
        pytest.fail(f"Linux test guest unavailable: {e}")
    dev, zvol = loop_device
    images, disks = tmp_path / "images", tmp_path / "disks"
    images.mkdir()
    disks.mkdir()
    sh("qemu-img", "create", "-q", "-f", "qcow2", images / "base.qcow2", "16M")
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
       images / "thin-os.qcow2")
    sh("qemu-io", "-f", "qcow2", "-c", "write -P 0xaa 0 8M", images / "thin-os.qcow2")
    for name in ("thin-scratch.raw", "thin-keep.raw"):
        (disks / name).write_bytes(os.urandom(8 * MIB))
    cfg = tmp_path / "etc"
    (cfg / "machine.conf.d").mkdir(parents=True)
    (cfg / "machina.conf.json").write_text(json.dumps({
        "qemu": {"accel": "tcg", "cpu": "qemu64"},
        "storage": {
            "images": {"path": str(images), "pattern": "${machine-name}-${volume}.qcow2",
                       "type": "qcow2", "discard": True},
            "zvols": {"path": "/dev", "pattern": "${zvol}", "type": "raw-block",
                      "discard": True},
            "disks": {"path": str(disks), "pattern": "${machine-name}-${volume}.raw",
                      "type": "raw"}}}))
    (cfg / "machine.conf.d" / "thin.conf.json").write_text(json.dumps({
        "id": MID, "vars": {"zvol": os.path.basename(dev)},
        "attrs": {"memory": {"ram": 256}, "serial": {"enabled": True},
                  "pvpanic": {"enabled": True}, "cpu": {"cores": 1, "threads": 1},
                  "enlightenments": {"enabled": True, "level": "basic"},
                  "boot": {"kernel": str(kernel.image), "initrd": str(initrd),
                           "cmdline": "console=ttyS0 panic=-1 loglevel=4",
                           "bios": str(QBOOT)}},
        "volumes": [{"name": "os", "storage": "images", "bootable": True},
                    {"name": "data", "storage": "zvols", "serial": "ZVOL-DATA-0001"},
                    {"name": "scratch", "storage": "disks", "discard": True},
                    {"name": "keep", "storage": "disks"}]}))
    built = Configs(ConfigDir(str(cfg))).build("thin")
    machine = built.machine
    wwn = {v.name: v.wwn.display().lower().removeprefix("0x") for v in machine.volumes}
    qmp, log = tmp_path / "qmp.sock", tmp_path / "console.log"
    argv = [*render_argv(built.plan.options()), "-S", *qmp_args(qmp), "-no-reboot"]
    before = {p: allocated(p) for p in (images / "thin-os.qcow2", zvol,
                                         disks / "thin-scratch.raw", disks / "thin-keep.raw")}
    assert all(b >= 8 * MIB for b in before.values()), before

    with start_guest(argv, qmp=qmp, serial=log, stderr=log) as g:
        async def inspect_and_start() -> tuple[list[dict[str, Any]], object]:
            async with qmp_session(qmp) as client:
                found: list[dict[str, Any]] = await client.execute(
                    "query-named-block-nodes", {"flat": True})
                ioport = await client.execute("qom-get", {
                    "path": "/machine/peripheral/pvpanic", "property": "ioport"})
                await client.execute("cont")
                return found, ioport

        listed, pvpanic_port = asyncio.run(inspect_and_start())
        nodes = {n["node-name"]: n for n in listed}
        g.wait_serial(r"(?m)^DONE\r?$", timeout=120)
        assert g.wait_exit(30) == 0, g.describe()
    console = g.serial()

    # the nodes as machina asked for them (query-named-block-nodes)
    assert nodes["thin-os"]["drv"] == "qcow2"
    assert nodes["thin-os"]["detect_zeroes"] == "unmap"
    assert nodes["thin-os"]["backing_file"] == str(images / "base.qcow2")
    assert nodes["thin-data-file"]["drv"] == "host_device"
    assert nodes["thin-data-file"]["file"] == dev
    assert nodes["thin-data"]["detect_zeroes"] == "unmap"
    assert nodes["thin-scratch"]["detect_zeroes"] == "unmap"
    assert nodes["thin-keep"]["detect_zeroes"] == "off"

    # the guest saw every disk (SCSI by WWN, virtio-blk by serial) and discarded each
    seen = dict(re.findall(r"(?m)^DISK (\w+) id=(\S*) ", console))
    ids = set(seen.values())
    for name in ("os", "scratch", "keep"):
        assert f"naa.{wwn[name]}" in ids, console
    assert "ZVOL-DATA-0001" in ids, console
    assert sorted(re.findall(r"(?m)^DISCARDED (\w+)", console)) == sorted(seen), console

    # discard reached the storage where asked for, and only there
    after = {p: allocated(p) for p in before}
    assert after[images / "thin-os.qcow2"] < before[images / "thin-os.qcow2"] - 6 * MIB
    assert after[zvol] < before[zvol] - 12 * MIB, (before, after)
    assert after[disks / "thin-scratch.raw"] < 1 * MIB
    assert after[disks / "thin-keep.raw"] == before[disks / "thin-keep.raw"]
    assert pvpanic_port == 0x505  # the ISA pvpanic device, no PCI address
