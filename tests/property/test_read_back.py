"""machina reads its own units and command lines back (`generate --diff`): the parsers in
src (systemd/unit.py parse_unit/parse_command, qemu/opts.py parse_argv) must agree with
the independent ones of `independent_parsers` and give back exactly what was rendered."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st
from independent_parsers import exec_argv, split_elements, unit_values
from test_unit_quoting import MACHINE_NAMES, SETTINGS, executables, options, words

from machina.qemu.argv import render_argv
from machina.qemu.opts import NO_ARGUMENT, Opt, parse_argv, split_value
from machina.systemd.render import render_unit
from machina.systemd.unit import Command, parse_command, parse_unit


@SETTINGS
@given(name=MACHINE_NAMES, opts=options())
def test_exec_start_reads_back_as_the_argv(name: str, opts: tuple[Opt, ...]) -> None:
    # an option with neither parameters nor a plain argument (`-device` alone) is never
    # written by machina, and cannot be told from a no-argument flag
    assume(all(len(o.words()) == 2 or o.flag in NO_ARGUMENT for o in opts))
    text = render_unit(name, opts).render()
    settings = parse_unit(text)
    (exec_start,) = [v for s, k, v in settings if (s, k) == ("Service", "ExecStart")]
    (independent,) = unit_values(text, "ExecStart")
    assert exec_start == independent
    prefix, argv = parse_command(exec_start)
    assert prefix == ""
    assert argv == render_argv(opts) == exec_argv(independent)
    back = parse_argv(argv[1:])
    assert [w for o in back for w in o.words()] == argv[1:]
    for o, b in zip(opts, back, strict=True):
        assert b.flag == o.flag
        if o.plain is None and o.params:
            assert split_value(b.value()) == split_elements(o.value())


@SETTINGS
@given(argv=st.tuples(executables, st.lists(words, max_size=8)),
       prefix=st.sampled_from(["", "+", "-", "@", "!!", "-+"]))
def test_commands_read_back(argv: tuple[str, list[str]], prefix: str) -> None:
    words_ = [argv[0], *argv[1]]
    rendered = Command.of(*words_, prefix=prefix).render()
    assert parse_command(rendered) == (prefix, words_)
