"""runtime/netlink.py against the kernel and iproute2, in a network namespace of its own:
what it reads of a link is what `ip -d -j link show` reports, what it changes shows there,
and its tap is the tap pyroute2 made before it (tap, packet information on, persistent,
the group given)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.root

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from machina.runtime.netlink import Netlink, NetlinkError, link_index, tap_add
out = {}
tap_add("tp0", 4321)
br, tp = link_index("br0"), link_index("tp0")
out["missing"] = link_index("nope0")
with Netlink() as nl:
    nl.set(tp, alias="machina:vm")
    nl.set(tp, master=br, up=True)
    for name, index in (("br0", br), ("tp0", tp)):
        link = nl.link(index)
        out[name] = [link.index == index, link.kind, link.tun_group, link.alias]
    try:
        nl.set(987654, up=True)
    except NetlinkError as exc:
        out["error"] = str(exc)
    nl.set(link_index("tp1"), up=True)
    nl.set(link_index("tp1"), up=False)
    nl.delete(link_index("gone0"))
print(json.dumps(out))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"nl-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for args in (["br0", "type", "bridge"], ["tp1", "type", "bridge"],
                     ["gone0", "type", "bridge"]):
            subprocess.run(["ip", "-n", name, "link", "add", *args], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _links(ns: str) -> dict[str, dict[str, Any]]:
    out = subprocess.run(["ip", "-n", ns, "-d", "-j", "link", "show"], check=True,
                         capture_output=True, text=True).stdout
    return {x["ifname"]: x for x in json.loads(out)}


def test_netlink_reads_and_changes_links_as_iproute2_shows_them(netns: str) -> None:
    proc = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-I", "-c", SCRIPT,
                           str(SRC)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["missing"] is None
    assert out["br0"] == [True, "bridge", None, ""]
    assert out["tp0"] == [True, "tun", 4321, "machina:vm"]
    assert out["error"] == "(19, 'No such device')"

    links = _links(netns)
    assert "gone0" not in links
    tap = links["tp0"]
    assert tap["master"] == "br0" and "UP" in tap["flags"]
    assert tap["ifalias"] == "machina:vm"
    data = tap["linkinfo"]["info_data"]
    assert (data["type"], data["pi"], data["vnet_hdr"], data["persist"], data["group"]) == (
        "tap", True, False, True, 4321)
    assert "UP" not in links["tp1"]["flags"]
    tun_flags = subprocess.run(["ip", "netns", "exec", netns, "cat",
                                "/sys/class/net/tp0/tun_flags"],
                               capture_output=True, text=True, check=True).stdout.strip()
    assert tun_flags == "0x802"  # IFF_TAP | IFF_PERSIST, as pyroute2's tuntap made it
