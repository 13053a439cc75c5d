"""A Linux test guest: the host's Debian kernel with a busybox initramfs.

The initramfs (built here, no download) loads ``evdev`` and ``button``, starts
busybox ``acpid`` and prints ``READY`` on the console.  The ACPI power button then
runs ``/etc/acpi/PWRF/00000080``, which prints ``POWERDOWN`` and powers off
(``poweroff -f``: ACPI S5, so QEMU reports ``SHUTDOWN`` with ``guest: true``).
Kernel command line options for slow or stubborn guests: ``guest.delay=S``
(sleep S seconds first) and ``guest.ignore`` (never power off).

Networking is opt-in: with ``guest.ip=ADDR/PLEN`` (e.g. ``guest.ip=10.77.0.2/24``)
init loads the virtio-net driver (``NET_MODULES`` and their dependencies from
``modules.dep``, in load order), gives ``eth0`` that address with busybox ``ip``,
brings it up and prints ``NET READY`` (or ``NET FAILED: <why>``) before ``READY``.
The guest then answers ping on that address.  Without ``guest.ip`` none of this
runs, so the boot is as before.

Needs ``busybox-static`` and a kernel in ``/boot`` with its modules in
``/lib/modules`` (``linux-image-amd64``).  The host's paravirtualised KVM cannot
run a stock kernel here: boot it with ``-accel tcg`` (about 5 s).
"""
from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import struct
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MODULES = ("kernel/drivers/input/evdev.ko", "kernel/drivers/acpi/button.ko")
# Loaded only with guest.ip=...; their dependencies (net_failover, failover, virtio,
# virtio_ring, virtio_pci_*_dev on Debian 12) are added from modules.dep.  A module
# built into the kernel (modules.builtin) is skipped.
NET_MODULES = ("kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/net/virtio_net.ko")

