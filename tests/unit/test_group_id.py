"""The derived group id of least-privilege mode stays in systemd's unused id range."""

from __future__ import annotations

import hashlib
import struct
import uuid

from hypothesis import given
from hypothesis import strategies as st

from machina.identity import GROUP_ID_BASE, group_id


@given(st.uuids(), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True))
def test_group_id_in_unused_range_below_2_31(machine_id: uuid.UUID, name: str) -> None:
    gid = group_id(machine_id, name)
    assert GROUP_ID_BASE <= gid <= 0x7FFFFFFE
    assert gid == spec_group_id(machine_id, name)


def spec_group_id(machine_id: uuid.UUID, name: str) -> int:
    """Written out again from the definition (identity.py: the seed of identity.md §1 with
    components `privilege`, `file-system`, `group-id` and 8 zero bytes; 4 bytes read as
    big-endian, folded into 0x70000000 + [0, 0x0FFFFFFF))."""
    data = machine_id.bytes
    for part in (name.encode(), b"privilege", b"file-system", b"group-id", bytes(8)):
        data += struct.pack(">Q", len(part)) + part
    (value,) = struct.unpack(">I", hashlib.shake_128(data).digest(4))
    return 0x70000000 + value % 0x0FFFFFFF


def test_group_id_depends_on_id_and_name() -> None:
    u = uuid.UUID("8b18191a-234f-45ce-b43c-b46e28cd2f70")
    assert group_id(u, "test-vm") != group_id(u, "test-vm2")
    assert group_id(u, "test-vm") != group_id(uuid.UUID(int=1), "test-vm")
