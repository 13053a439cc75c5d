"""The fast paths of qemu/opts.py (issue 8) against the plain definitions they shortcut:
clean() against its character filter, Opt.value() against render_param()."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from machina.errors import PlanError
from machina.printable import is_printable
from machina.qemu.opts import Opt, clean, render_param

# Text that often holds what clean() removes, and characters beyond ASCII.
TEXT = st.text(alphabet=st.one_of(st.sampled_from(' ,"=\t\n\x00\x7f\xa0\u2028ab9.-_/:'),
                                  st.characters()), max_size=12)
NAMES = st.one_of(st.just(""), st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,6}", fullmatch=True))


def slow_clean(s: str) -> str:
    return "".join(c for c in s if c not in ',"= ' and is_printable(c))


@given(TEXT)
def test_clean_is_the_character_filter(s: str) -> None:
    assert clean(s) == slow_clean(s)


@given(st.lists(st.tuples(NAMES, TEXT.filter(lambda v: "\x00" not in v)), max_size=5))
def test_value_is_render_param_joined(params: list[tuple[str, str]]) -> None:
    try:
        o = Opt("device", tuple(params))
    except PlanError:
        return
    assert o.value() == ",".join(r for r in (render_param(n, v) for n, v in params) if r)
