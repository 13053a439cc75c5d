"""The test vectors of spec/identity.md §5 (and §1), plus the D6 node-name example."""

from __future__ import annotations

import uuid

import pytest

from machina import identity
from machina.config.values import Wwn
from machina.plan.devices import node_name

README = uuid.UUID("8b18191a-234f-45ce-b43c-b46e28cd2f70")
ZERO = uuid.UUID(int=0)
ODD = uuid.UUID("11111111-2222-4333-8444-555555555555")


def wwn(mid: uuid.UUID, machine: str, volume: str) -> str:
    return Wwn(identity.volume_wwn(mid, machine, volume)).display()


def test_seed_layout_byte_example() -> None:
    """§1: the README machine, volume `os`, WWN."""
    data = identity.seed(README, "test-vm", b"volume", b"wwn", b"os")
    assert data.hex() == (
        "8b18191a234f45ceb43cb46e28cd2f70"
        "0000000000000007" + b"test-vm".hex()
        + "0000000000000006" + b"volume".hex()
        + "0000000000000003" + b"wwn".hex()
        + "0000000000000002" + b"os".hex())
    assert identity.xof(data, 8).hex() == "2a21e79908fe6258"


@pytest.mark.parametrize(("mid", "machine", "volume", "want_wwn", "want_serial"), [
    (README, "test-vm", "os", "0x5525400908FE6258", "9IQ4PUV68QOCNS2C75OKUS04I4"),
    (README, "test-vm", "virtio-win-latest", "0x5525400982DB87CE",
     "JAVJJVPOOPTIV73ONECE40VFD4"),
    (README, "test-vm", "win10", "0x5525400F7C2ED5D0", "0V17D9DH4EVT9SFOCV9CFTR0BK"),
    (ZERO, "no-id", "os", "0x55254000F2156DFF", "FOB7RTDJA74TGAHD90FG7240KO"),
    (ODD, "we ird", "os", "0x5525400D4363C886", "T0OGVF73UJMI6BHPJASOEC2BTS"),
    (ODD, "we ird", "cd,1", "0x5525400F0CC10572", "NGS0JF3LSBFINHL61AQI07VF9G"),
    (ODD, "we ird", "cd2", "0x55254000D9DF3D61", "Q6K2I0A9FGCS25GCBO6RT7D53C"),
])
def test_volume_vectors(mid: uuid.UUID, machine: str, volume: str, want_wwn: str,
                        want_serial: str) -> None:
    assert wwn(mid, machine, volume) == want_wwn
    assert identity.volume_serial(mid, machine, volume) == want_serial


@pytest.mark.parametrize(("mid", "machine", "connection", "mac"), [
    (README, "test-vm", "0", "52:54:00:26:77:fa"),
    (ZERO, "no-id", "0", "52:54:00:00:72:c4"),
    (ODD, "we ird", "n 1", "52:54:00:d5:e2:ac"),
])
def test_mac_vectors(mid: uuid.UUID, machine: str, connection: str, mac: str) -> None:
    assert identity.connection_mac(mid, machine, connection) == mac


def test_mac_raw_xof_bytes() -> None:
    raw = identity.xof(identity.seed(README, "test-vm", b"connection", b"hardware-addr",
                                     b"0"), 6)
    assert raw.hex() == "b0250a2677fa"


@pytest.mark.parametrize(("mid", "machine", "cls", "name", "want", "raw"), [
    (README, "test-vm", "cad-standard", "vgpu", "3e2cee4d-1002-4989-af98-3e03b8ad3197",
     "3e2cee4d1002f9892f983e03b8ad3197"),
    (ODD, "we ird", "small", "g", "08121caf-302b-4cba-bb0e-01ec3586ee4e", None),
])
def test_device_vectors(mid: uuid.UUID, machine: str, cls: str, name: str, want: str,
                        raw: str | None) -> None:
    got = identity.device_id(mid, machine, cls, name)
    assert str(got) == want
    assert got.version == 4 and got.variant == uuid.RFC_4122
    if raw is not None:
        data = identity.seed(mid, machine, b"device", b"id", cls.encode(), name.encode())
        assert identity.xof(data, 16).hex() == raw


@pytest.mark.parametrize(("machine", "connection", "link"), [
    ("test-vm", "0", "test-vm.0"),
    ("we ird", "n 1", "weird.n1"),
    ("edge-gw-0001", "0", "edge-gw-0001.0"),
    ("edge-gw-0001", "10", "edge-gw-0001.10"),
    ("edge-gw-0001", "100", "u5V0YpfkQ3ao6nU"),
    ("accounting-workstation-17", "0", "mkH3o-PubvTGmf0"),
    ("accounting-workstation-17", "1", "Mkt-GlDlmEqR5Mw"),
    ("router", "wan 1", "router.wan1"),
    ("router", "lan/a", "router.lana"),
    ("nameless", "", "nameless."),
])
def test_link_name_vectors(machine: str, connection: str, link: str) -> None:
    assert identity.link_name(machine, connection) == link
    assert len(link.encode()) <= 15


def test_link_length_is_measured_in_bytes_before_cleaning() -> None:
    # 15 bytes including the space: short form, cleaned afterwards → 14 characters
    assert identity.link_name("abcdef", "gh ijklm") == "abcdef.ghijklm"
    # 16 bytes because of a 2-byte character: hashed
    hashed = identity.link_name("abcdef", "é1234567")
    assert len("abcdef.é1234567") == 15 and len(hashed) == 15 and "." not in hashed


def test_d6_node_name_example() -> None:
    assert identity.hashed_name("0-bootstrap-os-file") == "n0eku8pm2rcnbmg5dgk5jscv4"
    assert node_name("0-bootstrap-os-file") == "n0eku8pm2rcnbmg5dgk5jscv4"
    assert len("n0eku8pm2rcnbmg5dgk5jscv4") == 25  # n + 24 characters


@pytest.mark.parametrize("name", ["test-vm-os", "test-vm-os-file", "ovmf-stable202302",
                                  "a", "A.b_c-d", "x" * 31])
def test_valid_node_names_are_unchanged(name: str) -> None:
    assert node_name(name) == name


@pytest.mark.parametrize("name", ["0-bootstrap-os-file", "cd,1", "we ird-os", "x" * 32,
                                  "", "-a", "é", "a/b"])
def test_invalid_node_names_are_hashed(name: str) -> None:
    got = node_name(name)
    assert got == identity.hashed_name(name) and got != name
    assert len(got) == 25 and got[0] == "n"
    assert set(got[1:]) <= set("0123456789abcdefghijklmnopqrstuv")
