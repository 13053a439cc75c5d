"""Least privilege on the host side, without systemd: what `prepare` changes (only the
machine's own writable files, only towards its group) and what it refuses; `generate`
warns in advance."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from strictmode import unavailable

from .support import Machina, access_group, searchable

pytestmark = pytest.mark.root

VM_ID = "3c9d6f1e-2b4a-4c8d-9e7f-1a2b3c4d5e6f"


def _setup(tmp_path: Path, disk: Path, iso: Path) -> Path:
    config = tmp_path / "config"
    (config / "machine.conf.d").mkdir(parents=True)
    (config / "machina.conf.json").write_text(json.dumps({
        "privileges": {"mode": "least"},
        "storage": {
            "disks": {"path": str(disk.parent), "pattern": disk.name, "type": "raw"},
            "isos": {"path": str(iso.parent), "pattern": iso.name, "type": "iso-scsi"}}}))
    (config / "machine.conf.d" / "vm.conf.json").write_text(json.dumps({
        "id": VM_ID, "attrs": {"memory": {"ram": 64}},
        "volumes": [{"name": "os", "storage": "disks"}, {"name": "cd", "storage": "isos"}]}))
    return config


def _run(cmd: list[str], env: dict[str, str], config: Path, *args: str
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, "--config-dir", str(config), *args], env=env,
                          capture_output=True, text=True, check=False)


def _gid(cmd: list[str], env: dict[str, str], config: Path) -> int:
    return access_group(Machina(cmd, env), config)[1]


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """A world-searchable directory (pytest's own tmp dirs are 0700)."""
    d = tmp_path / "pub"
    d.mkdir()
    return searchable(d)


def test_prepare_gives_the_disk_to_the_group_only(world: Path, tmp_path: Path,
                                                  machina_cmd: list[str],
                                                  machina_env: dict[str, str]) -> None:
    disk, iso = world / "vm-os.raw", world / "cd.iso"
    disk.write_bytes(b"\0" * 4096)
    disk.chmod(0o600)
    iso.write_bytes(b"iso")
    iso.chmod(0o644)
    config = _setup(tmp_path, disk, iso)
    gid = _gid(machina_cmd, machina_env, config)
    res = _run(machina_cmd, machina_env, config, "prepare", "vm")
    assert res.returncode == 0, res.stderr
    st = disk.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o660)
    st = iso.stat()  # shared read-only media are left alone
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0o644)


def test_unreadable_shared_file_is_refused_with_the_fix(world: Path, tmp_path: Path,
                                                        machina_cmd: list[str],
                                                        machina_env: dict[str, str]) -> None:
    disk, iso = world / "vm-os.raw", world / "cd.iso"
    disk.write_bytes(b"\0")
    iso.write_bytes(b"iso")
    iso.chmod(0o600)
    config = _setup(tmp_path, disk, iso)
    gid = _gid(machina_cmd, machina_env, config)
    before = iso.stat()
    gen = _run(machina_cmd, machina_env, config, "generate", "--unit-dir", str(tmp_path), "vm")
    assert gen.returncode == 0
    assert f"machina: warning: {iso} cannot be read by the group machina-vm" in gen.stderr
    res = _run(machina_cmd, machina_env, config, "prepare", "vm")
    assert res.returncode == 1
    assert res.stderr.startswith(f"machina: error: {iso} cannot be read by the group"), \
        res.stderr
    assert f"setfacl -m g:{gid}:r {iso}" in res.stderr
    after = iso.stat()
    assert (after.st_gid, after.st_mode) == (before.st_gid, before.st_mode)
    # the fix the hint gives works (an ACL for exactly this group), where setfacl exists
    if subprocess.run(["sh", "-c", "command -v setfacl"], capture_output=True).returncode:
        unavailable("setfacl is not installed")
    subprocess.run(["setfacl", "-m", f"g:{gid}:r", str(iso)], check=True)
    assert _run(machina_cmd, machina_env, config, "prepare", "vm").returncode == 0


