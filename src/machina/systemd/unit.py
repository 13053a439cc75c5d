"""systemd unit files: the only module that knows unit syntax.

Values are typed by context, so escaping cannot be forgotten:
- Text: free text (`Description=`): `%` → `%%`, control characters refused.
- Command: an argv (`Exec…=`): each word quoted as the reference does (spec/systemd.md
  §3), then `%` → `%%` and `$` → `$$` (quirks Q6); control characters become C escapes
  inside quotes. Lines may be continued with ` \\`.
- Word: a single value that systemd splits like a command word (`RuntimeDirectory=`).
- Raw: a constant the program itself writes (`simple`, `1m30s`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

EXEC_PREFIXES = "@-:+!"
SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@%+=:,./-")


class Value(Protocol):
    def render(self) -> str: ...


def _c_escape(c: str) -> str:
    match c:
        case "\\":
            return "\\\\"
        case '"':
            return '\\"'
        case "'":
            return "\\'"
        case "\n":
            return "\\n"
        case "\t":
            return "\\t"
        case "\r":
            return "\\r"
    if ord(c) < 0x20 or ord(c) == 0x7F:
        return f"\\x{ord(c):02x}"
    return c


def _quote(word: str) -> str:
    """The reference's Q (systemd.md §3) with C escapes; an empty word is `""`."""
    if "\x00" in word:
        raise ValueError("a NUL cannot appear in a unit file")
    if word and SAFE.issuperset(word):
        return word
    return '"' + "".join(_c_escape(c) for c in word) + '"'


def quote_word(word: str) -> str:
    """Quote one word for an `Exec…=` line: Q, then `%` → `%%` and `$` → `$$`."""
    return _quote(word).replace("%", "%%").replace("$", "$$")


@dataclass(frozen=True, slots=True)
class Raw:
    text: str

    def render(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Text:
    text: str

    def __post_init__(self) -> None:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in self.text):
            raise ValueError("control characters cannot appear in a unit setting")
        if self.text.endswith("\\"):
            raise ValueError("a unit setting cannot end in a backslash (it would continue "
                             "onto the next line)")

    def render(self) -> str:
        return self.text.replace("%", "%%")


@dataclass(frozen=True, slots=True)
class Word:
    """One value systemd splits like a word but does not expand `$` in
    (`RuntimeDirectory=`): Q, then `%` → `%%` (quirks Q6.3)."""

    text: str

    def render(self) -> str:
        return _quote(self.text).replace("%", "%%")


@dataclass(frozen=True, slots=True)
class PathList:
    """Space-separated paths (`ReadWritePaths=`): each quoted when needed, `%` → `%%`."""

    paths: tuple[str, ...]

    def __post_init__(self) -> None:
        for p in self.paths:
            if not p.startswith("/") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in p):
                raise ValueError(f"not an absolute path without control characters: {p!r}")

    def render(self) -> str:
        def one(p: str) -> str:
            if all(c in SAFE for c in p):
                return p.replace("%", "%%")
            return '"' + p.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'
        return " ".join(one(p) for p in self.paths)


@dataclass(frozen=True, slots=True)
class Command:
    """An argv; `lines` groups words onto continuation lines (one QEMU option a line)."""

    lines: tuple[tuple[str, ...], ...]
    prefix: str = ""  # systemd's executable prefixes, e.g. "+" (full privileges)

    def __post_init__(self) -> None:
        if not self.lines or not self.lines[0]:
            raise ValueError("a command needs an executable")
        if self.lines[0][0][:1] in tuple(EXEC_PREFIXES):
            raise ValueError(f"an executable cannot start with {self.lines[0][0][0]!r}: "
                             "systemd reads it as a prefix (give it as prefix=)")
        if any(c not in EXEC_PREFIXES for c in self.prefix):
            raise ValueError(f"unknown executable prefix {self.prefix!r}")

    @classmethod
    def of(cls, *argv: str, prefix: str = "") -> Command:
        return cls((tuple(argv),), prefix)

    def argv(self) -> list[str]:
        return [w for line in self.lines for w in line]

    def render(self) -> str:
        text = " \\\n".join(" ".join(quote_word(w) for w in line) for line in self.lines)
        return self.prefix + text


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    entries: tuple[tuple[str, Value], ...]


@dataclass(frozen=True, slots=True)
class Unit:
    sections: tuple[Section, ...]

    def render(self) -> str:
        out: list[str] = []
        for i, section in enumerate(self.sections):
            if i:
                out.append("\n")
            out.append(f"[{section.name}]\n")
            for key, value in section.entries:
                out.append(f"{key}={value.render()}\n")
        return "".join(out)


def section(name: str, *entries: tuple[str, Value]) -> Section:
    return Section(name, tuple(entries))


def durations(seconds: int) -> str:
    """Go's duration format for whole seconds: 10s, 1m0s, 1m25s, 1h0m0s."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"
