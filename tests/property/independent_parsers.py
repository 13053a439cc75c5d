r"""Independent parsers used as oracles by the property tests.

Nothing here imports machina: each parser is written from the documentation of the
program that reads machina's output, so a test can check that what machina *wrote* is
read back as what machina *meant*.

* QEMU keyval / QemuOpts option syntax (qemu-options, docs/system/invocation): an
  option argument is a list of elements separated by single commas; `,,` stands for a
  literal comma; an element is `name=value` (split at the first `=`), except that the
  first element may be an implied value without `=` (the driver, backend or type).
* systemd unit files (systemd.syntax(7), systemd.service(5) "Command lines"): lines
  ending in an unescaped backslash are joined with the next line (the backslash becomes
  a space; comment lines inside a continuation are skipped); `Key=value` with the value
  stripped of whitespace; an Exec line is split into words at whitespace; a word may be
  wrapped in double or single quotes; C-style escapes (`\\ \" \' \n \t \r \a \b \f \v
  \s \xNN \NNN \uNNNN \UNNNNNNNN`) are decoded; a lone unquoted `;` separates commands
  (`\;` is a literal semicolon); `%%` is `%` (other specifiers are refused here, as
  machina never means one); `$$` is `$` (variable references are refused here).

The parsers are deliberately *stricter* than the real programs where machina has no
business relying on leniency (unknown escapes, a `%` or `$` that is not doubled, a NUL).
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------- QEMU


class KeyvalError(ValueError):
    """The text is not a well-formed QEMU option argument."""


PROP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def split_elements(text: str) -> list[str]:
    """Split an option argument at single commas; `,,` is a literal comma."""
    elements: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == ",":
            if text[i + 1:i + 2] == ",":
                current.append(",")
                i += 2
                continue
            elements.append("".join(current))
            current = []
            i += 1
            continue
        current.append(c)
        i += 1
    elements.append("".join(current))
    return elements


def parse_keyval(text: str) -> tuple[str | None, list[tuple[str, str | None]]]:
    """(implied first value or None, [(name, value or None for a bare flag), ...]).

    An empty element (`a,,,` leaves none, but `a,` or `a,,,` with an odd tail would) is
    an error, as is a name that is not a QEMU property name.
    """
    elements = split_elements(text)
    implied: str | None = None
    params: list[tuple[str, str | None]] = []
    for i, element in enumerate(elements):
        if element == "":
            raise KeyvalError(f"empty element {i} in {text!r}")
        if "=" in element:
            name, value = element.split("=", 1)
            if not PROP_NAME.fullmatch(name):
                raise KeyvalError(f"invalid property name {name!r} in {text!r}")
            params.append((name, value))
        elif i == 0:
            implied = element
        else:
            if not PROP_NAME.fullmatch(element):
                raise KeyvalError(f"invalid bare property {element!r} in {text!r}")
            params.append((element, None))
    return implied, params


def keyval_dict(text: str) -> dict[str, str | None]:
    """The named parameters of an option argument; a repeated name is an error."""
    _, params = parse_keyval(text)
    out: dict[str, str | None] = {}
    for name, value in params:
        if name in out:
            raise KeyvalError(f"parameter {name!r} given twice in {text!r}")
        out[name] = value
    return out


def split_options(argv: list[str]) -> list[tuple[str, str | None]]:
    """argv words after the binary → [(flag without '-', argument or None)].

    Every flag word starts with `-`; a word that follows a flag and does not start with
    `-` is its argument. (machina never emits an argument starting with `-` except as a
    plain option value; callers that use plain options pass `plain_flags`.)
    """
    return split_options_with(argv, frozenset())


FLAGS_WITHOUT_ARGUMENT = frozenset({"enable-kvm", "nodefaults", "nographic"})


def split_options_with(argv: list[str], plain_flags: frozenset[str]) -> list[
        tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-") or len(word) < 2:
            raise KeyvalError(f"expected an option flag, got {word!r} at {i}")
        flag = word[1:]
        if flag in FLAGS_WITHOUT_ARGUMENT:
            out.append((flag, None))
            i += 1
            continue
        if i + 1 >= len(argv):
            raise KeyvalError(f"option -{flag} lacks its argument")
        if flag not in plain_flags and argv[i + 1].startswith("-"):
            raise KeyvalError(f"option -{flag} lacks its argument")
        out.append((flag, argv[i + 1]))
        i += 2
    return out


# --------------------------------------------------------------------------- systemd


class UnitSyntaxError(ValueError):
    """The text would not be read by systemd as machina meant it."""


WHITESPACE = " \t\n\r"
COMMENTS = "#;"
_LINE_END = re.compile(r"\r\n|\r|\n|\x00")


def logical_lines(text: str) -> list[str]:
    """Physical lines → logical lines (systemd.syntax(7)): line ends are LF, CR, CRLF
    and NUL; an unescaped trailing backslash joins the next line, becoming a space;
    comment lines are dropped, also inside a continuation."""
    out: list[str] = []
    continuation: str | None = None
    physical = _LINE_END.split(text)
    if physical and physical[-1] == "":
        physical.pop()
    for line in physical:
        stripped = line.lstrip(WHITESPACE)
        if stripped[:1] and stripped[0] in COMMENTS:
            continue
        current = line if continuation is None else continuation + line
        escaped = False
        for c in current:
            escaped = (not escaped) if c == "\\" else False
        if escaped:
            continuation = current[:-1] + " "
            continue
        continuation = None
        out.append(current)
    if continuation is not None:
        out.append(continuation)
    return out


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """[(section, key, value)] in file order; the value is stripped of whitespace."""
    section = ""
    out: list[tuple[str, str, str]] = []
    for line in logical_lines(text):
        s = line.strip(WHITESPACE)
        if s == "":
            continue
        if s.startswith("["):
            if not s.endswith("]"):
                raise UnitSyntaxError(f"invalid section header {s!r}")
            section = s[1:-1]
            continue
        if "=" not in s:
            raise UnitSyntaxError(f"missing '=' in {s!r}")
        key, value = s.split("=", 1)
        if not section:
            raise UnitSyntaxError(f"assignment outside of a section: {s!r}")
        out.append((section, key.strip(WHITESPACE), value.strip(WHITESPACE)))
    return out


def unit_values(text: str, key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in parse_unit(text) if s == section and k == key]


_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", "\\": "\\", '"': '"', "'": "'", "s": " "}
_HEX = "0123456789abcdefABCDEF"


def _unescape(s: str, i: int) -> tuple[str, int]:
    """Decode the C escape whose backslash is at s[i]; return (char, next index)."""
    if i + 1 >= len(s):
        raise UnitSyntaxError("a backslash at the end of the value")
    c = s[i + 1]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], i + 2
    if c == "x":
        digits = s[i + 2:i + 4]
        if len(digits) != 2 or any(d not in _HEX for d in digits):
            raise UnitSyntaxError(f"bad \\x escape {s[i:i + 4]!r}")
        code = int(digits, 16)
    elif c in "uU":
        n = 4 if c == "u" else 8
        digits = s[i + 2:i + 2 + n]
        if len(digits) != n or any(d not in _HEX for d in digits):
            raise UnitSyntaxError(f"bad \\{c} escape")
        code = int(digits, 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise UnitSyntaxError("escape is not a Unicode scalar value")
        return _nonzero(code), i + 2 + n
    elif c in "01234567":
        digits = s[i + 1:i + 4]
        if len(digits) != 3 or any(d not in "01234567" for d in digits):
            raise UnitSyntaxError(f"bad octal escape {s[i:i + 4]!r}")
        code = int(digits, 8)
        if code > 0xFF:
            raise UnitSyntaxError("octal escape above 0377")
        return _nonzero(code), i + 4
    else:
        raise UnitSyntaxError(f"unknown escape sequence \\{c}")
    return _nonzero(code), i + 4


def _nonzero(code: int) -> str:
    if code == 0:
        raise UnitSyntaxError("systemd refuses NUL bytes in escapes")
    return chr(code)


def _undouble(text: str, mark: str, what: str) -> str:
    """`mark mark` → `mark`; a single `mark` starts an expansion this test refuses."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == mark:
            if text[i + 1:i + 2] != mark:
                raise UnitSyntaxError(f"{what} {text[i:i + 8]!r} in {text!r}")
            out.append(mark)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _expand_word(word: str) -> str:
    """Per-word expansions after unquoting: specifiers (`%%`) then variables (`$$`)."""
    return _undouble(setting_text(word), "$", "variable reference at")


