"""Variables and patterns (spec/config.md §6): Go's os.Expand and path.Join semantics,
plus integer expressions in `${…}` (ours, config/expression.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from machina.config.expression import (
    ExpressionError,
    SyntaxProblem,
    Var,
    evaluate,
    looks_arithmetic,
    parse_expression,
    parse_integer,
)
from machina.config.values import go_quote
from machina.errors import Failure

_SPECIAL = set("*#$@!?-0123456789")
_NAME = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class UndefinedVariableError(Failure):
    """A pattern names a variable that is not defined (decisions D13)."""


def _ref(s: str) -> tuple[str, int, bool]:
    """(name, consumed, special) for the text after a `$`; consumed 0: copy `$` literally."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SPECIAL and s[2] == "}":
            return s[1], 3, True
        close = s.find("}", 1)
        if close == 1:
            return "", 2, False  # `${}`: the brace pair and the `$` vanish
        if close < 0:
            return "", 1, False  # `${` without `}`: drop `${`
        return s[1:close], close + 1, False
    if s[0] in _SPECIAL:
        return s[0], 1, True
    i = 0
    while i < len(s) and s[i] in _NAME:
        i += 1
    if i == 0:
        return "", 0, False
    return s[:i], i, False


def expand(pattern: str, lookup: Callable[[str], str | None], *, strict: bool,
           where: str = "") -> str:
    """Expand `$name` and `${name}` like Go's os.Expand.

    Unknown names give "" when not strict; when strict, an unknown ordinary name is an
    error (special one-character names such as `$$` or `$1` stay lenient).
    """
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c != "$" or i == n - 1:
            out.append(c)
            i += 1
            continue
        name, used, special = _ref(pattern[i + 1:])
        if used == 0:
            out.append("$")
            i += 1
            continue
        braced = pattern[i + 1] == "{"
        start = i + 2  # where a braced name starts in the pattern
        i += 1 + used
        if name == "" and not special:
            continue
        value = lookup(name)
        if value is None and braced and not special:
            value = _expression(pattern, start, name, lookup, strict=strict, where=where)
        if value is None:
            if strict and not special:
                fixes = _undefined_fixes(name, lookup)
                if name.strip(" \t") != name and lookup(name.strip(" \t")) is not None:
                    fixes.insert(0, f"inside ${{…}} blanks are part of the name: write "
                                    f"${{{name.strip(' ')}}}")
                raise UndefinedVariableError(
                    f"undefined variable {go_quote(name)} in pattern {go_quote(pattern)}"
                    + _where(where), tuple(fixes), ("vars", name))
            value = ""
        out.append(value)
    return "".join(out)


def _undefined_fixes(name: str, lookup: Callable[[str], str | None]) -> list[str]:
    fixes = ["define it in the machine's or a tag's \"vars\""]
    if "-" in name and lookup(name.split("-")[0].strip(" \t")) is not None:
        fixes.insert(0, "a name may contain \"-\": to subtract, put blanks around it "
                        f"({name.replace('-', ' - ')})")
    return fixes


def _where(where: str) -> str:
    return f" ({where})" if where else ""


_EXPRESSION_HINT = ("an expression takes integers, variables, + - * / % and parentheses, "
                    "e.g. ${5900 + seat}",)


def _expression(pattern: str, start: int, text: str, lookup: Callable[[str], str | None], *,
                strict: bool, where: str) -> str | None:
    """The value of `${text}` as an integer expression, or None if it is not one.

    A lone name (`${seat}`, `${machine-name}`) or text that does not look like arithmetic
    is not an expression: the caller treats it as an (undefined) variable, as before.
    """
    def fail(offset: int, message: str, fixes: tuple[str, ...] = _EXPRESSION_HINT,
             subject: tuple[str, ...] = ()) -> ExpressionError:
        column = start + offset + 1
        return ExpressionError(f"pattern {go_quote(pattern)}: column {column}: {message}"
                               + _where(where), fixes, subject, pattern=pattern, column=column)

    try:
        node = parse_expression(text, start)
    except SyntaxProblem as exc:
        if not looks_arithmetic(text):
            return None
        raise fail(exc.offset, exc.message) from None
    if isinstance(node, Var) and text.strip(" \t") == node.name:
        return None  # a lone name, not `(name)`

    def value_of(var: Var) -> int | None:
        raw = lookup(var.name)
        column = start + var.offset + 1
        if raw is None:
            if not strict:
                return None
            raise UndefinedVariableError(
                f"undefined variable {go_quote(var.name)} in pattern {go_quote(pattern)} "
                f"at column {column}" + _where(where), tuple(_undefined_fixes(var.name, lookup)),
                ("vars", var.name))
        value = parse_integer(raw)
        if value is None:
            raise fail(var.offset, f"variable {go_quote(var.name)} is {go_quote(raw)}, not an "
                                   "integer", ("variables in expressions hold decimal integers "
                                               "of at most 64 bits",), ("vars", var.name))
        return value

    try:
        result = evaluate(node, value_of)
    except SyntaxProblem as exc:
        raise fail(exc.offset, exc.message) from None
    return "" if result is None else str(result)


def mapping_lookup(*maps: Mapping[str, str]) -> Callable[[str], str | None]:
    def lookup(name: str) -> str | None:
        for m in maps:
            if name in m:
                return m[name]
        return None
    return lookup


def clean_path(p: str) -> str:
    """Go's path.Clean."""
    if p == "":
        return "."
    rooted = p.startswith("/")
    out: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(seg)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def join_path(*elems: str) -> str:
    """Go's path.Join: drop empty elements, join with `/`, clean; all empty → ""."""
    parts = [e for e in elems if e != ""]
    if not parts:
        return ""
    return clean_path("/".join(parts))


def parse_port(pattern: str, expanded: str) -> int:
    """Parse an expanded port pattern like Go's strconv.Atoi, then check 1…65535."""
    s = expanded
    body = s[1:] if s[:1] in ("+", "-") else s
    if body == "" or not all("0" <= c <= "9" for c in body):
        raise Failure(f"port pattern {go_quote(pattern)}: strconv.Atoi: parsing "
                      f"{go_quote(s)}: invalid syntax")
    value = int(s)
    if not -(2**63) <= value < 2**63:
        raise Failure(f"port pattern {go_quote(pattern)}: strconv.Atoi: parsing "
                      f"{go_quote(s)}: value out of range")
    if not 1 <= value <= 65535:
        raise Failure(f"port pattern {go_quote(pattern)}: invalid resulting port number {value}")
    return value
