"""Every example of spec/config.md §6.2 (expansion), §6.3 (volume paths) and §6.4 (ports),
plus decisions D13 (undefined variables) and D23 (port range)."""

from __future__ import annotations

import uuid

import pytest

from machina.config.expression import ExpressionError
from machina.config.patterns import (
    UndefinedVariableError,
    clean_path,
    expand,
    join_path,
    mapping_lookup,
    parse_port,
)
from machina.config.schema import Attributes, HostFile, Storage, Volume
from machina.errors import Failure, MachinaError
from machina.model import Machine
from machina.plan.devices import effective_port, plan_machine, volume_path
from machina.qemu.argv import render_argv

VARS = {"machine": "M", "volume": "vol", "x": "X", " spaced ": "S", "$": "DOLLAR",
        "1": "ONE", "seat": "12", "employee-id": "9000"}


def lenient(pattern: str, variables: dict[str, str] | None = None) -> str:
    return expand(pattern, mapping_lookup(VARS if variables is None else variables),
                  strict=False)


# --------------------------------------------------------------------------- §6.2


@pytest.mark.parametrize(("pattern", "want"), [
    ("$machine-name", "M-name"),        # the name stops at the first non-[A-Za-z0-9_]
    ("$volume.img", "vol.img"),
    ("${volume}.img", "vol.img"),
    ("a${ spaced }b", "aSb"),           # any characters between the braces
    ("a$/b", "a$/b"),                   # `$` not followed by a name: copied
    ("a$ b", "a$ b"),
    ("a$.b", "a$.b"),
    ("a$", "a$"),                       # `$` last: copied
    ("$", "$"),
    ("a${x", "ax"),                     # no `}`: `${` dropped, the rest literal
    ("${volume", "volume"),
    ("a${}b", "ab"),                    # `${}` vanishes
    ("$x$x", "XX"),
    ("${x}${x}", "XX"),
    ("$é", "$é"),                       # names are ASCII only
    ("x_1$x_1", "x_1"),                 # undefined ordinary name → "" (lenient)
    ("", ""),
])
def test_expand_examples(pattern: str, want: str) -> None:
    assert lenient(pattern) == want


@pytest.mark.parametrize(("pattern", "want"), [
    ("a$$b", "ab"),                     # `$$` is the special variable `$`, undefined
    ("a${$}b", "ab"),
    ("a$1b", "ab"),
    ("a${1}b", "ab"),
    ("a$-b", "ab"),
    ("a$*b", "ab"),
    ("a${#}b", "ab"),
    ("a$?b", "ab"),
    ("a${x_1}b", "ab"),                 # not special: an ordinary undefined name
])
def test_special_one_character_names(pattern: str, want: str) -> None:
    assert lenient(pattern, {}) == want
    # D13: the special forms keep the reference's meaning even when strict
    if "x_1" not in pattern:
        assert expand(pattern, mapping_lookup({}), strict=True) == want


def test_special_names_are_looked_up_when_defined() -> None:
    assert lenient("a$$b") == "aDOLLARb"
    assert lenient("a${$}b") == "aDOLLARb"
    assert lenient("a$1b") == "aONEb"
    assert lenient("a$12") == "aONE2"


@pytest.mark.parametrize(("pattern", "name"), [
    ("${nope}", "nope"), ("$nope", "nope"), ("a-${machine-name}", "machine-name"),
    ("${x_1}", "x_1"), ("${ spaced }", " spaced "), ("${foo.bar}", "foo.bar"),
    ("${a b}", "a b")])
def test_undefined_variable_is_an_error_when_strict(pattern: str, name: str) -> None:
    with pytest.raises(UndefinedVariableError) as info:
        expand(pattern, mapping_lookup({}), strict=True, where="storage pool p")
    message = str(info.value)
    assert f'"{name}"' in message and pattern in message and "storage pool p" in message
    assert isinstance(info.value, MachinaError)


def test_mapping_lookup_first_map_wins() -> None:
    lookup = mapping_lookup({"a": "1"}, {"a": "2", "b": "3"})
    assert (lookup("a"), lookup("b"), lookup("c")) == ("1", "3", None)


# --------------------------------------------------------------------------- §6.3

MID = uuid.UUID("8b18191a-234f-45ce-b43c-b46e28cd2f70")


def machine(name: str = "test-vm", *, description: str = "",
            mid: uuid.UUID = MID, variables: dict[str, str] | None = None,
            attrs: Attributes | None = None, volumes: tuple[Volume, ...] = ()) -> Machine:
    return Machine(name=name, file_name=name, description=description, id=mid, tags=(),
                   vars=variables or {}, attrs=attrs or Attributes(ram=1024), volumes=volumes,
                   connections=(), devices=())


