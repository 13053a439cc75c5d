"""The few rtnetlink requests and tun ioctls machina's taps need, on the socket module.

Why not pyroute2: `import pyroute2` imports ~370 modules (multiprocessing, asyncio, its
NDB, IPDB and conntrack), measured at 60-70 ms on an idle 2-core host (more than the
whole budget of a hook), and machina-ifup, prepare and teardown run at every VM start
and stop (bench/bench_hooks.py prints both). What is done here is exactly what
pyroute2's IPRoute did for net.py: look a link up by name, read its kind, tun group and
alias, set it up or down, set or clear its master, set its alias, delete it, and create
a persistent tap as pyroute2's `link("add", kind="tuntap", mode="tap", gid=…)` did
(TUNSETIFF with IFF_TAP, then TUNSETGROUP and TUNSETPERSIST; packet information on).
Errors read as pyroute2's did: `(errno, 'message')` for netlink, OSError's for ioctls.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if.h, linux/if_tun.h
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
IFLA_IFNAME = 3
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_TUN_GROUP = 2
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
IFF_UP = 0x1
IFF_TAP = 0x0002
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETGROUP = 0x400454CE

_HEADER = struct.Struct("=IHHII")      # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")     # ifinfomsg: family, type, index, flags, change
_ATTR = struct.Struct("=HH")           # rtattr: len, type


class NetlinkError(Exception):
    """A request the kernel refused; str() is `(errno, 'message')`, as pyroute2's."""

    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))
        self.code = code


@dataclass(frozen=True, slots=True)
class Link:
    """What machina reads of a link: its kind ("bridge", "tun", … or None), the group
    of a tun/tap (None when unset or another kind) and its alias ("" when none)."""

    index: int
    kind: str | None
    tun_group: int | None
    alias: str


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, data: bytes) -> bytes:
    raw = _ATTR.pack(_ATTR.size + len(data), kind) + data
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, pos)
        if length < _ATTR.size:
            return
        yield kind & NLA_TYPE_MASK, data[pos + _ATTR.size:pos + length]
        pos += _align(length)


def _text(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def link_index(name: str) -> int | None:
    """The index of the link called name, or None."""
    try:
        return socket.if_nametoindex(name)
    except (OSError, ValueError, UnicodeError):
        return None


def tap_add(name: str, gid: int) -> None:
    """A persistent tap called name whose group is gid (OSError when refused)."""
    ifr = name.encode().ljust(16, b"\0") + struct.pack("H", IFF_TAP)
    import fcntl

    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        fcntl.ioctl(fd, TUNSETGROUP, gid)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)


class Netlink:
    """One NETLINK_ROUTE socket: `with Netlink() as nl: nl.link(nl_index)`."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._sock.close()

    def _request(self, kind: int, payload: bytes, flags: int = NLM_F_ACK) -> bytes:
        """Send one request; return the payload of its answer (b"" for an ack)."""
        self._seq += 1
        seq = self._seq
        self._sock.send(_HEADER.pack(_HEADER.size + len(payload), kind,
                                     NLM_F_REQUEST | flags, seq, 0) + payload)
        while True:
            data = self._sock.recv(65536)
            pos = 0
            while pos + _HEADER.size <= len(data):
                length, mtype, _flags, mseq, _pid = _HEADER.unpack_from(data, pos)
                body = data[pos + _HEADER.size:pos + length]
                pos += _align(length)
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", body)
                    if code:
                        raise NetlinkError(-code)
                    return b""
                if mtype == NLMSG_DONE:
                    return b""
                return body

    def link(self, index: int) -> Link:
        body = self._request(RTM_GETLINK, _IFINFO.pack(0, 0, index, 0, 0), flags=0)
        kind: str | None = None
        group: int | None = None
        alias = ""
        for atype, value in _attrs(body[_IFINFO.size:]):
            if atype == IFLA_IFALIAS:
                alias = _text(value)
            elif atype == IFLA_LINKINFO:
                info = dict(_attrs(value))
                if IFLA_INFO_KIND in info:
                    kind = _text(info[IFLA_INFO_KIND])
                if kind == "tun" and IFLA_INFO_DATA in info:
                    data = dict(_attrs(info[IFLA_INFO_DATA]))
                    if IFLA_TUN_GROUP in data:
                        (group,) = struct.unpack_from("=I", data[IFLA_TUN_GROUP])
        return Link(index, kind, group if kind == "tun" else None, alias)

    def set(self, index: int, *, up: bool | None = None, master: int | None = None,
            alias: str | None = None) -> None:
        """One RTM_NEWLINK: up/down, master (0: none), alias, as given."""
        flags = change = 0
        if up is not None:
            flags, change = (IFF_UP if up else 0), IFF_UP
        attrs = b""
        if master is not None:
            attrs += _attr(IFLA_MASTER, struct.pack("=I", master))
        if alias is not None:
            attrs += _attr(IFLA_IFALIAS, alias.encode() + b"\0")
        self._request(RTM_NEWLINK, _IFINFO.pack(0, 0, index, flags, change) + attrs)

    def delete(self, index: int) -> None:
        self._request(RTM_DELLINK, _IFINFO.pack(0, 0, index, 0, 0))
