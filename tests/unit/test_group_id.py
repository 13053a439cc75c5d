"""The derived group id of least-privilege mode stays in systemd's unused id range."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from machina.identity import GROUP_ID_BASE, group_id


@given(st.uuids(), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True))
def test_group_id_in_unused_range_below_2_31(machine_id: uuid.UUID, name: str) -> None:
    gid = group_id(machine_id, name)
    assert GROUP_ID_BASE <= gid <= 0x7FFFFFFE
    assert gid == group_id(machine_id, name)


def test_group_id_depends_on_id_and_name() -> None:
    u = uuid.UUID("8b18191a-234f-45ce-b43c-b46e28cd2f70")
    assert group_id(u, "test-vm") != group_id(u, "test-vm2")
    assert group_id(u, "test-vm") != group_id(uuid.UUID(int=1), "test-vm")