def path(pool: Storage, volume: str = "os", m: Machine | None = None) -> str:
    return volume_path(m or machine(), Volume(name=volume, storage="p"), "p", pool)


@pytest.mark.parametrize(("pool", "volume", "want"), [
    # the README pools
    (Storage(path="/zfs-tank/", pattern="${machine-name}/os/${machine-name}-${volume}.vars.bin",
             type="firmware"), "firmware", "/zfs-tank/test-vm/os/test-vm-firmware.vars.bin"),
    (Storage(path="/zfs-tank/", pattern="${machine-name}/os/${machine-name}-${volume}.raw",
             type="raw"), "os", "/zfs-tank/test-vm/os/test-vm-os.raw"),
    (Storage(path="/usr/lib/machina/iso/", pattern="${volume}.iso", type="iso-ahci"),
     "win10", "/usr/lib/machina/iso/win10.iso"),
    # no pattern: <volume>.<type>; no type either: <volume>.raw
    (Storage(path="/iso", type="iso-ahci"), "cd2", "/iso/cd2.iso-ahci"),
    (Storage(path="/fw", type="firmware"), "c", "/fw/c.firmware"),
    (Storage(path="/d"), "os", "/d/os.raw"),
    # path.Join semantics
    (Storage(path="/base/", pattern="//x/../y/./z/"), "v", "/base/y/z"),
    (Storage(path="/base", pattern="/abs/x"), "v", "/base/abs/x"),     # appended
    (Storage(path="", pattern="rel/x"), "v", "rel/x"),                  # relative
    (Storage(path="", pattern="../${volume}"), "v", "../v"),            # leading .. kept
    (Storage(path="/", pattern="../../${volume}"), "v", "/v"),          # .. at the root
    (Storage(path="/a/b", pattern="../../../c"), "v", "/c"),
    (Storage(path="$HOME/vm", pattern="${volume}"), "v", "$HOME/vm/v"),  # path not expanded
    (Storage(path="/a", pattern="."), "v", "/a"),
    (Storage(path="", pattern="./"), "v", "."),
    (Storage(path="", pattern="${nothing-here}", type="raw"), "v", None),
])
def test_volume_paths(pool: Storage, volume: str, want: str | None) -> None:
    if want is None:
        with pytest.raises(UndefinedVariableError):
            path(pool, volume)
        return
    assert path(pool, volume) == want


def test_builtins_in_storage_patterns() -> None:
    m = machine("vm", description="Test VM (2023)", variables={"volume": "no",
                                                              "machine-name": "no", "k": "K"})
    pool = Storage(path="/s", pattern="${machine-name}|${machine-description}|${machine-id}|"
                   "${volume}|${k}")
    assert path(pool, "os", m) == f"/s/vm|Test VM (2023)|{MID}|os|K"  # built-ins win


def test_machine_id_builtin_is_canonical_when_zero() -> None:
    pool = Storage(path="/s", pattern="${machine-id}")
    assert path(pool, "os", machine(mid=uuid.UUID(int=0))) == (
        "/s/00000000-0000-0000-0000-000000000000")


@pytest.mark.parametrize(("elems", "want"), [
    (("",), ""), (("", ""), ""), (("a", ""), "a"), (("", "a"), "a"), (("a", "", "b"), "a/b"),
    (("/zfs-tank/", "test-vm/os/x"), "/zfs-tank/test-vm/os/x"),
    (("/base/", "//x/../y/./z/"), "/base/y/z"),
    (("machina", "we ird"), "machina/we ird"),
    (("/run/machina", "vm", ".qmp.socket"), "/run/machina/vm/.qmp.socket"),
    (("/run/machina", "vm", "../../x.qmp.socket"), "/run/x.qmp.socket"),
])
def test_join_path(elems: tuple[str, ...], want: str) -> None:
    assert join_path(*elems) == want


@pytest.mark.parametrize(("p", "want"), [
    ("", "."), ("/", "/"), ("//", "/"), ("///a//b/", "/a/b"), ("a/./b/../c", "a/c"),
    ("../../a", "../../a"), ("/../a", "/a"), ("a/..", "."), ("./", ".")])
def test_clean_path_is_go_path_clean(p: str, want: str) -> None:
    assert clean_path(p) == want


# --------------------------------------------------------------------------- §6.4


