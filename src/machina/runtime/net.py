"""Taps on bridges over netlink (pyroute2): connect, disconnect (commands.md §12)."""

from __future__ import annotations

from typing import Any

from machina.errors import HostError


def _ipr() -> Any:
    try:
        from pyroute2 import IPRoute
    except ImportError as exc:  # pragma: no cover - bundled
        raise HostError("not supported on systems without netlink (pyroute2 missing)") from exc
    return IPRoute()


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _kind(ipr: Any, index: int) -> str | None:
    link = ipr.get_links(index)[0]
    info = link.get_attr("IFLA_LINKINFO")
    return None if info is None else info.get_attr("IFLA_INFO_KIND")


def _bridge(ipr: Any, bridge: str) -> int:
    """The index of the bridge named `bridge`, which must exist and be a bridge."""
    index = _index(ipr, bridge)
    if index is None:
        raise HostError(f"bridge not found: {bridge}")
    if _kind(ipr, index) != "bridge":
        raise HostError(f'network link "{bridge}" is not a bridge')
    return index


def link_connect(link: str, bridge: str) -> None:
    """Bring the link up and enslave it to the bridge."""
    with _ipr() as ipr:
        index = _index(ipr, link)
        if index is None:
            raise HostError(f"link not found: {link}")
        bridge_index = _bridge(ipr, bridge)
        try:
            ipr.link("set", index=index, state="up")
        except Exception as exc:
            raise HostError(f"failed to turn the link up: {exc}") from exc
        try:
            ipr.link("set", index=index, master=bridge_index)
        except Exception as exc:
            raise HostError(f"failed to add the link to the bridge: {exc}") from exc


def link_disconnect(link: str) -> None:
    """Take the link off its bridge and set it down."""
    with _ipr() as ipr:
        index = _index(ipr, link)
        if index is None:
            raise HostError(f"link not found: {link}")
        try:
            ipr.link("set", index=index, master=0)
        except Exception as exc:
            raise HostError(f"failed to remove the link from the bridge: {exc}") from exc
        try:
            ipr.link("set", index=index, state="down")
        except Exception as exc:
            raise HostError(f"failed to turn the link down: {exc}") from exc


def tap_create(link: str, bridge: str, gid: int) -> None:
    """A persistent tap owned by the group gid, on the bridge, up (idempotent: an
    existing link of that name is replaced; QEMU has not started yet)."""
    with _ipr() as ipr:
        bridge_index = _bridge(ipr, bridge)
        old = _index(ipr, link)
        if old is not None:
            ipr.link("del", index=old)
        try:
            ipr.link("add", ifname=link, kind="tuntap", mode="tap", gid=gid)
        except Exception as exc:
            raise HostError(f"failed to create the tap {link}: {exc}") from exc
        index = _index(ipr, link)
        if index is None:
            raise HostError(f"the tap {link} did not appear after it was created")
        try:
            ipr.link("set", index=index, master=bridge_index, state="up")
        except Exception as exc:
            raise HostError(f"failed to add the tap {link} to the bridge {bridge}: "
                            f"{exc}") from exc


def tap_remove(link: str) -> bool:
    """Delete the tap; False when it was already gone."""
    with _ipr() as ipr:
        index = _index(ipr, link)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except Exception as exc:
            raise HostError(f"failed to remove the tap {link}: {exc}") from exc
        return True
