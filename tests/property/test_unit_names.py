"""Unit names of machines and their companions (the swtpm unit) never collide, and are
valid systemd unit names, for every pair of valid machine names (decisions D15).

The reference's later `machina-swtpm-NAME` would collide: the swtpm unit of `vm` is
the unit of a machine named `swtpm-vm`. machina uses the instance form
`machina-swtpm@NAME.service`; `@` cannot appear in a machine name.

The validity check is written here from systemd's unit-name rules (src/basic/unit-name.c:
at most 255 bytes; prefix characters `[A-Za-z0-9:_.\\-]`; at most one `@`, and an
instance, when there is one, of the same characters and non-empty; a known suffix).
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from machina.config.load import MACHINE_NAME
from machina.systemd.unit import swtpm_unit_name, unit_name

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
SYSTEMD_CHARS = r"[A-Za-z0-9:_.\\-]"
UNIT = re.compile(rf"(?P<prefix>{SYSTEMD_CHARS}+)(?:@(?P<instance>{SYSTEMD_CHARS}+))?"
                  r"\.service")

# machine names: random ones, plus the shapes that collide under the reference's scheme
machine_names = st.one_of(
    st.from_regex(MACHINE_NAME, fullmatch=True),
    st.builds(lambda s: "swtpm-" + s, st.text(NAME_CHARS, min_size=1, max_size=58)),
    st.text(NAME_CHARS, min_size=1, max_size=64).filter(lambda s: MACHINE_NAME.fullmatch(s)
                                                         is not None),
)


def units_of(name: str) -> set[str]:
    return {unit_name(name), swtpm_unit_name(name)}


@given(machine_names, machine_names)
def test_no_two_machines_share_a_unit_name(a: str, b: str) -> None:
    assert MACHINE_NAME.fullmatch(a) and MACHINE_NAME.fullmatch(b)
    if a == b:
        return
    assert units_of(a).isdisjoint(units_of(b)), (a, b)
    assert unit_name(a) != swtpm_unit_name(a)


@given(machine_names)
def test_unit_names_are_valid_for_systemd(name: str) -> None:
    for unit in units_of(name):
        assert len(unit.encode()) <= 255
        m = UNIT.fullmatch(unit)
        assert m, unit
    own = UNIT.fullmatch(unit_name(name))
    companion = UNIT.fullmatch(swtpm_unit_name(name))
    assert own and own["instance"] is None      # a plain unit
    assert companion and companion["instance"] == name  # the machine is the instance


def test_the_reference_scheme_would_collide() -> None:
    """Why machina does not use `machina-swtpm-NAME`: this pair collides there."""
    def reference(n: str) -> str:
        return f"machina-swtpm-{n}.service"

    assert reference("vm") == unit_name("swtpm-vm")
    assert units_of("vm").isdisjoint(units_of("swtpm-vm"))
