"""A Secure Boot test guest: EFI system partitions that boot Debian's signed chain.

``signed.img`` holds Debian's signed shim (``EFI/BOOT/BOOTX64.EFI``, signed by Microsoft's
UEFI CA), signed grub (Debian's CA, which shim trusts) and the host's signed kernel with a
busybox initramfs whose ``/init`` prints, on the serial console (``console=ttyS0``)::

    MACHINA-SB-REPORT-BEGIN
    SecureBoot=1            (the EFI variable the firmware set)
    TPM_VERSION_MAJOR=2     (/sys/class/tpm/tpm0)
    EK_HEAD=80010000....00000000 EK_SHA256=...   (TPM2_ReadPublic of the EK 0x81010001)
    MARKER_BEFORE=none|seen (an EFI variable this guest writes on its first boot)
    MACHINA-SB-REPORT-END

and powers off. ``unsigned.img`` holds an unsigned EFI binary (grub's monolithic image
without a signature) as ``BOOTX64.EFI``: Secure Boot firmware must refuse it.

Built without root and without loop mounts (mkfs.vfat + mtools), following
../shared/recipes/secureboot-tpm. Packages: shim-signed, grub-efi-amd64-signed (and
grub-efi-amd64-bin), mtools, dosfstools, busybox-static, linux-image-amd64.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from guest.linux import (
    S_IFCHR,
    S_IFDIR,
    S_IFREG,
    Entry,
    Kernel,
    LinuxGuestError,
    _module_bytes,
    cpio_newc,
    find_static_busybox,
)

SHIM = Path("/usr/lib/shim/shimx64.efi.signed")
GRUB = Path("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
UNSIGNED = Path("/usr/lib/grub/x86_64-efi/monolithic/grubx64.efi")
MARKER_GUID = "6d2c3b1a-5e4f-4a8b-9c0d-e1f2a3b4c5d6"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
insmod /lib/modules/efivarfs.ko || echo "insmod efivarfs.ko failed"
mount -t efivarfs efivarfs /sys/firmware/efi/efivars || echo "mount efivarfs failed"
EV=/sys/firmware/efi/efivars
G=8be4df61-93ca-11d2-aa0d-00e098032b8c
echo MACHINA-SB-REPORT-BEGIN
# efivarfs files cannot be seeked: read through a pipe (4 bytes attributes, then data)
if [ -e "$EV/SecureBoot-$G" ]; then
  h=$(cat "$EV/SecureBoot-$G" | hexdump -v -e '1/1 "%02x"')
  echo "SecureBoot=$((0x${h#????????}))"
else
  echo "SecureBoot=absent"
fi
echo "TPM_VERSION_MAJOR=$(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null || echo none)"
if [ -e /dev/tpm0 ]; then
  # TPM2_ReadPublic(0x81010001): the endorsement key swtpm_setup persisted
  exec 3<>/dev/tpm0
  printf '\200\001\000\000\000\016\000\000\001\163\201\001\000\001' >&3
  dd bs=4096 count=1 <&3 2>/dev/null > /tmp/ek
  exec 3<&-
  head=$(head -c 10 /tmp/ek | hexdump -v -e '1/1 "%02x"')
  echo "EK_HEAD=$head EK_SHA256=$(sha256sum < /tmp/ek | cut -d' ' -f1)"
fi
M="$EV/MachinaMarker-__GUID__"
if [ -e "$M" ]; then
  echo "MARKER_BEFORE=$(cat "$M" | tail -c +5)"
else
  echo "MARKER_BEFORE=none"
  printf '\007\000\000\000seen' > "$M" || echo "writing the marker variable failed"
fi
echo MACHINA-SB-REPORT-END
poweroff -f
""".replace("__GUID__", MARKER_GUID)

GRUB_CFG = """set timeout=0
set default=0
menuentry "machina-sb" {
  linux /vmlinuz console=ttyS0 panic=-1 quiet loglevel=4
  initrd /initrd
}
"""


