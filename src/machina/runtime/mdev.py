"""Mediated devices through sysfs (commands.md §10–11, decisions D20, quirks Q12).

`prepare` creates each device of a machine on the first host parent that supplies its
class, under a lock, and checks that the device appeared; `teardown` removes them all,
tolerating devices that are already gone. MACHINA_SYSFS_ROOT (default `/sys`) points both
at another tree: a testing aid.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from machina.config.schema import HostFile
from machina.errors import HostError

APPEAR_TIMEOUT = 5.0


def sysfs_root() -> str:
    return os.environ.get("MACHINA_SYSFS_ROOT", "/sys")


def dev_root() -> str:
    """Where device nodes are (MACHINA_DEV_ROOT, default /dev): a testing aid too."""
    return os.environ.get("MACHINA_DEV_ROOT", "/dev")


def vfio_group_node(uuid: str) -> str:
    """The /dev/vfio/N node of a mediated device's IOMMU group."""
    link = os.path.join(device_path(uuid), "iommu_group")
    try:
        group = os.path.basename(os.readlink(link))
    except OSError as exc:
        raise HostError(f"mediated device {uuid} has no IOMMU group ({link}: "
                        f"{exc.strerror or exc})") from exc
    return os.path.join(dev_root(), "vfio", group)


def lock_path() -> str:
    """The lock around mediated-device creation: in /run/machina, a directory only root
    may change (MACHINA_MDEV_LOCK moves it: a testing aid, checked the same way)."""
    return os.environ.get("MACHINA_MDEV_LOCK", "/run/machina/mdev.lock")


@dataclass(frozen=True, slots=True)
class Mdev:
    device_class: str
    name: str
    uuid: str


@contextmanager
def _locked() -> Iterator[None]:
    """Hold the lock file: created in a directory only root may change, opened without
    following a link, and refused unless it is root's regular file (nobody else can then
    hold it and stop every machine with a mediated device from starting)."""
    from machina.runtime import safepath

    path = lock_path()
    directory = os.path.dirname(path)
    try:
        os.mkdir(directory, 0o755)
    except FileExistsError:
        pass
    except OSError as exc:
        raise HostError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    with safepath.open_dir_nofollow(directory) as dfd:
        try:
            fd = os.open(os.path.basename(path),
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         0o600, dir_fd=dfd)
        except OSError as exc:
            raise HostError(f"cannot open the lock {path}: {exc.strerror or exc}",
                            (f"remove {path} if it is not root's regular file",)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0:
            raise HostError(f"the lock {path} is not a regular file of root's",
                            (f"remove it: rm {path}",))
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: str, value: str) -> None:
    root = sysfs_root().rstrip("/") + "/"
    if not path.startswith(root):
        raise HostError(f"invalid system file path: {path}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise HostError(f"failed to write {path}: {exc.strerror or exc}") from exc


def _read_trimmed(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def device_path(uuid: str) -> str:
    return os.path.join(sysfs_root(), "bus", "mdev", "devices", uuid)


def _exists(uuid: str) -> bool:
    path = device_path(uuid)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise HostError(f'the sysfs path "{path}" is not a directory')
    return os.path.isdir(path)


def candidates(host: HostFile, device_class: str) -> list[tuple[str, str]]:
    """(address, type name) of each parent supplying the class, by address then entry."""
    found = [(md.address, name, md.types[device_class])
             for name, md in host.mdev.items() if device_class in md.types]
    found.sort(key=lambda t: (t[0].encode(), t[1].encode()))
    return [(address, type_name) for address, _, type_name in found]


def create(host: HostFile, dev: Mdev) -> None:
    """Create one mediated device (idempotent: an existing device is left alone)."""
    options = candidates(host, dev.device_class)
    if not options:
        raise HostError(f"failed to locate device class {dev.device_class} for device "
                        f"{dev.name}")
    pci = os.path.join(sysfs_root(), "bus", "pci", "devices")
    if not os.path.isdir(pci):
        raise HostError("mediated devices are not supported on the local system")
    with _locked():
        if _exists(dev.uuid):
            return
        for address, type_name in options:
            if type_name == "":
                continue
            parent = os.path.normpath(os.path.join(pci, address))
            if not os.path.lexists(parent):
                continue
            if not os.path.isdir(parent):
                raise HostError(f"failed to open mediated device file system for {address}: "
                                f'the sysfs path "{parent}" is not a directory')
            types_dir = os.path.join(parent, "mdev_supported_types")
            try:
                entries = sorted(e for e in os.listdir(types_dir)
                                 if os.path.isdir(os.path.join(types_dir, e)))
            except OSError as exc:
                raise HostError(f"failed to enumerate supported types for mediated device "
                                f"{address}: {exc.strerror or exc}") from exc
            for entry in entries:
                if _read_trimmed(os.path.join(types_dir, entry, "name")) != type_name:
                    continue
                _write(os.path.join(types_dir, entry, "create"), dev.uuid)
                _await_device(dev)
                return
        raise HostError(
            f"no host device could create {dev.name} ({dev.device_class}): no parent of "
            "that class offers the type it names, or none exists",
            ("check $.mdev in machina.conf.json against "
             "/sys/bus/pci/devices/*/mdev_supported_types/*/name",))


def _await_device(dev: Mdev) -> None:
    deadline = time.monotonic() + APPEAR_TIMEOUT
    while not os.path.isdir(device_path(dev.uuid)):
        if time.monotonic() > deadline:
            raise HostError(f"mediated device {dev.uuid} ({dev.name}) did not appear after "
                            "it was created")
        time.sleep(0.01)


def remove(dev: Mdev) -> bool:
    """Remove one mediated device; False when it was not there."""
    if not _exists(dev.uuid):
        return False
    try:
        _write(os.path.join(device_path(dev.uuid), "remove"), "1")
    except HostError:
        if not os.path.isdir(device_path(dev.uuid)):
            return False  # gone meanwhile
        raise
    return True
