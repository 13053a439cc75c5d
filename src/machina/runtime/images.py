"""qcow2 volumes: every file QEMU would open for one stays in the volume's pool.

A qcow2 image names its backing file (and may name an external data file) in its header,
and QEMU opens what it names: an image copied in from elsewhere could make QEMU, as root,
read `/etc/shadow` as a disk. Generation reads only config (STYLE §1), so the headers are
read here: by `prepare` (the unit's ExecStartPre, before QEMU starts), by `run`, and by
`generate` where the image is reachable. Headers: QEMU's docs/interop/qcow2.txt.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass

from machina.config.load import _key_ptr
from machina.config.schema import HostFile
from machina.errors import ConfigError, HostError
from machina.plan.devices import FileUse, Image

QCOW2_MAGIC = b"QFI\xfb"
MAX_CHAIN = 64
EXT_END = 0
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_DATA_FILE = 0x44415441
INCOMPAT_DATA_FILE = 1 << 2
#: Formats whose files may name yet other files: machina checks qcow2 and raw chains only.
OTHER_MAGICS = {b"KDMV": "vmdk", b"# Disk Descriptor": "vmdk", b"QED\x00": "qed",
                b"vhdxfile": "vhdx", b"conectix": "vpc", b"LUKS\xba\xbe": "luks"}


@dataclass(frozen=True, slots=True)
class Qcow2Header:
    version: int
    backing: str          # as written in the header ("" when none)
    backing_format: str   # from the header extension ("" when absent)
    data_file: str        # external data file ("" when none)


def parse_qcow2_header(data: bytes) -> Qcow2Header | None:
    """The references of a qcow2 header (the first 64 KiB of the file are enough for any
    image QEMU writes), or None when `data` is not a qcow2 image. ValueError: malformed."""
    if data[:4] != QCOW2_MAGIC:
        return None
    if len(data) < 72:
        raise ValueError("the qcow2 header is truncated")
    version, backing_offset, backing_size = struct.unpack_from(">IQI", data, 4)
    if version not in (2, 3):
        raise ValueError(f"unknown qcow2 version {version}")
    incompatible = 0
    ext_at = 72
    if version == 3:
        if len(data) < 104:
            raise ValueError("the qcow2 version 3 header is truncated")
        incompatible = struct.unpack_from(">Q", data, 72)[0]
        ext_at = struct.unpack_from(">I", data, 100)[0]
    backing = ""
    if backing_offset:
        if backing_size > 1023 or backing_offset + backing_size > len(data):
            raise ValueError("the backing file name lies outside the header")
        backing = data[backing_offset:backing_offset + backing_size].decode("utf-8",
                                                                            "surrogateescape")
    backing_format = data_file = ""
    while ext_at + 8 <= len(data):
        kind, length = struct.unpack_from(">II", data, ext_at)
        if kind == EXT_END:
            break
        body = data[ext_at + 8:ext_at + 8 + length]
        if len(body) < length:
            raise ValueError("a header extension runs past the header")
        if kind == EXT_BACKING_FORMAT:
            backing_format = body.decode("ascii", "replace")
        elif kind == EXT_DATA_FILE:
            data_file = body.decode("utf-8", "surrogateescape")
        ext_at += 8 + (length + 7) // 8 * 8
    if "\0" in backing or "\0" in data_file:  # QEMU would read the name up to it
        raise ValueError("a backing or data file name contains a NUL byte")
    if incompatible & INCOMPAT_DATA_FILE and not data_file:
        raise ValueError("the image has an external data file but does not name it")
    return Qcow2Header(version, backing, backing_format, data_file)


def _has_protocol(name: str) -> bool:
    """QEMU reads `proto:rest` (nbd:, http:, json:{…}) as a protocol, not a file name."""
    colon = name.find(":")
    slash = name.find("/")
    return colon >= 0 and (slash < 0 or colon < slash)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _read_header(image: Image, current: str, real: str) -> bytes:
    """The first 64 KiB of a regular file or block device; anything else (a FIFO a user
    planted in the pool would block root forever) is refused without waiting."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise HostError(f'volume "{image.volume}": cannot read {current}: '
                        f"{exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            raise HostError(f'volume "{image.volume}": {current} is not a regular file or a '
                            "block device", ("a volume and its backing files are disk images: "
                                             f"remove {current} or rebase the image",))
        try:
            return f.read(65536)
        except OSError as exc:
            raise HostError(f'volume "{image.volume}": cannot read {current}: '
                            f"{exc.strerror or exc}") from exc


def check_image(host: HostFile, image: Image) -> list[FileUse]:
    """Refuse a qcow2 chain with a file outside the pool; return the chain's other files
    (backing files read-only, the data file of the top image writable) for access checks.

    A chain member that is not qcow2 ends the chain (a raw backing file) unless it is a
    format that names files of its own (vmdk, ...), which is refused."""
    pointer = _key_ptr("$.storage", image.pool)
    root = os.path.realpath(image.pool_path or ".")

    def refuse(message: str) -> ConfigError:
        return ConfigError(host.path, pointer, f'volume "{image.volume}": {message}', (
            "every file of a qcow2 volume (its backing files and an external data file) "
            f'must be inside the pool\'s path "{image.pool_path}": rebase the image '
            "(qemu-img rebase -b FILE -F qcow2) or flatten it (qemu-img convert -O qcow2)",))

    others: list[FileUse] = []
    seen: set[str] = set()
    current, top = image.path, True
    for _ in range(MAX_CHAIN):
        real = os.path.realpath(current)
        if not _inside(real, root):
            raise refuse(f"{current} resolves to {real}, outside the pool")
        if real in seen:
            raise refuse(f"the backing chain of {image.path} loops at {current}")
        seen.add(real)
        data = _read_header(image, current, real)
        try:
            header = parse_qcow2_header(data)
        except ValueError as exc:
            raise refuse(f"{current} is not a valid qcow2 image: {exc}") from exc
        if header is None:
            if top:
                raise refuse(f"{current} is not a qcow2 image (the pool's type is qcow2)")
            fmt = next((f for magic, f in OTHER_MAGICS.items() if data.startswith(magic)),
                       None)
            if fmt is not None:
                raise refuse(f"the backing file {current} is a {fmt} image, which may name "
                             "further files; machina allows qcow2 and raw backing files")
            return others
        base = os.path.dirname(current)
        if header.data_file:
            if _has_protocol(header.data_file):
                raise refuse(f"{current} names the data file {header.data_file!r}, a "
                             "protocol, not a file")
            data_path = os.path.join(base, header.data_file)
            if not _inside(os.path.realpath(data_path), root):
                raise refuse(f"{current} has the external data file {data_path}, outside the "
                             "pool")
            others.append(FileUse(data_path, top))
        if not header.backing:
            return others
        if _has_protocol(header.backing):
            raise refuse(f"{current} names the backing file {header.backing!r}, a protocol "
                         "or JSON description, not a file")
        if header.backing_format not in ("", "qcow2", "raw"):
            raise refuse(f"{current} has a backing file of format {header.backing_format!r}; "
                         "machina allows qcow2 and raw backing files")
        holder, current = current, os.path.normpath(os.path.join(base, header.backing))
        if not _inside(os.path.realpath(current), root):
            raise refuse(f"the qcow2 image {holder} has the backing file {current}, outside "
                         "the pool")
        if not os.path.exists(current):
            raise HostError(f'volume "{image.volume}": the backing file {current} of '
                            f"{image.path} does not exist")
        others.append(FileUse(current, False))
        top = False
    raise refuse(f"the backing chain of {image.path} is longer than {MAX_CHAIN} images")
