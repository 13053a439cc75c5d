"""Variables and patterns (spec/config.md §6): Go's os.Expand and path.Join semantics."""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
        i += 1 + used
        if name == "" and not special:
            continue
        value = lookup(name)
        if value is None:
            if strict and not special:
                from machina.config.values import go_quote

                raise UndefinedVariableError(
                    f"undefined variable {go_quote(name)} in pattern {go_quote(pattern)}"
                    + (f" ({where})" if where else ""),
                    ("define it in the machine's or a tag's \"vars\"",), ("vars", name))
            value = ""
        out.append(value)
    return "".join(out)


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
    from machina.config.values import go_quote

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
