"""Stable identifiers derived from a machine's UUID and name (spec/identity.md).

Every value here is a pure function of its inputs: SHAKE128 over a length-prefixed seed.
"""

from __future__ import annotations

import base64
import struct
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import sha3_224, shake_128
else:
    try:  # the built-in module: hashlib's import loads OpenSSL (~2 ms at every start)
        from _sha3 import sha3_224, shake_128
    except ImportError:  # pragma: no cover - a Python built without it
        from hashlib import sha3_224, shake_128

from machina.printable import is_printable, is_unstable

ZERO_UUID = uuid.UUID(int=0)


def seed(machine_id: uuid.UUID, name: str, *components: bytes) -> bytes:
    """The SHAKE128 input: UUID bytes, then each length-prefixed (be64) part."""
    parts = [machine_id.bytes]
    for part in (name.encode(), *components):
        parts.append(struct.pack(">Q", len(part)))
        parts.append(part)
    return b"".join(parts)


def xof(data: bytes, n: int) -> bytes:
    return shake_128(data).digest(n)


def volume_wwn(machine_id: uuid.UUID, name: str, volume: str) -> bytes:
    """An NAA type 5 WWN as 16 bytes (the last 8 zero)."""
    b = bytearray(xof(seed(machine_id, name, b"volume", b"wwn", volume.encode()), 8))
    b[0], b[1], b[2] = 0x55, 0x25, 0x40
    b[3] &= 0x0F
    return bytes(b) + bytes(8)


def volume_serial(machine_id: uuid.UUID, name: str, volume: str) -> str:
    b = xof(seed(machine_id, name, b"volume", b"serial-number", volume.encode()), 16)
    return base64.b32hexencode(b).decode().rstrip("=")


def connection_mac(machine_id: uuid.UUID, name: str, connection: str) -> str:
    b = bytearray(xof(seed(machine_id, name, b"connection", b"hardware-addr",
                           connection.encode()), 6))
    b[0:3] = b"\x52\x54\x00"
    return format_mac(bytes(b))


def device_id(machine_id: uuid.UUID, name: str, device_class: str, device: str) -> uuid.UUID:
    b = bytearray(xof(seed(machine_id, name, b"device", b"id", device_class.encode(),
                           device.encode()), 16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(b))


#: Derived group ids fall in 0x70000000…0x7FFFFFFE, the range systemd documents as
#: unused (docs/UIDS-GIDS.md): clear of system, regular, dynamic (61184…65519) and
#: container (0x80000…0x6FFFFFFF) ids, and below 2**31, which many tools and ioctls
#: (TUNSETGROUP) take as a signed number. (The later upstream took the first be32 value
#: >= 65536, half of which are >= 2**31: a tap could not be given such a group.)
GROUP_ID_BASE = 0x70000000
GROUP_ID_SPAN = 0x0FFFFFFF


def group_id(machine_id: uuid.UUID, name: str) -> int:
    """The machine's file-system access group id (least-privilege mode)."""
    data = xof(seed(machine_id, name, b"privilege", b"file-system", b"group-id", bytes(8)), 4)
    (value,) = struct.unpack(">I", data)
    return GROUP_ID_BASE + int(value) % GROUP_ID_SPAN


def format_mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def link_name(machine: str, connection: str) -> str:
    """The tap interface name for a connection (at most 15 bytes). "Printable" is machina's
    fixed table (decisions D28); every white space but U+0020 is not printable."""
    link = machine + "." + connection
    if len(link.encode()) <= 15:
        return "".join(c for c in link if c not in "/ " and is_printable(c))
    digest = sha3_224(link.encode()).digest()[:11]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def link_problem(machine: str, connection: str) -> str | None:
    """Why the tap name of a connection cannot be used, or None (decisions D28)."""
    link = machine + "." + connection
    if len(link.encode()) > 15:
        return None  # hashed: only A-Z a-z 0-9 - _
    unstable = [c for c in link if is_unstable(c)]
    if unstable:
        return (f"U+{ord(unstable[0]):04X} is printable in some Unicode versions and not "
                "in others, so the tap name would depend on the Python that runs machina")
    if 0xA0 in link_name(machine, connection).encode():
        return ("the tap name would hold the byte 0xa0 (part of a character's UTF-8 form), "
                "which the kernel takes for white space and refuses in interface names")
    return None


def hashed_name(name: str) -> str:
    """A QEMU identifier standing for a name QEMU would refuse (decisions D6)."""
    digest = shake_128(name.encode()).digest(15)
    return "n" + base64.b32hexencode(digest).decode().rstrip("=").lower()


def random_machine_id() -> uuid.UUID:
    return uuid.uuid4()


def random_mac() -> str:
    import secrets  # gen-mac alone: random's import costs every other command

    return format_mac(b"\x52\x54\x00" + secrets.token_bytes(3))
