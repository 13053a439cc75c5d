"""Taps on bridges over netlink (runtime/netlink.py): connect, disconnect (commands.md §12)."""

from __future__ import annotations

from collections.abc import Sequence

from machina.errors import HostError
from machina.runtime.netlink import Link, Netlink, link_index, tap_add


def _ipr() -> Netlink:
    try:
        return Netlink()
    except OSError as exc:
        raise HostError(f"not supported on systems without netlink ({exc})") from exc


def _index(ipr: Netlink, name: str) -> int | None:
    return link_index(name)


def _kind(ipr: Netlink, index: int) -> str | None:
    return ipr.link(index).kind


def _bridge(ipr: Netlink, bridge: str) -> int:
    """The index of the bridge named `bridge`, which must exist and be a bridge."""
    index = _index(ipr, bridge)
    if index is None:
        raise HostError(f"bridge not found: {bridge}")
    if _kind(ipr, index) != "bridge":
        raise HostError(f'network link "{bridge}" is not a bridge')
    return index


def bridge_problems(bridges: Sequence[str]) -> dict[str, HostError]:
    """The bridges that do not exist or are not bridges (`check`), with one netlink
    socket for all of them."""
    if not bridges:
        return {}
    out: dict[str, HostError] = {}
    with _ipr() as ipr:
        for bridge in bridges:
            try:
                _bridge(ipr, bridge)
            except HostError as exc:
                out[bridge] = exc
    return out


def link_connect(link: str, bridge: str, machine: str | None = None) -> None:
    """Bring the link up and enslave it to the bridge; with machine (machina-ifup,
    connect), a tap without an alias gets the machine's (tap_alias), which lets
    machina-ifdown prove the tap is machina's without the config (fast_disconnect)."""
    with _ipr() as ipr:
        index = _index(ipr, link)
        if index is None:
            raise HostError(f"link not found: {link}")
        tap = _check_tap(ipr, index, link)
        bridge_index = _bridge(ipr, bridge)
        if machine is not None and tap.alias == "":
            try:
                ipr.set(index, alias=tap_alias(machine))
            except Exception as exc:
                raise HostError(f"failed to mark the tap as {machine}'s: {exc}") from exc
        try:
            ipr.set(index, up=True)
        except Exception as exc:
            raise HostError(f"failed to turn the link up: {exc}") from exc
        try:
            ipr.set(index, master=bridge_index)
        except Exception as exc:
            raise HostError(f"failed to add the link to the bridge: {exc}") from exc


def link_disconnect(link: str) -> None:
    """Take the link off its bridge and set it down."""
    with _ipr() as ipr:
        index = _index(ipr, link)
        if index is None:
            raise HostError(f"link not found: {link}")
        _check_tap(ipr, index, link)
        try:
            ipr.set(index, master=0)
        except Exception as exc:
            raise HostError(f"failed to remove the link from the bridge: {exc}") from exc
        try:
            ipr.set(index, up=False)
        except Exception as exc:
            raise HostError(f"failed to turn the link down: {exc}") from exc


def fast_disconnect(link: str) -> bool:
    """machina-ifdown LINK without the config: take the link off its bridge and set it
    down, as link_disconnect, when it is a tap whose alias is `machina:NAME` (only root
    sets an alias: machina-ifup or prepare did) and whose name is one of NAME's
    connections (`NAME.CONN`). False, with nothing changed or only what the config path
    redoes, in every other case (no such link, not a tap, no alias, a hashed name, any
    error): the caller then loads the config and reports as before."""
    try:
        with Netlink() as ipr:
            index = link_index(link)
            if index is None:
                return False
            found = ipr.link(index)
            machine = found.alias.removeprefix(tap_alias(""))
            if (found.kind != "tun" or found.alias != tap_alias(machine) or not machine
                    or not (machine.isascii() and machine.isprintable())
                    or " " in machine or "/" in machine
                    or not link.startswith(machine + ".")):
                return False
            ipr.set(index, master=0)
            ipr.set(index, up=False)
    except Exception:
        return False
    return True


def tap_alias(machine: str) -> str:
    """The interface alias that marks a tap machina created for a machine (setting an
    alias needs CAP_NET_ADMIN, so no user can forge it)."""
    return f"machina:{machine}"


def _tap_owner(ipr: Netlink, index: int) -> tuple[str | None, int | None]:
    """(alias, tun group) of a tun/tap link, or (None, None) for any other kind."""
    link = ipr.link(index)
    if link.kind != "tun":
        return None, None
    return link.alias, link.tun_group


def _check_tap(ipr: Netlink, index: int, link: str) -> Link:
    """Connect and disconnect act on taps only: never on a host interface whose name a
    machine's connection happens to give (`eth0` + `10` is `eth0.10`). The tap, as read."""
    found = ipr.link(index)
    if found.kind != "tun":
        raise HostError(f'network link "{link}" is not a tap: machina connects and '
                        "disconnects only the taps of its machines")
    return found


def _ours(ipr: Netlink, index: int, machine: str, gid: int) -> bool:
    alias, group = _tap_owner(ipr, index)
    return alias == tap_alias(machine) and group == gid


def _not_ours(link: str, machine: str) -> HostError:
    return HostError(f"a network link named {link} exists and is not a tap machina made for "
                     f"{machine}: machina leaves it alone",
                     (f"ip -d link show {link}  (a host interface, or another machine's "
                      "tap: two connections that give the same tap name?)",))


def tap_create(link: str, bridge: str, gid: int, machine: str) -> None:
    """A persistent tap owned by the group gid, on the bridge, up, marked as the
    machine's (idempotent: a tap machina made for this machine before is replaced; QEMU
    has not started yet; any other link of that name is refused, never deleted)."""
    with _ipr() as ipr:
        bridge_index = _bridge(ipr, bridge)
        old = _index(ipr, link)
        if old is not None:
            if not _ours(ipr, old, machine, gid):
                raise _not_ours(link, machine)
            ipr.delete(old)
        try:
            tap_add(link, gid)
        except Exception as exc:
            raise HostError(f"failed to create the tap {link}: {exc}") from exc
        index = _index(ipr, link)
        if index is None:
            raise HostError(f"the tap {link} did not appear after it was created")
        try:
            ipr.set(index, alias=tap_alias(machine))
            ipr.set(index, master=bridge_index, up=True)
        except Exception as exc:
            raise HostError(f"failed to add the tap {link} to the bridge {bridge}: "
                            f"{exc}") from exc


def tap_remove(link: str, gid: int, machine: str) -> bool:
    """Delete the machine's tap; False when it was already gone. A link of that name
    machina did not make for this machine is refused, never deleted."""
    with _ipr() as ipr:
        index = _index(ipr, link)
        if index is None:
            return False
        if not _ours(ipr, index, machine, gid):
            raise _not_ours(link, machine)
        try:
            ipr.delete(index)
        except Exception as exc:
            raise HostError(f"failed to remove the tap {link}: {exc}") from exc
        return True
