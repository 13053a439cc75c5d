"""machina reads its own units and command lines back (`generate --diff`): the parsers in
src (systemd/unit.py parse_unit/parse_command, qemu/opts.py parse_argv) must agree with
the independent ones of `independent_parsers` and give back exactly what was rendered."""

from __future__ import annotations

from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st
from independent_parsers import exec_argv, split_elements, unit_values
from test_unit_quoting import MACHINE_NAMES, SETTINGS, executables, options, words

from machina.changes import classify_units
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


def _golden_units() -> list[str]:
    """Every `generate --preview` output of the shared golden cases (when ../shared is
    there: tests/conftest.py's `shared_dir()`) and of ours."""
    import importlib.util

    tests = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("_tests_conftest", tests / "conftest.py")
    assert spec is not None and spec.loader is not None
    root = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root)
    dirs = [tests / "cases"]
    shared = root.shared_dir()
    if shared is not None:
        dirs.append(shared / "golden" / "cases")
    return [p.read_text() for d in dirs for p in sorted(d.glob("*/expected/*.generate-preview"))
            if "----" not in p.read_text()]  # one unit per file


UNITS = _golden_units()


def test_a_unit_against_itself_has_no_changes() -> None:
    assert len(UNITS) > 10
    for unit in UNITS:
        assert classify_units(unit, unit) == []


@SETTINGS
@given(data=st.data())
def test_one_changed_value_is_one_change_at_its_option(data: st.DataObject) -> None:
    """Options are matched by what they are, so changing one property value of one
    option gives exactly one change, named at that option and property."""
    unit = data.draw(st.sampled_from(UNITS))
    settings = parse_unit(unit)
    (exec_start,) = [v for s, k, v in settings if k == "ExecStart"]
    argv = parse_command(exec_start)[1]
    opts = parse_argv(argv[1:])

    def keys(o: Opt) -> set[str]:
        """The properties that say which option it is (changing one is another option)."""
        names = {n for n, _ in o.params}
        match o.flag:
            case "mon":
                return {"chardev"}
            case "global":
                return {"driver", "property"}
            case "device":
                return {"id"} if "id" in names else {"bus"}
        return {"id", "node-name"}

    candidates = [(i, j) for i, o in enumerate(opts) for j, (n, _) in enumerate(o.params)
                  if n and n not in keys(o)]
    i, j = data.draw(st.sampled_from(candidates))
    o = opts[i]
    name, value = o.params[j]
    params = list(o.params)
    params[j] = (name, value + "x")
    changed = [*opts[:i], Opt(o.flag, tuple(params)), *opts[i + 1:]]
    new_argv = [argv[0], *(w for x in changed for w in x.words())]
    start = unit.index("\nExecStart=") + 1
    end = start
    while unit[end:unit.index("\n", end)].endswith(" \\"):
        end = unit.index("\n", end) + 1
    end = unit.index("\n", end)
    new_unit = unit[:start] + "ExecStart=" + Command.of(*new_argv).render() + unit[end:]
    assert [v for s, k, v in parse_unit(new_unit) if k != "ExecStart"] == [
        v for s, k, v in settings if k != "ExecStart"]
    changes = classify_units(unit, new_unit)
    assert len(changes) == 1, changes
    (c,) = changes
    assert c.where.startswith(f"-{o.flag}") and c.where.endswith(f" {name}"), c
    assert (c.before, c.after) == (value, value + "x")