def test_disk_owned_by_another_group_is_not_taken(world: Path, tmp_path: Path,
                                                  machina_cmd: list[str],
                                                  machina_env: dict[str, str]) -> None:
    disk, iso = world / "vm-os.raw", world / "cd.iso"
    disk.write_bytes(b"\0")
    os.chown(disk, 0, 4242)
    disk.chmod(0o660)  # shared with group 4242: machina must not take it away
    iso.write_bytes(b"iso")
    config = _setup(tmp_path, disk, iso)
    res = _run(machina_cmd, machina_env, config, "prepare", "vm")
    assert res.returncode == 1
    assert "cannot be written by the group" in res.stderr
    assert disk.stat().st_gid == 4242


def test_prepare_gives_the_vfio_group_node_to_the_machine(tmp_path: Path,
                                                          machina_cmd: list[str],
                                                          machina_env: dict[str, str]) -> None:
    """A mediated device's /dev/vfio/N (its IOMMU group) is the machine's alone."""
    config = tmp_path / "config"
    (config / "machine.conf.d").mkdir(parents=True)
    (config / "machina.conf.json").write_text(json.dumps({
        "privileges": {"mode": "least"},
        "mdev": {"gpu": {"address": "0000:c1:00.0", "types": {"small": "GRID-1Q"}}}}))
    (config / "machine.conf.d" / "vm.conf.json").write_text(json.dumps({
        "id": VM_ID, "attrs": {"memory": {"ram": 64}},
        "devices": [{"name": "vgpu", "class": "small"}]}))
    cat = _run(machina_cmd, machina_env, config, "cat", "vm").stdout
    uuid = cat.rsplit("(", 1)[1].split(")")[0]
    sysfs, dev = tmp_path / "sys", tmp_path / "dev"
    (sysfs / "bus" / "pci" / "devices").mkdir(parents=True)
    device = sysfs / "bus" / "mdev" / "devices" / uuid  # already created: prepare keeps it
    device.mkdir(parents=True)
    (sysfs / "kernel" / "iommu_groups" / "7").mkdir(parents=True)
    (device / "iommu_group").symlink_to("../../../../kernel/iommu_groups/7")
    (dev / "vfio").mkdir(parents=True)
    node = dev / "vfio" / "7"
    os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # a character device, as VFIO's
    env = dict(machina_env, MACHINA_SYSFS_ROOT=str(sysfs), MACHINA_DEV_ROOT=str(dev),
               MACHINA_MDEV_LOCK=str(tmp_path / "lock"))
    res = _run(machina_cmd, env, config, "prepare", "vm")
    assert res.returncode == 0, res.stderr
    st = node.stat()
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (_gid(machina_cmd, machina_env, config),
                                                     0o660)
    unit = _run(machina_cmd, machina_env, config, "generate", "--preview", "vm").stdout
    assert "DeviceAllow=/dev/vfio/vfio rw" in unit and "DeviceAllow=char-vfio rw" in unit
    assert "LimitMEMLOCK=infinity" in unit
    # without an IOMMU group the error says which device
    (device / "iommu_group").unlink()
    res = _run(machina_cmd, env, config, "prepare", "vm")
    assert res.returncode == 1 and f"mediated device {uuid} has no IOMMU group" in res.stderr


def test_prepare_dry_run_shows_the_root_actions_and_changes_nothing(
        world: Path, tmp_path: Path, machina_cmd: list[str],
        machina_env: dict[str, str]) -> None:
    disk, iso = world / "vm-os.raw", world / "cd.iso"
    disk.write_bytes(b"\0")
    disk.chmod(0o600)
    iso.write_bytes(b"iso")
    config = _setup(tmp_path, disk, iso)
    gid = _gid(machina_cmd, machina_env, config)
    res = _run(machina_cmd, machina_env, config, "prepare", "--dry-run", "vm")
    assert res.returncode == 0, res.stderr
    assert res.stdout == (f"vm: would give {disk} to the group machina-vm ({gid}): "
                          "chgrp, g+rw, o-rwx\n")
    assert (disk.stat().st_gid, stat.S_IMODE(disk.stat().st_mode)) == (0, 0o600)
    res = _run(machina_cmd, machina_env, config, "teardown", "--dry-run", "vm")
    assert (res.returncode, res.stdout) == (0, "vm: nothing to do\n")
