"""QEMU options: the only module that knows QEMU's option syntax.

An option is a flag and an ordered list of parameters (spec/qemu.md §1). A parameter is a
(name, value) pair: a value-only parameter (name "") is *cleaned* (commas, quotes, `=`,
white space and non-printables removed: it is an id or a driver name); a named value has
every `,` doubled (decisions D7), so no value can end the parameter and add another.
A *plain* option (`-kernel PATH`, `-append TEXT`) takes its argument verbatim: QEMU does
not split it at commas.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from machina.errors import PlanError
from machina.printable import is_printable

_PROP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_FLAG = re.compile(r"[a-z][a-z0-9-]*")

Param = tuple[str, str]


def clean(s: str) -> str:
    """Remove `,`, `"`, `=`, white space and non-printable characters ("printable" by
    machina's fixed table, decisions D28: every white space but U+0020 is not printable)."""
    # Fast path (most values need no cleaning): printable ASCII (the same in every
    # Unicode version) without space, `,`, `"` and `=` is clean.
    if (s.isascii() and s.isprintable()
            and " " not in s and "," not in s and '"' not in s and "=" not in s):
        return s
    return "".join(c for c in s if c not in ',"= ' and is_printable(c))


def escape(value: str) -> str:
    """QEMU's keyval escaping: a `,` inside a value is written `,,`."""
    return value.replace(",", ",,")


def render_param(name: str, value: str) -> str:
    n, v = clean(name), clean(value)
    if n == "":
        return v
    if v == "":
        return n
    return n + "=" + escape(value)


@dataclass(frozen=True, slots=True)
class Opt:
    """One QEMU option: `-flag` and its parameter list, or a plain argument."""

    flag: str
    params: tuple[Param, ...] = ()
    plain: str | None = None

    def __post_init__(self) -> None:
        if not _FLAG.fullmatch(self.flag):
            raise ValueError(f"invalid QEMU flag {self.flag!r}")
        for name, _ in self.params:
            if name and not _PROP_NAME.fullmatch(name):
                raise ValueError(f"invalid QEMU property name {name!r}")
        if self.plain is not None and self.params:
            raise ValueError("a plain option has no parameters")
        for name, value in (*self.params, ("", self.plain or "")):
            if "\x00" in value:
                raise ValueError(f"a NUL cannot be given to QEMU ({name or self.flag})")
            if name and value and not clean(value):
                # The reference would print the bare name (QEMU reads it as name=on).
                raise PlanError(f"{json.dumps(value)} cannot be given to QEMU as {name}=",
                                ("use a value with at least one letter, digit or symbol "
                                 "other than a comma, quote, = or white space",))

    def value(self) -> str:
        """The option's argument as QEMU receives it ("" when there is none)."""
        if self.plain is not None:
            return self.plain
        # render_param, knowing what __post_init__ checked (a name needs no cleaning; a
        # named value that cleans to nothing was refused): only a value-only one can
        # render empty
        return ",".join(r for r in ((n + "=" + escape(v) if v else n) if n else clean(v)
                                    for n, v in self.params) if r)

    def words(self) -> tuple[str, ...]:
        """The argv words: `-flag`, then the argument when there is one."""
        v = self.value()
        return (f"-{self.flag}", v) if v or self.plain is not None else (f"-{self.flag}",)


def opt(flag: str, head: str | None = None, *props: tuple[str, str | int | None]) -> Opt:
    """Build an option: `opt("device", "ioh3420", ("id", "pcie.1.0"), ("bus", "pcie.0"))`.

    Properties whose value is None are left out; ints are written in decimal.
    """
    params: list[Param] = [] if head is None else [("", head)]
    for name, value in props:
        if value is None:
            continue
        params.append((name, str(value)))
    return Opt(flag, tuple(params))


def plain(flag: str, value: str) -> Opt:
    return Opt(flag, (), value)


# --- reading an argv back (generate --diff compares with the installed unit) -------------

#: Flags machina writes without an argument, and those whose argument is taken verbatim.
NO_ARGUMENT = frozenset({"enable-kvm", "nodefaults", "nographic", "no-user-config", "S",
                         "no-reboot", "no-shutdown", "snapshot", "no-hpet", "daemonize"})
PLAIN = frozenset({"kernel", "initrd", "append", "bios"})


def split_value(text: str) -> list[str]:
    """An option argument's elements: split at single commas, `,,` is a literal comma."""
    parts = [p.replace("\0", ",") for p in text.replace(",,", "\0").split(",")]
    return parts


def parse_value(flag: str, text: str) -> Opt:
    """One option from its flag and argument: each element `name=value` (split at the
    first `=`) or a value-only element (an implied driver, or a flag like `hv_relaxed`).
    Raises ValueError for what machina cannot have written."""
    if flag in PLAIN:
        return Opt(flag, (), text)
    params: list[Param] = []
    for element in split_value(text):
        name, eq, value = element.partition("=")
        params.append((name, value) if eq else ("", element))
    return Opt(flag, tuple(params))


def parse_argv(argv: list[str] | tuple[str, ...]) -> tuple[Opt, ...]:
    """A QEMU command line (without the program) as options; raises ValueError when a
    word is not an option or an option lacks its argument."""
    out: list[Opt] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-") or len(word) < 2:
            raise ValueError(f"expected a QEMU option, got {word!r}")
        flag = word[2:] if word.startswith("--") else word[1:]
        if flag in NO_ARGUMENT:
            out.append(Opt(flag))
            i += 1
            continue
        if i + 1 >= len(argv):
            raise ValueError(f"-{flag} lacks its argument")
        out.append(parse_value(flag, argv[i + 1]))
        i += 2
    return tuple(out)
def keyval(*props: tuple[str, str | int | None]) -> str:
    """`key=value,key=value` for programs that split at every comma and cannot escape one
    (swtpm's --tpmstate, --ctrl): a value holding a comma is refused, not escaped."""
    out: list[str] = []
    for name, value in props:
        if value is None:
            continue
        text = str(value)
        if not _PROP_NAME.fullmatch(name) or "," in text or "\x00" in text:
            raise PlanError(f"{name}={text!r} cannot be given to swtpm",
                            ("swtpm splits its options at every comma and cannot escape one",))
        out.append(name + "=" + text)
    return ",".join(out)