def exec_commands(value: str) -> list[list[str]]:
    """An Exec…= value → commands (split at lone `;`), each a list of argv words."""
    commands: list[list[str]] = [[]]
    i = 0
    n = len(value)
    while True:
        while i < n and value[i] in WHITESPACE:
            i += 1
        if i >= n:
            break
        # `\;` as a whole word is a literal semicolon; a bare `;` ends the command.
        if value[i] == "\\" and value[i + 1:i + 2] == ";" and (
                i + 2 >= n or value[i + 2] in WHITESPACE):
            commands[-1].append(";")
            i += 2
            continue
        if value[i] == ";" and (i + 1 >= n or value[i + 1] in WHITESPACE):
            commands.append([])
            i += 1
            continue
        raw: list[str] = []
        if value[i] in "\"'":
            quote = value[i]
            i += 1
            while True:
                if i >= n:
                    raise UnitSyntaxError(f"unterminated quote in {value!r}")
                c = value[i]
                if c == quote:
                    i += 1
                    break
                if c == "\\":
                    ch, i = _unescape(value, i)
                    raw.append(ch)
                    continue
                raw.append(c)
                i += 1
            if i < n and value[i] not in WHITESPACE:
                raise UnitSyntaxError(f"closing quote not followed by whitespace in {value!r}")
        else:
            while i < n and value[i] not in WHITESPACE:
                c = value[i]
                if c in "\"'":
                    raise UnitSyntaxError(f"quote inside an unquoted word in {value!r}")
                if c == "\\":
                    ch, i = _unescape(value, i)
                    raw.append(ch)
                    continue
                raw.append(c)
                i += 1
        commands[-1].append(_expand_word("".join(raw)))
    return commands


def exec_argv(value: str) -> list[str]:
    """Exactly one command: its argv. The first word must not carry an Exec prefix
    (`@ - : + !`, which systemd strips even from a quoted word) or control characters."""
    commands = exec_commands(value)
    if len(commands) != 1:
        raise UnitSyntaxError(f"{len(commands)} commands in {value!r}")
    argv = commands[0]
    if not argv:
        raise UnitSyntaxError("an empty command line")
    if argv[0][:1] in ("@", "-", ":", "+", "!"):
        raise UnitSyntaxError(f"the executable {argv[0]!r} would be read as a prefix")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in argv[0]):
        raise UnitSyntaxError("control characters in the executable")
    return argv


def setting_text(value: str) -> str:
    """A free-text setting (`Description=`): specifiers only (`%%` → `%`)."""
    return _undouble(value, "%", "specifier")