@dataclass(frozen=True)
class SecureBootGuest:
    signed: Path     # ESP: shim -> grub -> kernel, all signed
    unsigned: Path   # ESP: an unsigned BOOTX64.EFI


def pe_signature_size(image: bytes) -> int:
    """The size of a PE image's certificate table (0: not signed)."""
    lfanew, = struct.unpack_from("<I", image, 0x3C)
    if image[lfanew:lfanew + 4] != b"PE\0\0":
        raise LinuxGuestError("not a PE image")
    opt = lfanew + 24
    magic, = struct.unpack_from("<H", image, opt)
    dirs = opt + (112 if magic == 0x20B else 96)
    _, size = struct.unpack_from("<II", image, dirs + 4 * 8)  # IMAGE_DIRECTORY_ENTRY_SECURITY
    return int(size)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise LinuxGuestError(f"{name} not found (install {package})")
    return path


def _esp(path: Path, size_kib: int, files: dict[str, Path | bytes]) -> None:
    subprocess.run([_tool("mkfs.vfat", "dosfstools"), "-C", "-n", "MACHINASB", str(path),
                    str(size_kib)], check=True, capture_output=True)
    mmd, mcopy = _tool("mmd", "mtools"), _tool("mcopy", "mtools")
    dirs = sorted({str(Path(n).parent) for n in files} - {"."})
    for d in dirs:
        parts = Path(d).parts
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            subprocess.run([mmd, "-D", "s", "-i", str(path), f"::/{sub}"], check=False,
                           capture_output=True)
    for name, source in files.items():
        if isinstance(source, bytes):
            tmp = path.parent / (Path(name).name + ".tmp")
            tmp.write_bytes(source)
            source = tmp
        subprocess.run([mcopy, "-i", str(path), str(source), f"::/{name}"], check=True,
                       capture_output=True)


def build_secureboot_guest(workdir: Path, kernel: Kernel) -> SecureBootGuest:
    for f, package in ((SHIM, "shim-signed"), (GRUB, "grub-efi-amd64-signed"),
                       (UNSIGNED, "grub-efi-amd64-bin")):
        if not f.is_file():
            raise LinuxGuestError(f"{f} not found (install {package})")
    if pe_signature_size(UNSIGNED.read_bytes()) != 0:
        raise LinuxGuestError(f"{UNSIGNED} is signed; the refusal test needs an unsigned one")
    workdir.mkdir(parents=True, exist_ok=True)
    busybox = find_static_busybox().read_bytes()
    d = S_IFDIR | 0o755
    initrd = cpio_newc([
        Entry("bin", d), Entry("dev", d), Entry("lib", d), Entry("lib/modules", d),
        Entry("proc", d), Entry("sys", d), Entry("tmp", S_IFDIR | 0o1777),
        Entry("dev/console", S_IFCHR | 0o600, rdev=(5, 1)),
        Entry("bin/busybox", S_IFREG | 0o755, busybox),
        Entry("init", S_IFREG | 0o755, INIT.encode()),
        Entry("lib/modules/efivarfs.ko", S_IFREG | 0o644,
              _module_bytes(kernel, "kernel/fs/efivarfs/efivarfs.ko")),
    ])
    signed = workdir / "signed.img"
    _esp(signed, 32768, {
        "EFI/BOOT/BOOTX64.EFI": SHIM,
        "EFI/BOOT/grubx64.efi": GRUB,
        "EFI/debian/grub.cfg": GRUB_CFG.encode(),
        "vmlinuz": kernel.image,
        "initrd": initrd,
    })
    unsigned = workdir / "unsigned.img"
    _esp(unsigned, 16384, {"EFI/BOOT/BOOTX64.EFI": UNSIGNED})
    for img in (signed, unsigned):
        img.chmod(0o644)
    return SecureBootGuest(signed, unsigned)