#: How every busybox init here starts: the applets, /proc, /sys and /dev (the script goes
#: on after it, from a new line).
INIT_MOUNTS = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev"""

INIT = INIT_MOUNTS + r"""
for m in /lib/modules/*.ko; do insmod "$m" || echo "insmod $m failed"; done
guest_ip=
for w in $(cat /proc/cmdline); do
    case "$w" in
        guest.ip=*) guest_ip=${w#guest.ip=} ;;
    esac
done
if [ -n "$guest_ip" ]; then
    # /lib/modules/net/NN-name.ko: the glob's order is the load order.
    for m in /lib/modules/net/*.ko; do insmod "$m" || echo "insmod $m failed"; done
    tries=0
    until [ -e /sys/class/net/eth0 ]; do
        tries=$((tries + 1))
        [ $tries -gt 100 ] && break
        sleep 0.1
    done
    ip link set lo up
    if [ ! -e /sys/class/net/eth0 ]; then
        echo "NET FAILED: no eth0"
    elif ip addr add "$guest_ip" dev eth0 && ip link set eth0 up; then
        echo "NET READY $guest_ip"
    else
        echo "NET FAILED: ip"
    fi
fi
acpid -d -c /etc/acpi -p /run/acpid.pid &
acpid=$!
# READY only once acpid has opened the input devices (the power button among them).
tries=0
until ls -l /proc/$acpid/fd 2>/dev/null | grep -q /dev/input/event; do
    tries=$((tries + 1))
    [ $tries -gt 100 ] && { echo "acpid opened no input device"; break; }
    sleep 0.1
done
echo READY
while :; do sleep 3600; done
"""

POWER_BUTTON = r"""#!/bin/sh
exec >/dev/console 2>&1
echo POWERDOWN
delay=
ignore=
for w in $(cat /proc/cmdline); do
    case "$w" in
        guest.delay=*) delay=${w#guest.delay=} ;;
        guest.ignore) ignore=1 ;;
    esac
done
[ -n "$ignore" ] && exit 0
[ -n "$delay" ] && sleep "$delay"
echo POWEROFF
poweroff -f
"""


class LinuxGuestError(RuntimeError):
    """No usable kernel, modules or static busybox on this host."""


@dataclass(frozen=True)
class Kernel:
    image: Path
    release: str  # uname -r

    @property
    def modules(self) -> Path:
        return Path("/lib/modules") / self.release


def find_kernel(boot: Path = Path("/boot")) -> Kernel:
    """The newest ``/boot/vmlinuz-<release>`` whose modules are installed."""
    found = []
    for image in boot.glob("vmlinuz-*"):
        k = Kernel(image, image.name.removeprefix("vmlinuz-"))
        if k.modules.is_dir() and os.access(image, os.R_OK):
            found.append(k)
    if not found:
        raise LinuxGuestError(f"no readable {boot}/vmlinuz-* with /lib/modules/<release>")
    return max(found, key=lambda k: [int(x) if x.isdigit() else 0
                                     for x in re.split(r"[.-]", k.release)])


def find_static_busybox() -> Path:
    path = shutil.which("busybox")
    if path is None:
        raise LinuxGuestError("busybox not found (install busybox-static)")
    data = Path(path).read_bytes()
    if _has_interp(data):
        raise LinuxGuestError(f"{path} is dynamically linked (install busybox-static)")
    return Path(path)


def _has_interp(elf: bytes) -> bool:
    """True if a 64-bit little-endian ELF has a PT_INTERP segment (is dynamic)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise LinuxGuestError("busybox is not a 64-bit ELF")
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return any(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] == 3
               for i in range(phnum))


def _module_bytes(kernel: Kernel, rel: str) -> bytes:
    base = kernel.modules / rel
    if base.is_file():
        return base.read_bytes()
    xz = base.with_name(base.name + ".xz")
    if xz.is_file():
        return lzma.decompress(xz.read_bytes())
    raise LinuxGuestError(f"module {base}[.xz] not found")


def _strip_ko(rel: str) -> str:
    """``kernel/x/y.ko[.xz|.zst|.gz]`` → ``kernel/x/y``."""
    return rel[:rel.index(".ko")] if ".ko" in rel else rel


def modules_in_load_order(kernel: Kernel, wanted: Iterable[str]) -> list[str]:
    """``wanted`` and their dependencies (``modules.dep``), dependencies first.

    Modules built into the kernel (``modules.builtin``) are left out; a module
    neither built in nor listed in ``modules.dep`` is an error.
    """
    try:
        dep_text = (kernel.modules / "modules.dep").read_text()
    except OSError as e:
        raise LinuxGuestError(f"cannot read modules.dep: {e}") from e
    deps: dict[str, tuple[str, list[str]]] = {}  # stem -> (file as listed, dependencies)
    for line in dep_text.splitlines():
        head, sep, tail = line.partition(":")
        if sep:
            deps[_strip_ko(head)] = (head, [_strip_ko(d) for d in tail.split()])
    try:
        builtin = {_strip_ko(x) for x in
                   (kernel.modules / "modules.builtin").read_text().split()}
    except OSError:
        builtin = set()
    order: list[str] = []
    seen: set[str] = set()

    def visit(stem: str, chain: tuple[str, ...]) -> None:
        if stem in seen or stem in builtin:
            return
        if stem in chain:
            raise LinuxGuestError(f"module dependency cycle: {' -> '.join((*chain, stem))}")
        if stem not in deps:
            raise LinuxGuestError(f"module {stem}.ko is neither in modules.dep nor built in")
        for d in deps[stem][1]:
            visit(d, (*chain, stem))
        seen.add(stem)
        order.append(deps[stem][0])

    for rel in wanted:
        visit(_strip_ko(rel), ())
    return order


def numbered_modules(kernel: Kernel, wanted: Iterable[str], subdir: str) -> dict[str, bytes]:
    """``subdir/NN-name.ko`` → contents, for ``wanted`` and their dependencies, NN giving
    the load order (an init loads ``/lib/modules/subdir/*.ko`` in the glob's order)."""
    out = {}
    for i, listed in enumerate(modules_in_load_order(kernel, wanted)):
        name = Path(_strip_ko(listed)).name
        out[f"{subdir}/{i:02d}-{name}.ko"] = _module_bytes(kernel, _strip_ko(listed) + ".ko")
    return out


# ---- cpio (newc) ---------------------------------------------------------------

S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000


@dataclass(frozen=True)
class Entry:
    name: str  # without leading "/"
    mode: int  # including the file type bits
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def cpio_newc(entries: Iterable[Entry]) -> bytes:
    """An uncompressed "newc" cpio archive, as the kernel unpacks for an initramfs."""
    out = bytearray()
    for ino, e in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        name = e.name.encode() + b"\0"
        fields = (ino, e.mode, 0, 0, 2 if e.mode & S_IFDIR == S_IFDIR else 1, 0,
                  len(e.data), 0, 0, e.rdev[0], e.rdev[1], len(name), 0)
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        out += header + name + _pad4(len(header) + len(name))
        out += e.data + _pad4(len(e.data))
    return bytes(out)


def initramfs_entries(busybox: bytes, modules: dict[str, bytes], init: str = INIT) -> list[Entry]:
    """``modules`` maps a path below ``lib/modules`` (``evdev.ko``, ``net/00-x.ko``)
    to its contents; subdirectories are created. ``init`` is the ``/init`` script."""
    d, x = S_IFDIR | 0o755, S_IFREG | 0o755
    subdirs = sorted({str(p) for name in modules for p in Path(name).parents
                      if str(p) != "."})
    return [
        Entry("bin", d), Entry("dev", d), Entry("etc", d), Entry("etc/acpi", d),
        Entry("etc/acpi/PWRF", d), Entry("lib", d), Entry("lib/modules", d),
        *(Entry(f"lib/modules/{sub}", d) for sub in subdirs),
        Entry("proc", d), Entry("run", d), Entry("sys", d), Entry("tmp", S_IFDIR | 0o1777),
        Entry("dev/console", S_IFCHR | 0o600, rdev=(5, 1)),
        Entry("bin/busybox", x, busybox),
        Entry("init", x, init.encode()),
        Entry("etc/acpi/PWRF/00000080", x, POWER_BUTTON.encode()),
        *(Entry(f"lib/modules/{name}", S_IFREG | 0o644, data)
          for name, data in sorted(modules.items())),
    ]


def build_linux_initramfs(outdir: Path, kernel: Kernel | None = None) -> Path:
    """Build (or reuse, by content hash) the initramfs for ``kernel`` in ``outdir``."""
    kernel = kernel or find_kernel()
    busybox = find_static_busybox().read_bytes()
    modules = {Path(rel).name: _module_bytes(kernel, rel) for rel in MODULES}
    modules.update(numbered_modules(kernel, NET_MODULES, "net"))
    archive = cpio_newc(initramfs_entries(busybox, modules))
    digest = hashlib.sha256(archive).hexdigest()[:16]
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / f"initramfs-{kernel.release}-{digest}.cpio"
    if not target.is_file():
        fd, tmp = tempfile.mkstemp(prefix=".initramfs-", dir=outdir)
        with os.fdopen(fd, "wb") as f:
            f.write(archive)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} OUTDIR", file=sys.stderr)
        raise SystemExit(2)
    k = find_kernel()
    print(k.image)
    print(build_linux_initramfs(Path(sys.argv[1]), k))
