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
    """Space-separated paths (`ReadWritePaths=`): each quoted when needed, `%` → `%%`;
    a path in `optional` gets systemd's `-` prefix (no error while it does not exist)."""

    paths: tuple[str, ...]
    optional: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for p in self.paths:
            if not p.startswith("/") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in p):
                raise ValueError(f"not an absolute path without control characters: {p!r}")

    def render(self) -> str:
        def one(p: str) -> str:
            if SAFE.issuperset(p):
                return p.replace("%", "%%")
            return '"' + p.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'
        return " ".join(one(("-" if p in self.optional else "") + p) for p in self.paths)


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


# --- reading units back (generate --diff compares with the installed unit) ---------------

class UnitSyntaxError(ValueError):
    """Text that is not a unit file or command line as machina writes them."""


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting, in order (systemd.syntax(7)): comment
    lines skipped, a line ending in a backslash continued (the backslash becomes a
    space), values stripped."""
    out: list[tuple[str, str, str]] = []
    section_name = ""
    pending: list[str] = []
    lines = text.split("\n")
    for n, raw in enumerate(lines):
        line = raw.strip()
        if pending and line[:1] in ("#", ";"):
            continue
        if line.endswith("\\") and n + 1 < len(lines):
            pending.append(line[:-1] + " ")
            continue
        line = "".join(pending) + line
        pending = []
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section_name = line[1:-1]
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise UnitSyntaxError(f"not a setting: {line[:60]!r}")
        out.append((section_name, key.strip(), value.strip()))
    return out


_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "s": " "}


def _unescape(text: str, i: int) -> tuple[str, int]:
    """The C escape at text[i] (after the backslash): (character, next index)."""
    c = text[i:i + 1]
    if c in _ESCAPES:
        return _ESCAPES[c], i + 1
    for lead, digits, base in (("x", 2, 16), ("u", 4, 16), ("U", 8, 16)):
        if c == lead:
            return chr(int(text[i + 1:i + 1 + digits], base)), i + 1 + digits
    if c.isdigit():
        return chr(int(text[i:i + 3], 8)), i + 3
    raise UnitSyntaxError(f"unknown escape \\{c}")


def _undouble(word: str) -> str:
    """`%%` → `%` and `$$` → `$` (machina writes no other specifier or variable)."""
    out: list[str] = []
    i = 0
    while i < len(word):
        c = word[i]
        if c in "%$" and word[i + 1:i + 2] == c:
            out.append(c)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_command(value: str) -> tuple[str, list[str]]:
    """An `Exec…=` value as (prefix, argv): words split at white space, quotes and C
    escapes decoded, `%%` and `$$` undoubled (systemd.service(5) "Command lines")."""
    i = 0
    while i < len(value) and value[i] in EXEC_PREFIXES:
        i += 1
    prefix, text = value[:i], value[i:]
    # undouble first: `%%` and `$$` are specifier syntax, applied before word splitting
    text = _undouble(text)
    words: list[str] = []
    i = 0
    try:
        while i < len(text):
            if text[i].isspace():
                i += 1
                continue
            word: list[str] = []
            quote = text[i] if text[i] in "\"'" else ""
            if quote:
                i += 1
            while i < len(text):
                c = text[i]
                if quote and c == quote:
                    i += 1
                    break
                if not quote and c.isspace():
                    break
                if c == "\\":
                    ch, i = _unescape(text, i + 1)
                    word.append(ch)
                    continue
                word.append(c)
                i += 1
            else:
                if quote:
                    raise UnitSyntaxError("a quote is not closed")
            words.append("".join(word))
    except (IndexError, ValueError) as exc:
        raise UnitSyntaxError(f"cannot read the command line: {exc}") from exc
    return prefix, words
def unit_name(machine_name: str) -> str:
    return f"machina-{machine_name}.service"


def swtpm_unit_name(machine_name: str) -> str:
    """The machine's swtpm unit: an instance name. No machine's own unit can have this
    name, because `@` cannot appear in a machine name (decisions D15); the reference's
    `machina-swtpm-NAME` is the unit of a machine named `swtpm-NAME`."""
    return f"machina-swtpm@{machine_name}.service"