@pytest.mark.parametrize(("port", "pattern", "variables", "want"), [
    (5930, "ignored ${x}", {}, 5930),                 # a set port wins
    (0, "5${employee-id}", {"employee-id": "9000"}, 59000),
    (0, "4${employee-id}", {"employee-id": "9000"}, 49000),
    (0, "+40100", {}, 40100),                         # a single leading + is accepted
    (0, "0065535", {}, 65535),
    (0, "1", {}, 1),
    (70000, "", {}, 70000),                           # explicit ports are not range-checked here
])
def test_effective_port(port: int, pattern: str, variables: dict[str, str], want: int) -> None:
    assert effective_port(port, pattern, variables, strict=True) == want


@pytest.mark.parametrize(("pattern", "expanded", "message"), [
    ("", "", 'port pattern "": strconv.Atoi: parsing "": invalid syntax'),
    ("${spice-port}", "", 'port pattern "${spice-port}": strconv.Atoi: parsing "": invalid syntax'),
    ("7${seat}000", "712000", 'port pattern "7${seat}000": invalid resulting port number 712000'),
    ("x", "x", 'port pattern "x": strconv.Atoi: parsing "x": invalid syntax'),
    (" 5900", " 5900", 'port pattern " 5900": strconv.Atoi: parsing " 5900": invalid syntax'),
    ("++1", "++1", 'port pattern "++1": strconv.Atoi: parsing "++1": invalid syntax'),
    ("0", "0", 'port pattern "0": invalid resulting port number 0'),
    ("-5", "-5", 'port pattern "-5": invalid resulting port number -5'),
    ("65536", "65536", 'port pattern "65536": invalid resulting port number 65536'),
    ("99999999999999999999", "99999999999999999999",
     'port pattern "99999999999999999999": strconv.Atoi: parsing "99999999999999999999": '
     "value out of range"),
    ("5\n9", "5\n9", 'port pattern "5\\n9": strconv.Atoi: parsing "5\\n9": invalid syntax'),
])
def test_port_errors(pattern: str, expanded: str, message: str) -> None:
    with pytest.raises(Failure) as info:
        parse_port(pattern, expanded)
    assert str(info.value) == message


def test_quirk_q4_messages_through_effective_port() -> None:
    with pytest.raises(Failure) as info:
        effective_port(0, "7${seat}000", {"seat": "12"}, strict=True)
    assert str(info.value) == 'port pattern "7${seat}000": invalid resulting port number 712000'
    with pytest.raises(Failure) as info:
        effective_port(0, "${spice-port}", {}, strict=False)
    assert str(info.value) == (
        'port pattern "${spice-port}": strconv.Atoi: parsing "": invalid syntax')


def test_port_patterns_see_only_vars() -> None:
    """config.md §6.1: no built-ins in port patterns; D13 makes them undefined."""
    with pytest.raises(UndefinedVariableError):
        effective_port(0, "${machine-name}", {}, strict=True)
    with pytest.raises(Failure, match='parsing "": invalid syntax'):
        effective_port(0, "${volume}", {}, strict=False)


@pytest.mark.parametrize("port", [70000, 65536])
def test_d23_explicit_port_out_of_range_fails_the_build(port: int) -> None:
    m = machine(attrs=Attributes(ram=1024, spice_enabled=True, spice_port=port))
    with pytest.raises(MachinaError, match=r"out of range|65535"):
        plan_machine(m, HostFile())


def test_d13_undefined_variable_in_a_port_pattern_fails_the_build() -> None:
    m = machine(attrs=Attributes(ram=1024, agent_enabled=True, agent_port_pattern="4${id}"))
    with pytest.raises(MachinaError) as info:
        plan_machine(m, HostFile())
    assert '"id"' in str(info.value) and "4${id}" in str(info.value)


# --------------------------------------------------------------------------- expressions (ours)

EXPR_VARS = {"seat": "12", "base-port": "5900", "neg": "-3", "plus": "+4", "zero": "0",
             "word": "abc", "blank": " 12", "a+b": "SUM", "huge": str(2**63 - 1),
             "machine-name": "vm"}


def strict(pattern: str) -> str:
    return expand(pattern, mapping_lookup(EXPR_VARS), strict=True, where="SPICE port")


@pytest.mark.parametrize(("pattern", "want"), [
    ("${5900 + seat}", "5912"),
    ("59${seat}", "5912"),                       # plain references keep their meaning
    ("${base-port + seat}", "5912"),             # dashed names are names
    ("${base-port+seat*2}", "5924"),             # * before +
    ("${(base-port + seat) * 2}", "11824"),
    ("${1 - 2 - 3}", "-4"),                      # left to right
    ("${2 * 3 % 4}", "2"),
    ("${100 / 7 / 2}", "7"),
    ("${-7 / 2}", "-4"),                         # floor division, as Python's //
    ("${-7 % 2}", "1"),                          # remainder has the divisor's sign
    ("${7 % -2}", "-1"),
    ("${neg * plus}", "-12"),                    # signed variable values
    ("${- -seat}", "12"),
    ("${+seat}", "12"),
    ("${-(seat)}", "-12"),
    ("${0042 + 1}", "43"),                       # decimal, never octal
    ("${59}", "59"),                             # a literal (two digits: not Go's ${5})
    ("${(5)}", "5"),
    ("${\tseat\t*\t2 }", "24"),                  # blanks are spaces and tabs
    ("${a+b}", "SUM"),                           # a defined variable wins over arithmetic
    ("${huge}", str(2**63 - 1)),
    ("${huge + 0}", str(2**63 - 1)),
    ("${-huge - 1}", str(-(2**63))),
    ("${machine-name}", "vm"),
    ("d${seat % 4}/${machine-name}.raw", "d0/vm.raw"),
])
def test_expression_values(pattern: str, want: str) -> None:
    assert strict(pattern) == want


@pytest.mark.parametrize(("pattern", "column", "fragment"), [
    ("${5900 +}", 9, 'expected a number, a variable or "(", found the end of the expression'),
    ("${5900 + }", 10, "found the end of the expression"),
    ("${5900 seat}", 8, 'expected an operator, found "seat"'),
    ("ab${(1 + 2}", 11, 'expected ")" to close the "(" of column 5, found the end'),
    ("${1 + 2)}", 8, 'expected an operator, found ")"'),
    ("${*3}", 3, 'found "*"'),
    ("${1 / 0}", 5, "division by zero"),
    ("${1 % zero}", 5, "modulo by zero"),
    ("${3 + 1.5}", 8, 'unexpected "."'),
    ("${12abc + 1}", 5, 'unexpected "a" after the number 12'),
    ("${word + 1}", 3, 'variable "word" is "abc", not an integer'),
    ("x${1 + blank}", 8, 'variable "blank" is " 12", not an integer'),
    ("${huge + 1}", 8, "out of range"),
    ("${huge * huge}", 8, "out of range"),
    ("${-huge - 2}", 9, "out of range"),
    ("${9223372036854775808 - 1}", 3, "the number 9223372036854775808 is out of range"),
    ("${" + "(" * 70 + "1" + ")" * 70 + "}", 68, "nested more than 64 levels deep"),
    ("${" + "-" * 70 + "1}", 68, "nested more than 64 levels deep"),
])
def test_expression_errors_name_pattern_and_column(pattern: str, column: int,
                                                   fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        strict(pattern)
    err = info.value
    assert (err.pattern, err.column) == (pattern, column)
    assert str(err).startswith(f'pattern "{pattern}": column {column}: ')
    assert fragment in str(err) and str(err).endswith("(SPICE port)")
    assert err.hints
    # the same error when lenient: only undefined variables are forgiven there
    with pytest.raises(ExpressionError):
        expand(pattern, mapping_lookup(EXPR_VARS), strict=False)


def test_undefined_variable_in_an_expression_names_its_column() -> None:
    with pytest.raises(UndefinedVariableError) as info:
        strict("${5900+seat-1}")
    assert str(info.value) == ('undefined variable "seat-1" in pattern "${5900+seat-1}" at '
                               "column 8 (SPICE port)")
    assert info.value.hints[0].endswith("(seat - 1)")   # names may hold "-": say how to subtract
    # lenient (the tag views of `cat system`): an undefined variable makes the whole
    # expression empty, like an undefined plain reference
    assert expand("5${5900 + nope}9", mapping_lookup({}), strict=False) == "59"


def test_blank_padded_lone_name_is_still_a_name() -> None:
    """`${ seat }` looks up " seat " (config.md §6.2); the error suggests ${seat}."""
    with pytest.raises(UndefinedVariableError) as info:
        strict("${ seat }")
    assert '" seat "' in str(info.value) and "${seat}" in info.value.hints[0]


def test_expression_in_a_port_pattern_through_the_plan() -> None:
    m = machine(variables={"seat": "12"},
                attrs=Attributes(ram=1024, spice_enabled=True,
                                 spice_port_pattern="${5900 + seat}"))
    plan = plan_machine(m, HostFile())
    assert any("port=5912" in a for a in render_argv(plan.options()))
    bad = machine(variables={"seat": "12"},
                  attrs=Attributes(ram=1024, spice_enabled=True,
                                   spice_port_pattern="${5900 + seat * }"))
    with pytest.raises(MachinaError) as info:
        plan_machine(bad, HostFile())
    assert 'pattern "${5900 + seat * }": column 17' in str(info.value)
    assert "spice port" in str(info.value)
